// Tests of AdvancedMemoryProfiler beyond the seed's scenario (tests/exercises/e15_*): its life
// cycle and errors, the timeline and its sampler thread, growth, and each suggestion rule, where
// it must fire and where it must not.
#include <memlens/gc.hpp>
#include <memlens/tools/advanced_memory_profiler.hpp>
#include <memlens/tracemalloc.hpp>
#include <memlens/weakref.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memlens_test.hpp"
#include "unit/gc_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace test_advanced_profiler {

using memlens::AdvancedMemoryProfiler;
using memlens::ProfilerOptions;
using memlens::Suggestion;
using test_tracemalloc_common::ends_with;
using test_tracemalloc_common::escape;
using test_tracemalloc_common::has_line_info;

/// No sampler thread: the timeline has a point at start, at each snapshot and at stop.
const ProfilerOptions no_thread{.sample_interval = std::chrono::nanoseconds::zero()};

/// The suggestions of `rule` whose site is this file's `line`.
std::vector<Suggestion> at_line(const std::vector<Suggestion>& all, const std::string& rule,
                                int line) {
  std::vector<Suggestion> out;
  const std::string suffix = "advanced_memory_profiler.cpp:" + std::to_string(line);
  for (const auto& s : all) {
    if (s.rule == rule && ends_with(s.site, suffix)) out.push_back(s);
  }
  return out;
}

std::size_t count_rule(const std::vector<Suggestion>& all, const std::string& rule) {
  std::size_t n = 0;
  for (const auto& s : all) n += s.rule == rule;
  return n;
}

// --- workloads, each allocating on a line the test knows ---

int grow_line = 0;
std::vector<std::vector<int>> grown_rows(bool reserve) {
  std::vector<std::vector<int>> rows(20);
  for (auto& row : rows) {
    if (reserve) row.reserve(10000);
    for (int j = 0; j < 10000; ++j) {
      grow_line = __LINE__ + 1;
      row.push_back(j);
    }
  }
  return rows;
}

struct Small {
  long a = 1, b = 2, c = 3;
};
int small_line = 0;
std::vector<std::unique_ptr<Small>> small_blocks(std::size_t n) {
  std::vector<std::unique_ptr<Small>> out(n);
  for (auto& p : out) {
    small_line = __LINE__ + 1;
    p.reset(new Small);
  }
  return out;
}

int map_line = 0;
std::vector<std::map<int, long>> per_object_maps(std::size_t n) {
  std::vector<std::map<int, long>> out(n);
  for (auto& m : out) {
    map_line = __LINE__ + 1;
    m[1] = 10;
  }
  return out;
}

int temp_line = 0;
std::vector<char> temporary(std::size_t bytes) {
  temp_line = __LINE__ + 1;
  std::vector<char> out(bytes, 'x');
  return out;
}

struct Parent;
struct Child : memlens::Object {
  memlens::Ref<Parent> parent;
  memlens::Weak<Parent> weak_parent;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("parent", parent)); }
};
struct Parent : memlens::Object {
  memlens::Ref<Child> child;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("child", child)); }
};
void families(int n, bool weak_back_reference) {
  for (int i = 0; i < n; ++i) {
    auto p = memlens::make<Parent>();
    p->child = memlens::make<Child>();
    if (weak_back_reference) {
      p->child->weak_parent = memlens::Weak<Parent>(p);
    } else {
      p->child->parent = p;
    }
  }
}

struct Entry : memlens::Object {
  char payload[64] = {};
};
std::vector<memlens::Ref<Entry>> registry;

}  // namespace test_advanced_profiler

using namespace test_advanced_profiler;

