// Seed exercise 5, track memory usage: a decorator that reports the current and peak memory of
// each call of a function, and handles exceptions:
//   @memory_tracker
//   def create_large_list(): return [i for i in range(1000000)]
// memlens::memory_tracker wraps any callable; MemoryTrackerScope is the same as a scope guard.
#include <memlens/tools/memory_tracker.hpp>
#include <memlens/tracemalloc.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

namespace test_e05 {

/// A sink that keeps the reports.
struct Reports {
  std::vector<memlens::MemoryUsage> list;
  memlens::MemoryReportSink sink() {
    return [this](const memlens::MemoryUsage& u) { list.push_back(u); };
  }
};

/// Makes the buffer's address escape, so that an optimizer may not elide its allocation (C++
/// allows dropping a new/delete pair nobody observes; clang -O2 does).
template <class Container>
void keep(Container& c) {
  asm volatile("" : : "r"(c.data()) : "memory");
}

std::vector<int> create_large_list() {
  std::vector<int> v;
  v.reserve(100000);
  for (int i = 0; i < 100000; ++i) v.push_back(i);
  return v;
}

}  // namespace test_e05

TEST_CASE("e05: memory_tracker reports current and peak after each call",
          "[exercise][e05][tracemalloc]") {
  test_e05::Reports reports;
  reports.list.reserve(4);
  auto tracked =
      memlens::memory_tracker(test_e05::create_large_list, reports.sink(), "create_large_list");
  std::vector<int> result = tracked();
  CHECK(result.size() == 100000);
  REQUIRE(reports.list.size() == 1);
  const auto& r = reports.list[0];
  CHECK(r.name == "create_large_list");
  CHECK(r.current == 400000);  // the returned list
  CHECK(r.peak == 400000);
  CHECK_FALSE(r.raised);
  CHECK(memlens::to_string(r) == "create_large_list: current=400000 bytes, peak=400000 bytes");
  CHECK_FALSE(tracemalloc::is_tracing());  // it started tracing, so it stopped it

  // A call that frees more than it allocates; arguments are forwarded.
  auto shrink = memlens::memory_tracker(
      [](std::vector<int>& v) {
        std::vector<int> temp(5000);
        test_e05::keep(temp);
        v = {};
        return temp.size();
      },
      reports.sink());
  CHECK(shrink(result) == 5000);
  REQUIRE(reports.list.size() == 2);
  CHECK(reports.list[1].peak == 20000);
  CHECK(reports.list[1].current == 0);  // `result` was allocated before tracing started
}

TEST_CASE("e05: memory_tracker reports then rethrows when the callable throws",
          "[exercise][e05][tracemalloc]") {
  test_e05::Reports reports;
  reports.list.reserve(2);
  auto failing = memlens::memory_tracker(
      [] {
        std::vector<char> buffer(3000);
        test_e05::keep(buffer);
        throw std::runtime_error("boom");
      },
      reports.sink(), "failing");
  CHECK_THROWS_WITH(failing(), "boom");
  REQUIRE(reports.list.size() == 1);
  CHECK(reports.list[0].raised);
  CHECK(reports.list[0].error == "boom");
  // At the report the exception is alive: its message (and, where malloc is traced too, as
  // under clang's sanitizers, the exception object) is the only memory the call kept.
  CHECK(reports.list[0].current >= 0);
  CHECK(reports.list[0].current < 512);
  CHECK(reports.list[0].peak >= 3000);
  CHECK(reports.list[0].peak < 3000 + 512);
  CHECK_THAT(memlens::to_string(reports.list[0]), memlens_test::contains("raised: boom"));
  CHECK_FALSE(tracemalloc::is_tracing());
}

TEST_CASE("e05: MemoryTrackerScope and nesting inside a running trace",
          "[exercise][e05][tracemalloc]") {
  test_e05::Reports reports;
  reports.list.reserve(4);
  tracemalloc::start();
  std::vector<char> outer(10000);
  test_e05::keep(outer);
  {
    memlens::MemoryTrackerScope scope("inner", reports.sink());
    std::vector<char> temp(2000);
    test_e05::keep(temp);
  }
  auto [current, peak] = tracemalloc::get_traced_memory();
  CHECK(tracemalloc::is_tracing());  // it was on before: the scope leaves it on
  CHECK(peak >= 10000);              // the outer peak survives the inner measurement
  CHECK(current >= 10000);
  try {
    memlens::MemoryTrackerScope scope("unwound", reports.sink());
    std::vector<char> temp(100);
    test_e05::keep(temp);
    throw std::runtime_error("left by an exception");
  } catch (const std::runtime_error&) {
  }
  tracemalloc::stop();

  REQUIRE(reports.list.size() == 2);
  CHECK(reports.list[0].name == "inner");
  CHECK(reports.list[0].peak == 2000);
  CHECK(reports.list[0].current == 0);
  CHECK_FALSE(reports.list[0].raised);
  CHECK(reports.list[1].raised);
  CHECK(reports.list[1].peak >= 100);  // with the exception's message
  CHECK(reports.list[1].peak < 100 + 512);
}
