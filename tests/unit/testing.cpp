// Tests of memlens/testing.hpp: the gates must catch what leaks and pass what does not. The
// tools that must not leak are held to them here too (dogfood).
#include <memlens/testing.hpp>

#include <memlens/gc.hpp>
#include <memlens/sys.hpp>
#include <memlens/tools/circular_reference_detector.hpp>
#include <memlens/tools/memory_leak_detector.hpp>
#include <memlens/tools/memory_profiler.hpp>
#include <memlens/tools/memory_tracker.hpp>
#include <memlens/tools/weak_cache.hpp>
#include <memlens/weakref.hpp>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace test_testing {

using test_tracemalloc_common::escape;
using test_tracemalloc_common::has_line_info;
using memlens::testing::leaks_of;
using memlens::testing::NoLeaks;

struct Node : memlens::Object {
  memlens::Ref<Node> next;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};
struct Holder : memlens::Object {
  std::vector<memlens::Ref<Node>> nodes;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("nodes", nodes)); }
};

memlens::Ref<Holder> holder;
std::vector<std::unique_ptr<char[]>> kept_blocks;
int node_line = 0;
int block_line = 0;

void leak_a_node() {
  node_line = __LINE__ + 1;
  holder->nodes.push_back(memlens::make<Node>());
}
void leak_a_block(std::size_t size) {
  block_line = __LINE__ + 1;
  kept_blocks.emplace_back(new char[size]);
}

}  // namespace test_testing

using namespace test_testing;

TEST_CASE("testing: leaks_of names the leaked type and its line and its holder", "[testing]") {
  holder = memlens::make<Holder>();
  const auto leaks = leaks_of([] { leak_a_node(); });
  REQUIRE(leaks.objects.size() == 1);
  CHECK(leaks.objects[0].type_name == "test_testing::Node");
  CHECK(leaks.objects[0].count == 1);
  CHECK(leaks.objects[0].bytes == 16 + sizeof(Node));  // the collector's links, and the object
  CHECK_FALSE(leaks.empty());
  CHECK_THAT(leaks.objects[0].kept_alive_by,
             memlens_test::contains(".nodes[1] -> <test_testing::Node object at"));
  if (has_line_info()) CHECK(leaks.objects[0].site.front().lineno == node_line);
  const std::string text = leaks.to_string();
  CHECK_THAT(text, memlens_test::contains("test_testing::Node: +1 object, +40 B, allocated at"));
  CHECK(fmt::format("{}", leaks) == text);
  CHECK(Catch::StringMaker<memlens::testing::LeakSummary::Emptiness>::convert(leaks.empty()) ==
        "false (" + text + ")");
  holder.reset();
}

TEST_CASE("testing: leaks_of reports plain allocations by site above a threshold",
          "[testing]") {
  kept_blocks.clear();
  kept_blocks.reserve(16);  // the vector's growth would be at the same line
  const auto leaks = leaks_of([] { leak_a_block(300); });
  REQUIRE(leaks.objects.empty());
  INFO(leaks.to_string());
  REQUIRE(leaks.sites.size() == 1);
  CHECK(leaks.sites[0].count == 1);
  CHECK(leaks.sites[0].bytes == 300);
  if (has_line_info()) CHECK(leaks.sites[0].site.front().lineno == block_line);
  CHECK(leaks_of([] { leak_a_block(300); }, {.site_threshold = 300}).empty());
  CHECK_FALSE(leaks_of([] { leak_a_block(300); }, {.site_threshold = 299}).empty());
  kept_blocks.clear();
}

TEST_CASE("testing: warm-up and repeat keep caches and one-time work from counting",
          "[testing]") {
  holder = memlens::make<Holder>();
  int calls = 0;
  // Fills a cache on its first call only: the warm-up call absorbs it.
  auto fill_once = [&] {
    if (calls++ == 0) {
      for (int i = 0; i < 5; ++i) leak_a_node();
    }
  };
  CHECK(leaks_of(fill_once).empty());
  CHECK(calls == 2);
  calls = 0;
  CHECK_FALSE(leaks_of(fill_once, {.warmup = 0}).empty());
  // Grows on every second call: one round of two sees it, three rounds do not.
  calls = 0;
  auto every_other = [&] {
    if (calls++ % 2 == 1) leak_a_node();
  };
  const bool first_clean = leaks_of(every_other, {.warmup = 0, .repeat = 1}).empty();
  const bool second_clean = leaks_of(every_other, {.warmup = 0, .repeat = 1}).empty();
  CHECK(first_clean);
  CHECK_FALSE(second_clean);
  calls = 0;
  CHECK(leaks_of(every_other, {.warmup = 0, .repeat = 3}).empty());
  // Something that leaks on every call is caught however many rounds.
  const auto leaks = leaks_of([] { leak_a_node(); }, {.repeat = 4});
  REQUIRE(leaks.objects.size() == 1);
  CHECK(leaks.objects[0].count == 4);
  CHECK(leaks.calls == 4);
  holder.reset();
  CHECK_THROWS_AS(leaks_of([] {}, {.repeat = 0}), memlens::ValueError);
}

