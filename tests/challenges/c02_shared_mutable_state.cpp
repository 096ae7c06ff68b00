// Seed challenge 2, shared mutable state: a mutable default argument is one object, made once
// and shared by every call that uses the default.
//   def append_to(element, target=[]): target.append(element); return target
//   first = append_to(1); second = append_to(2); assert second == [1, 2]
// Fix: None as a sentinel that means "make a new list".
#include <memlens/memlens.hpp>
#include <vector>

#include "../../examples/append_to.hpp"
#include "memlens_test.hpp"

namespace test_c02 = memlens_examples;

using test_c02::List;

TEST_CASE("c02: a shared default argument accumulates state across calls", "[challenge][c02]") {
  // As if the `def` had just run (other test cases in this process may have called it).
  test_c02::shared_default()->clear();

  auto first = test_c02::append_to(1);
  CHECK(*first == List{1});
  auto second = test_c02::append_to(2);

  CHECK(*second == List{1, 2});  // the bug from shared state
  CHECK(*first == List{1, 2});   // first changed too: it is the very same list
  CHECK(memlens::is(first, second));
  CHECK(memlens::is(second, test_c02::shared_default()));

  // The default outlives the calls' results: it belongs to the function.
  first.reset();
  second.reset();
  CHECK(*test_c02::shared_default() == List{1, 2});
  CHECK(*test_c02::append_to(3) == List{1, 2, 3});
}

TEST_CASE("c02: a null sentinel gives each call its own list", "[challenge][c02]") {
  auto first = test_c02::append_to_fixed(1);
  auto second = test_c02::append_to_fixed(2);

  CHECK(*first == List{1});
  CHECK(*second == List{2});
  CHECK_FALSE(memlens::is(first, second));
  // Each result is owned by its caller alone.
  CHECK(memlens::sys::getrefcount(first) == 1);
  CHECK(memlens::sys::getrefcount(second) == 1);
}

TEST_CASE("c02: an explicit target is still shared on purpose", "[challenge][c02]") {
  auto mine = memlens::make<List>(List{0});
  auto result = test_c02::append_to_fixed(1, mine);
  CHECK(memlens::is(result, mine));
  CHECK(*mine == List{0, 1});

  // The buggy version behaves the same way when given a target: only the default is shared.
  auto other = memlens::make<List>();
  CHECK(memlens::is(test_c02::append_to(5, other), other));
  CHECK(*other == List{5});
}