TEST_CASE("advanced profiler: bad options and calls out of order give clear errors",
          "[tools][advanced_profiler]") {
  using memlens_test::contains;
  CHECK_THROWS_MATCHES(AdvancedMemoryProfiler({.nframe = 0}), memlens::ValueError,
                       Catch::Matchers::Message(
                           "AdvancedMemoryProfiler: nframe must be in [1, 256], not 0"));
  CHECK_THROWS_WITH(AdvancedMemoryProfiler({.sample_interval = std::chrono::milliseconds(-1)}),
                    contains("sample_interval must not be negative"));
  CHECK_THROWS_WITH(AdvancedMemoryProfiler({.min_snapshots = 1}),
                    contains("min_snapshots must be at least 2, not 1"));
  CHECK_THROWS_WITH(AdvancedMemoryProfiler({.timeline_points = 1}),
                    contains("timeline_points must be at least 2, not 1"));

  AdvancedMemoryProfiler profiler(no_thread);
  CHECK_THROWS_WITH(profiler.stop(), contains("stop() before start()"));
  CHECK_THROWS_WITH(profiler.take_snapshot("x"), contains("take_snapshot(\"x\") before start()"));
  CHECK_THROWS_WITH(profiler.analyze_growth(), contains("needs two snapshots, 0 taken"));
  CHECK_THROWS_WITH(profiler.detect_leaks(), contains("needs 3 snapshots, 0 taken"));
  profiler.start();
  CHECK(memlens::tracemalloc::is_tracing());
  CHECK_THROWS_WITH(profiler.start(), contains("start() called twice"));
  profiler.take_snapshot("a");
  CHECK_THROWS_AS(profiler.take_snapshot("a"), memlens::ValueError);  // labels are unique
  CHECK(profiler.take_snapshot().label == "#2");
  profiler.stop();
  CHECK_FALSE(memlens::tracemalloc::is_tracing());
  CHECK_THROWS_WITH(profiler.stop(), contains("stop() called twice"));
  CHECK_THROWS_WITH(profiler.take_snapshot(), contains("after stop()"));
  // The results stay readable after stop().
  CHECK(profiler.snapshots().size() == 2);
  CHECK_NOTHROW(profiler.analyze_growth());
}

TEST_CASE("advanced profiler: without a sampler the timeline has start and snapshots and stop",
          "[tools][advanced_profiler]") {
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  auto block = std::make_unique<char[]>(1 << 20);
  escape(block.get());
  const auto& taken = profiler.take_snapshot("holding 1 MiB");
  CHECK(taken.current >= (1u << 20));
  CHECK(taken.rss > 0);
  block.reset();
  profiler.stop();
  const auto points = profiler.timeline();
  REQUIRE(points.size() == 3);
  CHECK(points[0].elapsed <= points[1].elapsed);
  CHECK(points[1].elapsed <= points[2].elapsed);
  CHECK(points[1].traced_current >= (1u << 20));
  CHECK((points[2].traced_current + (1u << 20) <= points[1].traced_current + 4096));
  CHECK(points[2].traced_peak >= (1u << 20));
  CHECK(points[2].rss > 0);
}

TEST_CASE("advanced profiler: a full timeline merges points and keeps the highest values",
          "[tools][advanced_profiler]") {
  AdvancedMemoryProfiler profiler({.sample_interval = std::chrono::nanoseconds::zero(),
                                   .collect_first = false,
                                   .timeline_points = 8});
  profiler.start();
  std::unique_ptr<char[]> spike;
  for (int i = 0; i < 40; ++i) {
    // One snapshot, the 13th, holds 8 MiB: whatever merging happens, the timeline shows it.
    if (i == 12) spike = std::make_unique<char[]>(8 << 20);
    escape(spike.get());
    profiler.take_snapshot("s" + std::to_string(i));
    spike.reset();
  }
  profiler.stop();
  const auto points = profiler.timeline();
  CHECK(points.size() <= 8);
  CHECK(points.size() >= 4);
  CHECK(points.front().elapsed < points.back().elapsed);
  std::size_t highest = 0;
  for (const auto& p : points) highest = std::max(highest, p.traced_current);
  CHECK(highest >= (8u << 20));
  for (std::size_t i = 1; i < points.size(); ++i) CHECK(points[i - 1].elapsed <= points[i].elapsed);
}

