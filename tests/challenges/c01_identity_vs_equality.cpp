// Seed challenge 1, identity vs equality: `==` compares values, `is` compares objects.
//   a = [1, 2, 3]; b = [1, 2, 3]; c = a
//   assert a == b; assert a is not b; assert a is c
#include <memlens/memlens.hpp>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace test_c01 {

using List = std::vector<int>;

struct Point : memlens::Object {
  Point(int x, int y) : x(x), y(y) {}
  int x, y;
  friend bool operator==(const Point& a, const Point& b) { return a.x == b.x && a.y == b.y; }
};

}  // namespace test_c01

using test_c01::List;

TEST_CASE("c01: equal lists are different objects but an alias is the same object",
          "[challenge][c01]") {
  auto a = memlens::make<List>(List{1, 2, 3});
  auto b = memlens::make<List>(List{1, 2, 3});
  auto c = a;

  CHECK(*a == *b);                 // a == b: equality of values
  CHECK_FALSE(memlens::is(a, b));  // a is not b
  CHECK(memlens::is(a, c));        // a is c

  // id() agrees with `is`.
  CHECK(memlens::id(a) == memlens::id(c));
  CHECK(memlens::id(a) != memlens::id(b));
  // Ref's own == is identity, as for every C++ smart pointer; values compare through *.
  CHECK(a == c);
  CHECK(a != b);
}

TEST_CASE("c01: a mutation through an alias shows through every name of the object",
          "[challenge][c01]") {
  auto a = memlens::make<List>(List{1, 2, 3});
  auto b = memlens::make<List>(List{1, 2, 3});
  auto c = a;

  c->push_back(4);
  CHECK(*a == List{1, 2, 3, 4});  // a sees c's change: one object, two names
  CHECK(*b == List{1, 2, 3});     // b is another object and stays as it was
  CHECK(*a != *b);                // so a == b no longer holds
  CHECK(memlens::is(a, c));
}

TEST_CASE("c01: identity does not depend on the static type of the reference", "[challenge][c01]") {
  auto p = memlens::make<test_c01::Point>(1, 2);
  auto q = memlens::make<test_c01::Point>(1, 2);
  memlens::Ref<memlens::Object> base = p;
  memlens::Ref<const test_c01::Point> view = p;

  CHECK(*p == *q);
  CHECK_FALSE(memlens::is(p, q));
  CHECK(memlens::is(base, p));
  CHECK(memlens::is(view, p));
  CHECK(memlens::id(base) == memlens::id(p));
  CHECK(memlens::id(view) == memlens::id(p));
}

TEST_CASE("c01: None is None and no object is None", "[challenge][c01]") {
  memlens::Ref<List> none1, none2;
  auto a = memlens::make<List>();
  CHECK(memlens::is(none1, none2));
  CHECK_FALSE(memlens::is(a, none1));
  CHECK(memlens::id(none1) == 0);
  CHECK(memlens::id(a) != 0);
  CHECK(memlens::repr(none1) == "None");
}
