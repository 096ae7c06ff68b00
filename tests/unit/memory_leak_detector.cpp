// Tests of MemoryLeakDetector beyond the seed's scenario (tests/exercises/e11_*): bad input,
// what it does to tracing, cycles only the collector frees, objects held from outside the heap,
// paths through unnamed and deep references, allocation sites that are not memlens types.
#include <memlens/gc.hpp>
#include <memlens/sys.hpp>
#include <memlens/tools/memory_leak_detector.hpp>
#include <memlens/tracemalloc.hpp>

#include <memory>
#include <string>
#include <vector>

#include "memlens_test.hpp"
#include "unit/gc_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace test_leak_detector {

using test_tracemalloc_common::ends_with;
using test_tracemalloc_common::has_line_info;

struct Ring : memlens::Object {
  memlens::Ref<Ring> next;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};
struct Blob : memlens::Object {  // untracked: holds no references
  char bytes[48] = {};
};
struct Bag : memlens::Object {  // names nothing: edges are shown by index
  memlens::Ref<Blob> first;
  std::vector<memlens::Ref<Blob>> rest;
  void traverse(memlens::Visitor& visit) override { visit(first, rest); }
};
struct Chain : memlens::Object {
  memlens::Ref<Chain> child;
  std::vector<memlens::Ref<Blob>> blobs;
  void traverse(memlens::Visitor& visit) override {
    visit(memlens::named("child", child), memlens::named("blobs", blobs));
  }
};
struct Session : memlens::Object {
  std::string name = std::string(100, 's');  // a buffer of its own, made by its constructor
};
struct Sessions : memlens::Object {
  std::vector<memlens::Ref<Session>> all;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("all", all)); }
};

std::vector<memlens::Ref<Blob>> outside;  // a std container, not a memlens object
std::vector<std::unique_ptr<char[]>> raw_blocks;
int outside_line = 0;
int raw_line = 0;
int session_line = 0;

void add_outside() {
  outside_line = __LINE__ + 1;
  outside.push_back(memlens::make<Blob>());
}
void add_raw() {
  raw_line = __LINE__ + 1;
  raw_blocks.emplace_back(new char[200]);
}
void add_session(Sessions& to) {
  session_line = __LINE__ + 1;
  to.all.push_back(memlens::make<Session>());
}

const memlens::SuspectedLeak* leak_of(const std::vector<memlens::SuspectedLeak>& leaks,
                                      const std::string& type) {
  for (const auto& l : leaks) {
    if (l.type_name == type) return &l;
  }
  return nullptr;
}

}  // namespace test_leak_detector

using namespace test_leak_detector;
using memlens::MemoryLeakDetector;

TEST_CASE("leak detector: bad input gives clear errors", "[tools][leak_detector]") {
  CHECK_THROWS_AS(MemoryLeakDetector({.min_snapshots = 1}), memlens::ValueError);
  CHECK_THROWS_WITH(MemoryLeakDetector({.nframe = 0}),
                    memlens_test::contains("nframe must be in [1,"));
  MemoryLeakDetector detector;
  CHECK_THROWS_AS(detector.take_snapshot("early"), memlens::Error);
  CHECK_THROWS_WITH(detector.take_snapshot("early"),
                    memlens_test::contains("take_snapshot(\"early\") before start_monitoring()"));
  CHECK_THROWS_WITH(detector.find_leaks(), memlens_test::contains("needs 3 snapshots, 0 taken"));
  detector.start_monitoring();
  detector.take_snapshot();
  detector.take_snapshot();
  CHECK_THROWS_AS(detector.find_leaks(), memlens::ValueError);
  CHECK_THROWS_AS(detector.collected_types(), memlens::ValueError);
  CHECK_THAT(detector.report(), memlens_test::contains("needs 3 snapshots, 2 taken: growth only"));
}

TEST_CASE("leak detector: stops the tracing it started and only that", "[tools][leak_detector]") {
  memlens::tracemalloc::stop();
  {
    MemoryLeakDetector detector({.nframe = 7});
    detector.start_monitoring();
    CHECK(memlens::tracemalloc::is_tracing());
    CHECK(memlens::tracemalloc::get_traceback_limit() == 7);
  }  // destroyed while monitoring
  CHECK_FALSE(memlens::tracemalloc::is_tracing());

  test_tracemalloc_common::Tracing tracing(3);
  {
    MemoryLeakDetector detector({.nframe = 7});
    detector.start_monitoring();
    CHECK(memlens::tracemalloc::get_traceback_limit() == 3);
    detector.take_snapshot();
    detector.stop_monitoring();
    CHECK(memlens::tracemalloc::is_tracing());
    CHECK(detector.snapshots().size() == 1);
  }
  CHECK(memlens::tracemalloc::is_tracing());
}

