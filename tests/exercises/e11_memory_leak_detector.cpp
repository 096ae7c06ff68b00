// Seed exercise 11, build a memory leak detector: track object creation by type, monitor
// objects that are not collected, detect growing collections, report suspected leak sources
// with their code location:
//   detector = MemoryLeakDetector(); detector.start_monitoring()
//   detector.take_snapshot()
//   for i in range(1000): create_leaky_object()
//   detector.take_snapshot()
//   leaks = detector.find_leaks(); detector.report()
// A leak grows in every interval, so the detector wants three snapshots by default (two
// intervals); the seed's two are `min_snapshots = 2`.
#include <memlens/gc.hpp>
#include <memlens/sys.hpp>
#include <memlens/tools/memory_leak_detector.hpp>

#include <string>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace test_e11 {

using test_tracemalloc_common::ends_with;
using test_tracemalloc_common::has_line_info;

struct LeakyObject : memlens::Object {
  double payload[8] = {};
};
struct Cache : memlens::Object {
  std::vector<memlens::Ref<LeakyObject>> entries;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("entries", entries)); }
};
struct Scratch : memlens::Object {
  int value = 0;
};

// The program's cache, which nothing ever empties: the leak.
memlens::Ref<Cache> cache;
int leaky_line = 0;

void create_leaky_object() {
  leaky_line = __LINE__ + 1;
  cache->entries.push_back(memlens::make<LeakyObject>());
  auto scratch = memlens::make<Scratch>();  // made and dropped: never a leak
  scratch->value = 1;
}

void run_rounds(memlens::MemoryLeakDetector& detector, int snapshots) {
  for (int s = 0; s < snapshots; ++s) {
    detector.take_snapshot("round " + std::to_string(s));
    if (s + 1 == snapshots) break;
    for (int i = 0; i < 1000; ++i) create_leaky_object();
  }
}

}  // namespace test_e11

using namespace test_e11;

TEST_CASE("e11: the detector names the leaking type and its line and what keeps it alive",
          "[exercises][e11]") {
  cache = memlens::make<Cache>();
  memlens::MemoryLeakDetector detector;
  detector.start_monitoring();
  run_rounds(detector, 3);
  const auto leaks = detector.find_leaks();
  REQUIRE(leaks.size() >= 1);
  const memlens::SuspectedLeak& leak = leaks.front();
  CHECK(leak.type_name == "test_e11::LeakyObject");
  CHECK(leak.count_growth == 2000);
  CHECK(leak.count_per_interval == std::vector<std::ptrdiff_t>{1000, 1000});
  CHECK(leak.size_growth ==
        static_cast<std::ptrdiff_t>(
            2000 * memlens::sys::getsizeof(memlens::Ref<memlens::Object>(cache->entries[0]))));
  for (const auto& l : leaks) CHECK(l.type_name != "test_e11::Scratch");

  REQUIRE(leak.site.size() >= 1);
  if (has_line_info()) {
    CHECK(ends_with(leak.site.front().filename, "exercises/e11_memory_leak_detector.cpp"));
    CHECK(leak.site.front().lineno == leaky_line);
  }
  // From the cache, held by the global Ref, to the newest leaked object.
  REQUIRE(leak.retaining_path.size() == 2);
  CHECK(leak.retaining_path[0].object == memlens::Ref<memlens::Object>(cache));
  CHECK(leak.outside_references == 1);
  CHECK(leak.retaining_path[1].edge == ".entries[1999]");
  CHECK(leak.retaining_path[1].object == memlens::Ref<memlens::Object>(cache->entries.back()));

  const std::string report = detector.report();
  CHECK_THAT(report, memlens_test::contains("Suspected leak: test_e11::LeakyObject  +2000 objects"));
  CHECK_THAT(report, memlens_test::contains("(+1000 each)"));
  CHECK_THAT(report, memlens_test::contains("kept alive by <test_e11::Cache object at 0x"));
  CHECK_THAT(report, memlens_test::contains(".entries[1999] -> <test_e11::LeakyObject object at"));
  if (has_line_info()) {
    CHECK_THAT(report, memlens_test::contains("e11_memory_leak_detector.cpp:" +
                                              std::to_string(leaky_line) +
                                              " in test_e11::create_leaky_object()"));
  }
  detector.stop_monitoring();
  cache.reset();
}

TEST_CASE("e11: the seed's two snapshots with min_snapshots 2", "[exercises][e11]") {
  cache = memlens::make<Cache>();
  memlens::MemoryLeakDetector detector({.min_snapshots = 2});
  detector.start_monitoring();
  run_rounds(detector, 2);
  const auto leaks = detector.find_leaks();
  REQUIRE(!leaks.empty());
  CHECK(leaks.front().type_name == "test_e11::LeakyObject");
  CHECK(leaks.front().count_growth == 1000);
  const auto cmp = memlens::MemoryLeakDetector::compare_snapshots(detector.snapshots()[0],
                                                                  detector.snapshots()[1]);
  REQUIRE(!cmp.by_type.empty());
  CHECK(cmp.by_type.front().type_name == "test_e11::LeakyObject");
  CHECK(cmp.by_type.front().count_before == 0);
  CHECK(cmp.by_type.front().count_after == 1000);
  CHECK(cmp.by_type.front().count_diff == 1000);
  REQUIRE(!cmp.by_site.empty());
  cache.reset();
}

TEST_CASE("e11: nothing is suspected when the cache is emptied each round", "[exercises][e11]") {
  cache = memlens::make<Cache>();
  memlens::MemoryLeakDetector detector;
  detector.start_monitoring();
  for (int s = 0; s < 3; ++s) {
    detector.take_snapshot();
    for (int i = 0; i < 1000; ++i) create_leaky_object();
    cache->entries.clear();
  }
  for (const auto& leak : detector.find_leaks()) {
    CHECK(leak.type_name != "test_e11::LeakyObject");
    CHECK(leak.type_name != "test_e11::Scratch");
  }
  CHECK_THAT(detector.report(), !memlens_test::contains("LeakyObject  +"));
  cache.reset();
}
