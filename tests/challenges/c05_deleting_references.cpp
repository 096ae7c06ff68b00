// Seed challenge 5, deleting references: `del x` removes a name, not the object; the object
// goes only when its last reference does.
//   x = [1, 2, 3]; y = x; assert id(x) == id(y); del x; assert y == [1, 2, 3]
#include <cstdint>
#include <memlens/memlens.hpp>
#include <vector>

#include "memlens_test.hpp"

namespace test_c05 {

using List = std::vector<int>;

/// Counts its destructions, so a test can see exactly when the object goes.
struct Counted : memlens::Object {
  explicit Counted(int& destroyed) : destroyed(destroyed) {}
  ~Counted() override { ++destroyed; }
  int& destroyed;
};

}  // namespace test_c05

using test_c05::List;

TEST_CASE("c05: deleting one name leaves the object to the other", "[challenge][c05]") {
  auto x = memlens::make<List>(List{1, 2, 3});
  auto y = x;
  CHECK(memlens::id(x) == memlens::id(y));
  const std::uintptr_t address = memlens::id(y);

  x.reset();  // del x
  CHECK_FALSE(x);
  CHECK(memlens::id(x) == 0);
  CHECK(*y == List{1, 2, 3});        // the object is intact...
  CHECK(memlens::id(y) == address);  // ...and is the same object
  CHECK(memlens::sys::getrefcount(y) == 1);
}

TEST_CASE("c05: the object is destroyed when its last reference goes and not before",
          "[challenge][c05]") {
  int destroyed = 0;
  auto x = memlens::make<test_c05::Counted>(destroyed);
  auto y = x;
  std::vector<memlens::Ref<test_c05::Counted>> list{x};

  x.reset();
  CHECK(destroyed == 0);
  list.clear();  // deleting from a container is deleting a reference too
  CHECK(destroyed == 0);
  y.reset();  // the last one
  CHECK(destroyed == 1);
}

TEST_CASE("c05: a weak reference sees the object live through deletions until the last",
          "[challenge][c05]") {
  auto x = memlens::make<List>(List{1, 2, 3});
  auto y = x;
  memlens::Weak<List> w = x;

  x = nullptr;
  REQUIRE(w.lock());
  CHECK(*w.lock() == List{1, 2, 3});
  y = nullptr;
  CHECK(w.expired());
  CHECK_FALSE(w.lock());
}

TEST_CASE("c05: rebinding a name deletes its old reference", "[challenge][c05]") {
  int destroyed = 0;
  auto x = memlens::make<test_c05::Counted>(destroyed);
  auto y = x;
  x = memlens::make<test_c05::Counted>(destroyed);  // x = something else: old object keeps y
  CHECK(destroyed == 0);
  CHECK_FALSE(memlens::is(x, y));
  y = x;  // the first object loses its last name
  CHECK(destroyed == 1);
  CHECK(memlens::sys::getrefcount(x) == 2);
}