TEST_CASE("leak detector: cycles only the collector frees are reported apart",
          "[tools][leak_detector][gc]") {
  test_gc_support::GcGuard guard;  // no automatic collection
  auto make_cycles = [] {
    for (int i = 0; i < 100; ++i) {
      auto a = memlens::make<Ring>();
      auto b = memlens::make<Ring>();
      a->next = b;
      b->next = a;
    }
  };
  SECTION("collected before each snapshot: not a leak, but freed by the collector each time") {
    MemoryLeakDetector detector;
    detector.start_monitoring();
    for (int s = 0; s < 3; ++s) {
      make_cycles();
      detector.take_snapshot();
    }
    CHECK(leak_of(detector.find_leaks(), "test_leak_detector::Ring") == nullptr);
    const auto collected = detector.collected_types();
    REQUIRE(collected.size() == 1);
    CHECK(collected[0].type_name == "test_leak_detector::Ring");
    CHECK(collected[0].per_interval == std::vector<std::uint64_t>{200, 200});
    CHECK_THAT(detector.report(), memlens_test::contains("Freed only by the cycle collector"));
  }
  SECTION("without collect_first the garbage grows, and no root holds it") {
    MemoryLeakDetector detector({.collect_first = false});
    detector.start_monitoring();
    for (int s = 0; s < 3; ++s) {
      make_cycles();
      detector.take_snapshot();
    }
    const auto leaks = detector.find_leaks();
    const auto* ring = leak_of(leaks, "test_leak_detector::Ring");
    REQUIRE(ring != nullptr);
    CHECK(ring->count_per_interval == std::vector<std::ptrdiff_t>{200, 200});
    CHECK(ring->retaining_path.empty());
    CHECK(detector.collected_types().empty());
  }
}

TEST_CASE("leak detector: objects held only from outside the heap", "[tools][leak_detector]") {
  outside.clear();
  MemoryLeakDetector detector;
  detector.start_monitoring();
  for (int s = 0; s < 3; ++s) {
    detector.take_snapshot();
    for (int i = 0; i < 300; ++i) add_outside();
  }
  detector.take_snapshot();
  const auto leaks = detector.find_leaks();
  const auto* blob = leak_of(leaks, "test_leak_detector::Blob");
  REQUIRE(blob != nullptr);
  CHECK(blob->count_growth == 600);
  CHECK(blob->retaining_path.empty());
  // No object was found to ask: the site is the growing one with the type's block size.
  REQUIRE(blob->site.size() >= 1);
  if (has_line_info()) CHECK(blob->site.front().lineno == outside_line);
  CHECK_THAT(detector.report(), memlens_test::contains("kept alive from outside the heap"));
  detector.stop_monitoring();
  outside.clear();
}

TEST_CASE("leak detector: edges by index where the type names none and by name across hops",
          "[tools][leak_detector]") {
  auto bag = memlens::make<Bag>();
  bag->first = memlens::make<Blob>();
  auto top = memlens::make<Chain>();
  top->child = memlens::make<Chain>();
  top->child->child = memlens::make<Chain>();
  MemoryLeakDetector detector;
  detector.start_monitoring();
  for (int s = 0; s < 3; ++s) {
    detector.take_snapshot();
    for (int i = 0; i < 10; ++i) bag->rest.push_back(memlens::make<Blob>());
    for (int i = 0; i < 5; ++i) top->child->child->blobs.push_back(memlens::make<Blob>());
  }
  detector.take_snapshot();
  const auto leaks = detector.find_leaks();
  const auto* blob = leak_of(leaks, "test_leak_detector::Blob");
  REQUIRE(blob != nullptr);
  CHECK(blob->count_growth == 30);
  REQUIRE(!blob->retaining_path.empty());
  const auto& path = blob->retaining_path;
  if (path.front().object == memlens::Ref<memlens::Object>(bag)) {
    REQUIRE(path.size() == 2);
    CHECK(path[1].edge == "[30]");  // `first` is [0], the 30 in `rest` follow
    CHECK(path[1].object == memlens::Ref<memlens::Object>(bag->rest.back()));
  } else {
    REQUIRE(path.size() == 4);
    CHECK(path[0].object == memlens::Ref<memlens::Object>(top));
    CHECK(path[1].edge == ".child");
    CHECK(path[2].edge == ".child");
    CHECK(path[3].edge == ".blobs[14]");
  }
}

TEST_CASE("leak detector: a path longer than max_path_depth is not searched",
          "[tools][leak_detector]") {
  auto top = memlens::make<Chain>();
  Chain* deepest = top.get();
  for (int i = 0; i < 6; ++i) {
    deepest->child = memlens::make<Chain>();
    deepest = deepest->child.get();
  }
  for (std::size_t depth : {std::size_t{3}, std::size_t{64}}) {
    MemoryLeakDetector detector({.max_path_depth = depth});
    detector.start_monitoring();
    for (int s = 0; s < 3; ++s) {
      detector.take_snapshot();
      for (int i = 0; i < 4; ++i) deepest->blobs.push_back(memlens::make<Blob>());
    }
    const auto leaks = detector.find_leaks();
    const auto* blob = leak_of(leaks, "test_leak_detector::Blob");
    REQUIRE(blob != nullptr);
    if (depth == 3) {
      CHECK(blob->retaining_path.empty());
    } else {
      CHECK(blob->retaining_path.size() == 8);  // top, 6 children, the blob
    }
  }
}