TEST_CASE("advanced profiler: the sampler thread records the timeline and stops with the profiler",
          "[tools][advanced_profiler][threads]") {
  SECTION("stop() joins it") {
    AdvancedMemoryProfiler profiler({.sample_interval = std::chrono::milliseconds(1)});
    profiler.start();
    std::vector<std::unique_ptr<char[]>> held;
    // Work until the sampler has recorded a few points (each snapshot adds one too, so count
    // beyond them); bounded, so a sampler that never runs fails rather than hangs.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (profiler.timeline().size() < 10 && std::chrono::steady_clock::now() < deadline) {
      held.push_back(std::make_unique<char[]>(4096));
    }
    profiler.stop();
    const auto points = profiler.timeline();
    CHECK(points.size() >= 10);
    for (std::size_t i = 1; i < points.size(); ++i) {
      CHECK(points[i - 1].elapsed <= points[i].elapsed);
    }
    // Nothing is added once stop() returned.
    CHECK(profiler.timeline().size() == points.size());
  }
  SECTION("the destructor joins it without stop()") {
    auto profiler = std::make_unique<AdvancedMemoryProfiler>(
        ProfilerOptions{.sample_interval = std::chrono::milliseconds(1)});
    profiler->start();
    profiler->take_snapshot("only");
    profiler.reset();
    CHECK_FALSE(memlens::tracemalloc::is_tracing());
  }
}

TEST_CASE("advanced profiler: growth by type and by line with the largest first",
          "[tools][advanced_profiler]") {
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  profiler.take_snapshot("before");
  for (int i = 0; i < 300; ++i) registry.push_back(memlens::make<Entry>());
  auto rows = grown_rows(false);
  profiler.take_snapshot("after");
  profiler.stop();
  const auto growth = profiler.analyze_growth();
  REQUIRE_FALSE(growth.empty());
  for (std::size_t i = 1; i < growth.size(); ++i) {
    CHECK(growth[i - 1].size_diff >= growth[i].size_diff);
  }
  const memlens::Growth* entry = nullptr;
  const memlens::Growth* row_line = nullptr;
  for (const auto& g : growth) {
    if (g.kind == memlens::Growth::Kind::type && g.label == "test_advanced_profiler::Entry") {
      entry = &g;
    }
    if (g.kind == memlens::Growth::Kind::site && has_line_info() &&
        ends_with(g.label, "advanced_memory_profiler.cpp:" + std::to_string(grow_line))) {
      row_line = &g;
    }
  }
  REQUIRE(entry != nullptr);
  CHECK(entry->count_diff == 300);
  CHECK(entry->count == 300);
  CHECK(entry->size_diff == static_cast<std::ptrdiff_t>(entry->size));
  REQUIRE(row_line != nullptr);
  CHECK(row_line->count_diff == 20);
  CHECK(row_line->size_diff >= static_cast<std::ptrdiff_t>(20 * 10000 * sizeof(int)));
  CHECK_FALSE(row_line->traceback.empty());
  CHECK_THAT(memlens::to_string(*entry), memlens_test::contains("+300 objects"));
  registry.clear();
}

TEST_CASE("advanced profiler: the reserve rule", "[tools][advanced_profiler][suggestions]") {
  if (!has_line_info()) return;
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  SECTION("fires for vectors grown by push_back") {
    auto rows = grown_rows(false);
    profiler.take_snapshot();
    const auto found = at_line(profiler.suggest_optimizations(), "reserve", grow_line);
    REQUIRE(found.size() == 1);
    // 20 vectors of 10,000 ints, each in a block of capacity 16,384: saving half of that.
    CHECK(found[0].estimated_saving == 20 * 16384 * sizeof(int) / 2);
    CHECK_THAT(found[0].message, memlens_test::contains("20 vectors"));
  }
  SECTION("does not fire when they reserved") {
    auto rows = grown_rows(true);
    profiler.take_snapshot();
    CHECK(count_rule(profiler.suggest_optimizations(), "reserve") == 0);
  }
}

