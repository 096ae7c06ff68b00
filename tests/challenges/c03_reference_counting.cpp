// Seed challenge 3, reference counting: watch sys.getrefcount() as references come and go.
//   x = []; print(sys.getrefcount(x))  # includes the temporary made for the call
// memlens::sys::getrefcount is exact: it adds no temporary, so a fresh object reports 1 where
// CPython reports 2.
#include <cstddef>
#include <memlens/memlens.hpp>
#include <utility>
#include <vector>

#include "memlens_test.hpp"

namespace test_c03 {

using List = std::vector<int>;

/// A parameter taken by value is one more reference, for the duration of the call.
std::size_t count_by_value(memlens::Ref<List> list) { return memlens::sys::getrefcount(list); }

/// A parameter taken by const reference names the caller's Ref: no new reference.
std::size_t count_by_reference(const memlens::Ref<List>& list) {
  return memlens::sys::getrefcount(list);
}

struct Holder : memlens::Object {
  memlens::Ref<List> list;
};

}  // namespace test_c03

using memlens::sys::getrefcount;
using test_c03::List;

TEST_CASE("c03: a fresh object has exactly one reference", "[challenge][c03]") {
  auto x = memlens::make<List>();
  CHECK(getrefcount(x) == 1);  // CPython would print 2 (its argument's temporary)
  CHECK(getrefcount(memlens::Ref<List>()) == 0);
}

TEST_CASE("c03: assignment adds a reference and reassignment moves it", "[challenge][c03]") {
  auto x = memlens::make<List>();
  auto y = x;
  CHECK(getrefcount(x) == 2);
  CHECK(getrefcount(y) == 2);

  auto z = memlens::make<List>();
  y = z;  // y now names z's object: x loses one reference, z gains one
  CHECK(getrefcount(x) == 1);
  CHECK(getrefcount(z) == 2);

  // Moving a Ref hands its reference over: no count changes, the source becomes null.
  auto moved = std::move(y);
  CHECK(memlens::is(moved, z));
  CHECK(getrefcount(z) == 2);
  CHECK_FALSE(y);  // NOLINT(bugprone-use-after-move): a moved-from Ref is null by contract
}

TEST_CASE("c03: passing to a function by value adds one and by const& adds none",
          "[challenge][c03]") {
  auto x = memlens::make<List>();
  CHECK(test_c03::count_by_value(x) == 2);
  CHECK(getrefcount(x) == 1);  // the parameter's reference ended with the call
  CHECK(test_c03::count_by_reference(x) == 1);
  CHECK(getrefcount(x) == 1);

  // Moving into a by-value parameter transfers the caller's reference instead of adding one.
  auto y = x;
  CHECK(test_c03::count_by_value(std::move(y)) == 2);
  CHECK(getrefcount(x) == 1);
}

TEST_CASE("c03: storing in containers and objects adds a reference per slot", "[challenge][c03]") {
  auto x = memlens::make<List>();
  std::vector<memlens::Ref<List>> refs;
  refs.push_back(x);
  CHECK(getrefcount(x) == 2);
  refs.push_back(x);
  refs.push_back(x);
  CHECK(getrefcount(x) == 4);  // the same object stored three times

  auto holder = memlens::make<test_c03::Holder>();
  holder->list = x;
  CHECK(getrefcount(x) == 5);

  refs.pop_back();
  CHECK(getrefcount(x) == 4);
  refs.clear();
  CHECK(getrefcount(x) == 2);
  holder.reset();  // the holder dies and drops its member
  CHECK(getrefcount(x) == 1);
}

TEST_CASE("c03: deleting references counts down and zero destroys the object",
          "[challenge][c03]") {
  auto x = memlens::make<List>(List{1, 2, 3});
  memlens::Weak<List> probe = x;  // watches the object without counting
  auto y = x;
  {
    auto z = x;
    CHECK(getrefcount(x) == 3);
  }  // z's scope ends: `del z`
  CHECK(getrefcount(x) == 2);

  y.reset();  // del y
  CHECK(getrefcount(x) == 1);
  CHECK_FALSE(probe.expired());

  x = nullptr;  // the last reference: the object is destroyed right here
  CHECK(probe.expired());
  CHECK(getrefcount(x) == 0);
}
