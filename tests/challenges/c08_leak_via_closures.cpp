// Seed challenge 8, a memory leak via closures: a function returns a closure over a list of a
// million elements, and the list stays alive as long as the closure does:
//   def make_leaky():
//       big_data = [1] * 10**6
//       def inner(): return big_data
//       return inner
//   leak = make_leaky()   # big_data is still alive because inner closes over it
// In C++ the closure is a std::function whose lambda captured the Ref. The two fixes: capture a
// Weak (the closure no longer keeps the data), or capture only what the closure needs.
#include <memlens/testing.hpp>

#include <memlens/weakref.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace test_c08 {

using test_tracemalloc_common::has_line_info;
using BigData = std::vector<int>;

int data_line = 0;
int capture_line = 0;

/// The seed's make_leaky; `watch` gets a weak reference to big_data.
std::function<std::size_t()> make_leaky(memlens::Weak<BigData>* watch = nullptr) {
  data_line = __LINE__ + 1;
  auto big_data = memlens::make<BigData>(1'000'000, 1);
  if (watch) *watch = big_data;
  capture_line = __LINE__ + 1;
  return [big_data] { return big_data->size(); };
}

/// Fix 1: the closure holds big_data weakly, and says so when it is gone.
std::function<std::size_t()> make_weak(memlens::Weak<BigData>* watch = nullptr) {
  auto big_data = memlens::make<BigData>(1'000'000, 1);
  if (watch) *watch = big_data;
  return [weak = memlens::Weak<BigData>(big_data)] {
    auto data = weak.lock();
    return data ? data->size() : 0;
  };
}

/// Fix 2: the closure captures only what it needs, the size.
std::function<std::size_t()> make_lean(memlens::Weak<BigData>* watch = nullptr) {
  auto big_data = memlens::make<BigData>(1'000'000, 1);
  if (watch) *watch = big_data;
  return [n = big_data->size()] { return n; };
}

std::vector<std::function<std::size_t()>> handlers;  // where a program keeps its callbacks

}  // namespace test_c08

using namespace test_c08;

TEST_CASE("c08: a closure keeps what it captured alive after its factory returned",
          "[challenges][c08]") {
  memlens::Weak<BigData> watch;
  auto leak = make_leaky(&watch);
  CHECK_FALSE(watch.expired());  // big_data is still alive because the closure holds it
  CHECK(leak() == 1'000'000);
  CHECK(memlens::sys::getrefcount(watch.lock()) == 2);  // the closure's and this lock's
  leak = nullptr;  // the closure goes, and big_data with it
  CHECK(watch.expired());
}

TEST_CASE("c08: leaks_of finds the captured vector and the line that made it and the capturing "
          "line",
          "[challenges][c08]") {
  handlers.clear();
  const auto leaks = memlens::testing::leaks_of([] { handlers.push_back(make_leaky()); });
  REQUIRE(leaks.objects.size() == 1);
  CHECK(leaks.objects[0].type_name == memlens::type_name(memlens::make<BigData>()));
  CHECK(leaks.objects[0].count == 1);
  // Held by a std::function, which is no memlens object: no path inside the heap.
  CHECK(leaks.objects[0].kept_alive_by.empty());
  // The closure std::function allocated to hold the captured Ref is the capturing line's.
  bool capture_seen = false;
  for (const auto& site : leaks.sites) {
    if (site.site.size() > 0 && site.site.front().lineno == capture_line) capture_seen = true;
  }
  if (has_line_info()) {
    CHECK(leaks.objects[0].site.front().lineno == data_line);
    CHECK(capture_seen);
  }
  handlers.clear();
}

TEST_CASE("c08: capturing a Weak or only what is needed does not keep the data",
          "[challenges][c08]") {
  memlens::Weak<BigData> watch;
  auto weak = make_weak(&watch);
  CHECK(watch.expired());  // nothing but the closure's Weak referred to it
  CHECK(weak() == 0);      // and the closure can tell
  auto lean = make_lean(&watch);
  CHECK(watch.expired());
  CHECK(lean() == 1'000'000);

  // The handlers keep their closures on purpose: the few bytes std::function allocates to hold
  // a Weak stay, under the threshold; the megabytes of data do not.
  handlers.clear();
  CHECK(memlens::testing::leaks_of([] { handlers.push_back(make_weak()); }, {.site_threshold = 64})
            .objects.empty());
  CHECK(memlens::testing::leaks_of([] { handlers.push_back(make_lean()); }, {.site_threshold = 64})
            .empty());
  handlers.clear();
}