TEST_CASE("advanced profiler: the pool rule", "[tools][advanced_profiler][suggestions]") {
  if (!has_line_info()) return;
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  SECTION("fires for many small blocks from one line") {
    auto blocks = small_blocks(5000);
    profiler.take_snapshot();
    const auto found = at_line(profiler.suggest_optimizations(), "pool", small_line);
    REQUIRE(found.size() == 1);
    // 24-byte blocks in 32-byte chunks: 8 bytes each beside them.
    CHECK(found[0].estimated_saving ==
          5000 * (memlens::detail::malloc_chunk(sizeof(Small)) - sizeof(Small)));
  }
  SECTION("does not fire for one array of them") {
    std::vector<Small> one(5000);
    escape(one.data());
    profiler.take_snapshot();
    CHECK(count_rule(profiler.suggest_optimizations(), "pool") == 0);
  }
  SECTION("does not fire below 1,000 blocks") {
    auto blocks = small_blocks(900);
    profiler.take_snapshot();
    CHECK(at_line(profiler.suggest_optimizations(), "pool", small_line).empty());
  }
}

TEST_CASE("advanced profiler: the fixed-layout rule", "[tools][advanced_profiler][suggestions]") {
  if (!has_line_info()) return;
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  SECTION("fires for many small maps") {
    auto maps = per_object_maps(3000);
    profiler.take_snapshot();
    const auto all = profiler.suggest_optimizations();
    const auto found = at_line(all, "fixed-layout", map_line);
    REQUIRE(found.size() == 1);
    CHECK_THAT(found[0].message, memlens_test::contains("3000 map or set nodes"));
    // Per node: its links and the chunk's header and rounding.
    const std::size_t node = memlens::detail::rb_tree_links + sizeof(std::pair<const int, long>);
    CHECK(found[0].estimated_saving ==
          3000 * (memlens::detail::rb_tree_links + memlens::detail::malloc_chunk(node) - node));
    // Map nodes are not also "small blocks".
    CHECK(at_line(all, "pool", map_line).empty());
  }
  SECTION("does not fire for the same values in structs") {
    std::vector<std::pair<int, long>> values(3000, {1, 10});
    escape(values.data());
    profiler.take_snapshot();
    CHECK(count_rule(profiler.suggest_optimizations(), "fixed-layout") == 0);
  }
}

TEST_CASE("advanced profiler: the stream rule", "[tools][advanced_profiler][suggestions]") {
  if (!has_line_info()) return;
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  SECTION("fires for a temporary that a later snapshot no longer holds") {
    {
      auto big = temporary(4 << 20);
      escape(big.data());
      profiler.take_snapshot("materialised");
    }
    profiler.take_snapshot("done");
    const auto found = at_line(profiler.suggest_optimizations(), "stream", temp_line);
    REQUIRE(found.size() == 1);
    CHECK(found[0].estimated_saving == (4u << 20));
    CHECK_THAT(found[0].message, memlens_test::contains("\"materialised\""));
  }
  SECTION("does not fire when most of it stays") {
    auto kept = temporary(4 << 20);
    auto dropped = temporary(2 << 20);
    escape(kept.data());
    escape(dropped.data());
    profiler.take_snapshot("6 MiB");
    dropped = {};
    profiler.take_snapshot("4 MiB");
    CHECK(count_rule(profiler.suggest_optimizations(), "stream") == 0);
  }
  SECTION("does not fire for data still held at the last snapshot") {
    auto big = temporary(4 << 20);
    escape(big.data());
    profiler.take_snapshot("materialised");
    profiler.take_snapshot("still held");
    CHECK(count_rule(profiler.suggest_optimizations(), "stream") == 0);
  }
}

TEST_CASE("advanced profiler: the leak rule", "[tools][advanced_profiler][suggestions]") {
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  SECTION("fires for objects that grow in every interval") {
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < 100; ++i) registry.push_back(memlens::make<Entry>());
      profiler.take_snapshot();
    }
    const auto all = profiler.suggest_optimizations();
    const Suggestion* entry = nullptr;
    for (const auto& s : all) {
      if (s.rule == "leak" && s.message.find("test_advanced_profiler::Entry") == 0) entry = &s;
    }
    REQUIRE(entry != nullptr);
    CHECK(entry->estimated_saving >= 200 * sizeof(Entry));
    CHECK_THAT(entry->message, memlens_test::contains("+200 objects"));
  }
  SECTION("does not fire in a steady state") {
    for (int round = 0; round < 3; ++round) {
      registry.clear();
      for (int i = 0; i < 100; ++i) registry.push_back(memlens::make<Entry>());
      profiler.take_snapshot();
    }
    CHECK(count_rule(profiler.suggest_optimizations(), "leak") == 0);
  }
  registry.clear();
}