TEST_CASE("testing: cycles the collector frees are not leaks but cycles held are",
          "[testing][gc]") {
  CHECK(leaks_of([] {
          auto a = memlens::make<Node>();
          a->next = a;
        }).empty());
  holder = memlens::make<Holder>();
  CHECK_FALSE(leaks_of([] {
                auto a = memlens::make<Node>();
                a->next = a;
                holder->nodes.push_back(a);
              }).empty());
  holder.reset();
}

TEST_CASE("testing: current_thread_only ignores what another thread allocates meanwhile",
          "[testing][threads]") {
  kept_blocks.clear();
  std::vector<std::unique_ptr<char[]>> other_blocks;
  auto with_other_thread = [&] {
    std::thread t([&] { other_blocks.emplace_back(new char[500]); });
    t.join();
  };
  // Without the option, the other thread's block is the call's leak (its vector's too).
  const auto all = leaks_of(with_other_thread);
  CHECK_FALSE(all.empty());
  const auto mine = leaks_of(with_other_thread, {.current_thread_only = true});
  CHECK(mine.empty());
  // And what this thread leaks is still seen.
  CHECK_FALSE(leaks_of([&] {
                with_other_thread();
                leak_a_block(64);
              },
                       {.current_thread_only = true})
                  .empty());
  kept_blocks.clear();
}

TEST_CASE("testing: the matchers", "[testing]") {
  holder = memlens::make<Holder>();
  REQUIRE_THAT(([] { auto n = memlens::make<Node>(); }), NoLeaks());
  const auto leaky = NoLeaks();
  CHECK_FALSE(leaky.match([] { leak_a_node(); }));
  CHECK_THAT(leaky.toString(), memlens_test::contains("test_testing::Node: +1 object"));
  // Each vector escapes: an optimizer may remove an allocation nothing observes.
  REQUIRE_THAT(([] { escape(std::vector<char>(1000).data()); }),
               memlens::testing::PeakMemoryBelow(2000));
  const auto small = memlens::testing::PeakMemoryBelow(500);
  CHECK_FALSE(small.match([] { escape(std::vector<char>(1000).data()); }));
  CHECK_THAT(small.toString(), memlens_test::contains("below 500 bytes (it was 1000 bytes)"));
  holder.reset();
}

TEST_CASE("testing: peak_memory_of measures the call and keeps a running trace's peak",
          "[testing]") {
  memlens::tracemalloc::stop();
  CHECK(memlens::testing::peak_memory_of([] {
          std::vector<char> a(4000);
          std::vector<char> b(6000);
          escape(a.data());
          escape(b.data());
        }) == 10000);
  CHECK_FALSE(memlens::tracemalloc::is_tracing());
  test_tracemalloc_common::Tracing tracing;
  std::vector<char> big(100000);
  const auto before = memlens::tracemalloc::get_traced_memory();
  CHECK(memlens::testing::peak_memory_of([] { escape(std::vector<char>(5000).data()); }) == 5000);
  CHECK(memlens::tracemalloc::get_traced_memory().peak >= before.peak);
}

// Dogfood: the tools leave nothing behind once they are gone.
TEST_CASE("testing: the tools do not leak", "[testing][tools]") {
  REQUIRE_THAT(([] {
                 memlens::WeakCache<int, Node> cache;
                 auto n = memlens::make<Node>();
                 cache.set(1, n);
                 CHECK(cache.get(1) == n);
               }),
               NoLeaks());
  REQUIRE_THAT(([] {
                 auto a = memlens::make<Node>();
                 a->next = memlens::make<Node>();
                 a->next->next = a;
                 memlens::CircularReferenceDetector detector;
                 CHECK(detector.find_cycles(a).size() == 1);
                 a->next->next.reset();
               }),
               NoLeaks());
  REQUIRE_THAT(([] {
                 memlens::MemoryLeakDetector detector;
                 detector.start_monitoring();
                 auto h = memlens::make<Holder>();
                 for (int i = 0; i < 3; ++i) {
                   h->nodes.push_back(memlens::make<Node>());
                   detector.take_snapshot();
                 }
                 CHECK(detector.find_leaks().size() >= 1);
                 CHECK_FALSE(detector.report().empty());
               }),
               NoLeaks());
  REQUIRE_THAT(([] {
                 std::size_t reports = 0;
                 auto tracked = memlens::memory_tracker(
                     [] {
                       std::vector<int> v(100);
                       escape(v.data());
                       return v.size();
                     },
                     [&reports](const memlens::MemoryUsage&) { ++reports; }, "vector");
                 CHECK(tracked() == 100);
                 {
                   memlens::MemoryTrackerScope scope(
                       "scope", [&reports](const memlens::MemoryUsage&) { ++reports; });
                   std::vector<int> data(10);
                   escape(data.data());
                 }
                 CHECK(reports == 2);
               }),
               NoLeaks());
  REQUIRE_THAT(([] {
                 memlens::MemoryProfiler profiler;
                 profiler.start();
                 std::vector<int> data(1000);
                 escape(data.data());
                 profiler.snapshot("data");
                 profiler.stop();
               }),
               NoLeaks());
}
