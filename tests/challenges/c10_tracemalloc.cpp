// Seed challenge 10, investigate memory use with tracemalloc:
//   tracemalloc.start()
//   lst = [i for i in range(10000)]
//   current, peak = tracemalloc.get_traced_memory()
//   tracemalloc.stop()
// In C++ the list is a std::vector<int> (values inline), or, as Python's list of int objects,
// a vector of pointers to boxed integers. The global operator new is traced through
// memlens/track_new.hpp (tests/unit/tracemalloc_hook.cpp).
#include <memlens/tracemalloc.hpp>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "memlens_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

TEST_CASE("c10: current and peak around building a 10000-element list",
          "[challenge][c10][tracemalloc]") {
  tracemalloc::start();
  std::size_t current = 0;
  std::size_t peak = 0;
  {
    std::vector<int> lst;
    for (int i = 0; i < 10000; ++i) lst.push_back(i);
    std::tie(current, peak) =
        std::pair(tracemalloc::get_traced_memory().current, tracemalloc::get_traced_memory().peak);
  }
  auto after = tracemalloc::get_traced_memory();
  tracemalloc::stop();

  // push_back doubles the capacity: 16384 ints remain; the peak is the last reallocation, when
  // the 8192-int buffer and the 16384-int one lived together.
  CHECK(current == 16384 * sizeof(int));
  CHECK(peak == (16384 + 8192) * sizeof(int));
  CHECK(after.current == 0);  // the list is gone
  CHECK(after.peak == peak);
  CHECK(tracemalloc::get_traced_memory().current == 0);  // stopped: {0, 0}
  CHECK(tracemalloc::get_traced_memory().peak == 0);
}

TEST_CASE("c10: a list of boxed ints costs an allocation per element as Python's does",
          "[challenge][c10][tracemalloc]") {
  tracemalloc::start();
  std::vector<std::unique_ptr<long long>> lst;
  for (long long i = 0; i < 10000; ++i) lst.push_back(std::make_unique<long long>(i));
  auto [current, peak] = tracemalloc::get_traced_memory();
  std::vector<tracemalloc::Statistic> top;
  {
    auto snapshot = tracemalloc::take_snapshot();
    top = snapshot.statistics("lineno");
  }
  tracemalloc::stop();

  CHECK(current == 16384 * sizeof(void*) + 10000 * sizeof(long long));
  CHECK(peak > current);
  // One line made the boxes and grew the list: "lineno" puts them together, as Python would.
  REQUIRE_FALSE(top.empty());
  CHECK(top[0].size == current);
  CHECK(top[0].count == 10000 + 1);
}