TEST_CASE("advanced profiler: the weak rule", "[tools][advanced_profiler][suggestions][gc]") {
  test_gc_support::GcGuard guard;  // no automatic collection
  AdvancedMemoryProfiler profiler(no_thread);
  profiler.start();
  SECTION("fires for a type the collector had to free") {
    families(50, false);
    profiler.take_snapshot();  // collects them
    const auto all = profiler.suggest_optimizations();
    std::vector<Suggestion> found;
    for (const auto& s : all) {
      if (s.rule == "weak") found.push_back(s);
    }
    REQUIRE(found.size() == 2);  // Parent and Child
    for (const auto& s : found) {
      CHECK_THAT(s.message, memlens_test::contains("50 test_advanced_profiler::"));
      CHECK(s.estimated_saving >= 50 * std::min(sizeof(Child), sizeof(Parent)));
    }
    // The collection before the snapshot described one cycle of each type it freed.
    const auto& cycles = profiler.found_cycles();
    REQUIRE(cycles.size() == 2);
    CHECK(cycles[0].objects == 50);
    CHECK(cycles[0].snapshot == "#1");
    const std::string parent = "test_advanced_profiler::Parent";
    const std::string child = "test_advanced_profiler::Child";
    for (const auto& c : cycles) {
      if (c.type_name == parent) {
        CHECK(c.path == parent + " -.child-> " + child + " -.parent-> " + parent);
      } else {
        CHECK(c.path == child + " -.parent-> " + parent + " -.child-> " + child);
      }
    }
    CHECK(memlens::gc::garbage().empty());  // the examples' objects were freed
    CHECK(memlens::gc::get_debug() == 0);
  }
  SECTION("does not fire when the back reference is weak") {
    families(50, true);
    profiler.take_snapshot();
    CHECK(count_rule(profiler.suggest_optimizations(), "weak") == 0);
    CHECK(profiler.found_cycles().empty());
  }
}

TEST_CASE("advanced profiler: sparkline", "[tools][advanced_profiler]") {
  AdvancedMemoryProfiler profiler(no_thread);
  CHECK(profiler.sparkline(10).empty());
  profiler.start();
  profiler.take_snapshot("empty");
  auto block = std::make_unique<char[]>(4 << 20);
  escape(block.get());
  profiler.take_snapshot("4 MiB");
  block.reset();
  profiler.stop();
  const std::string line = profiler.sparkline(12);
  // Twelve three-byte characters, the highest block at the 4 MiB snapshot.
  CHECK(line.size() == 12 * 3);
  CHECK(line.find("█") != std::string::npos);
  CHECK(line.rfind("▁", 0) == 0);
}

TEST_CASE("advanced profiler: sampled tracing is passed on and its estimates feed the rules",
          "[tools][advanced_profiler][suggestions]") {
  AdvancedMemoryProfiler profiler({.sample_interval = std::chrono::nanoseconds::zero(),
                                   .sample_bytes = 4096});
  profiler.start();
  CHECK(memlens::tracemalloc::get_sample_bytes() == 4096);
  // Each row's block is 64 KiB, 16 times the mean: sampled with probability 1 - e^-16.
  auto rows = grown_rows(false);
  profiler.take_snapshot();
  const auto all = profiler.suggest_optimizations();
  profiler.stop();
  CHECK(memlens::tracemalloc::get_sample_bytes() == 0);
  if (!has_line_info()) return;
  const auto found = at_line(all, "reserve", grow_line);
  REQUIRE(found.size() == 1);
  const double exact = 20.0 * 16384 * sizeof(int) / 2;
  const double estimate = static_cast<double>(found[0].estimated_saving);
  CHECK(estimate > 0.99 * exact);
  CHECK(estimate < 1.01 * exact);
}
