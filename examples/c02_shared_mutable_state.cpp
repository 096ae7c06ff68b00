// Seed challenge 2: a mutable default argument is one object shared by every call.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memlens/memlens.hpp>
#include <vector>

namespace {

using List = std::vector<int>;

// Python evaluates `target=[]` once, when `def` runs; this is that one list.
memlens::Ref<List> shared_default() {
  static const memlens::Ref<List> target = memlens::make<List>();
  return target;
}

memlens::Ref<List> append_to(int element, memlens::Ref<List> target = shared_default()) {
  target->push_back(element);
  return target;
}

// The fix: null is the sentinel for "make a new list".
memlens::Ref<List> append_to_fixed(int element, memlens::Ref<List> target = nullptr) {
  if (!target) target = memlens::make<List>();
  target->push_back(element);
  return target;
}

}  // namespace

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