TEST_CASE("leak detector: growing allocations that are not memlens objects and those a leaked "
          "type made",
          "[tools][leak_detector]") {
  raw_blocks.clear();
  raw_blocks.reserve(256);  // its growth would be at the raw blocks' line
  auto sessions = memlens::make<Sessions>();
  MemoryLeakDetector detector;
  detector.start_monitoring();
  for (int s = 0; s < 3; ++s) {
    detector.take_snapshot();
    for (int i = 0; i < 50; ++i) add_raw();
    for (int i = 0; i < 20; ++i) add_session(*sessions);
  }
  const auto leaks = detector.find_leaks();
  const auto* session = leak_of(leaks, "test_leak_detector::Session");
  REQUIRE(session != nullptr);
  CHECK(session->count_growth == 40);
  REQUIRE(session->retaining_path.size() == 2);
  CHECK(session->retaining_path[1].edge == ".all[59]");
  // Types come first; then the sites no type explains, each with its own line.
  REQUIRE(leaks.front().type_name == "test_leak_detector::Session");
  const memlens::SuspectedLeak* raw = nullptr;
  const memlens::SuspectedLeak* name_buffers = nullptr;
  for (const auto& l : leaks) {
    if (!l.type_name.empty() || l.site.size() == 0) continue;
    if (l.made_with == "test_leak_detector::Session") name_buffers = &l;
    if (l.made_with.empty() && l.count_growth == 100) raw = &l;
  }
  REQUIRE(raw != nullptr);
  CHECK(raw->size_growth == 100 * 200);
  CHECK(raw->count_per_interval == std::vector<std::ptrdiff_t>{50, 50});
  REQUIRE(name_buffers != nullptr);
  CHECK(name_buffers->count_growth == 40);
  if (has_line_info()) {
    CHECK(raw->site.front().lineno == raw_line);
    CHECK(session->site.front().lineno == session_line);
  }
  const std::string report = detector.report();
  CHECK_THAT(report, memlens_test::contains("Suspected leak: allocations  +100 blocks"));
  CHECK_THAT(report, memlens_test::contains("made while making a test_leak_detector::Session"));
  detector.stop_monitoring();
  raw_blocks.clear();
}

TEST_CASE("leak detector: the heap walk leaves the collector's lists as they were",
          "[tools][leak_detector][gc]") {
  test_gc_support::GcGuard guard;
  auto sessions = memlens::make<Sessions>();
  auto frozen = memlens::make<Ring>();
  frozen->next = frozen;
  memlens::gc::freeze();
  const std::size_t objects = memlens::gc::get_objects().size();
  const std::size_t young = memlens::gc::get_objects(0).size();
  MemoryLeakDetector detector({.collect_first = false});
  detector.start_monitoring();
  for (int s = 0; s < 3; ++s) {
    detector.take_snapshot();
    for (int i = 0; i < 5; ++i) add_session(*sessions);
  }
  REQUIRE(leak_of(detector.find_leaks(), "test_leak_detector::Session") != nullptr);
  CHECK(memlens::gc::get_objects().size() == objects);
  CHECK(memlens::gc::get_objects(0).size() == young);
  CHECK(memlens::gc::get_freeze_count() >= 1);
  // The collector still sees garbage, and nothing else, after the walk.
  {
    auto a = memlens::make<Ring>();
    a->next = a;
  }
  CHECK(memlens::gc::collect() == 1);
  CHECK(memlens::gc::collect() == 0);
  memlens::gc::unfreeze();
  frozen->next.reset();
}

TEST_CASE("leak detector: objects moved from one holder to another are not a leak",
          "[tools][leak_detector]") {
  auto sessions = memlens::make<Sessions>();
  memlens::tracemalloc::stop();
  MemoryLeakDetector detector;
  std::vector<memlens::Ref<Session>> made;
  for (int i = 0; i < 30; ++i) made.push_back(memlens::make<Session>());
  detector.start_monitoring();
  for (int s = 0; s < 3; ++s) {
    detector.take_snapshot();
    for (int i = 0; i < 10; ++i) {
      sessions->all.push_back(made.back());
      made.pop_back();
    }
  }
  // The counts did not grow: moving objects is not leaking them.
  CHECK(leak_of(detector.find_leaks(), "test_leak_detector::Session") == nullptr);
  made.clear();
}
