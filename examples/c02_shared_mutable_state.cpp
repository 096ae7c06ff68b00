// Seed challenge 2: a mutable default argument is one object shared by every call.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memlens/memlens.hpp>
#include <vector>

#include "append_to.hpp"

using memlens_examples::append_to;
using memlens_examples::append_to_fixed;
using memlens_examples::List;
using memlens_examples::shared_default;

int main() {
  fmt::print("With a shared default:\n");
  auto first = append_to(1);
  fmt::print("  first  = append_to(1) -> {}\n", *first);
  auto second = append_to(2);
  fmt::print("  second = append_to(2) -> {}   <- the bug\n", *second);
  fmt::print("  first is now {}; is(first, second) = {}\n", *first, memlens::is(first, second));

  fmt::print("\nWith a null sentinel:\n");
  auto fixed_first = append_to_fixed(1);
  auto fixed_second = append_to_fixed(2);
  fmt::print("  append_to_fixed(1) -> {}\n", *fixed_first);
  fmt::print("  append_to_fixed(2) -> {}\n", *fixed_second);
  fmt::print("  is(first, second) = {}\n", memlens::is(fixed_first, fixed_second));
  return 0;
}
