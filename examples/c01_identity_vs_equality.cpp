// Seed challenge 1: identity (`is`) vs equality (`==`).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memlens/memlens.hpp>
#include <vector>

int main() {
  using List = std::vector<int>;
  auto a = memlens::make<List>(List{1, 2, 3});
  auto b = memlens::make<List>(List{1, 2, 3});
  auto c = a;

  fmt::print("a = {}; b = {}; c = a\n", *a, *b);
  fmt::print("*a == *b     -> {:5}  equal values\n", *a == *b);
  fmt::print("is(a, b)     -> {:5}  two objects: id(a) = {:#x}, id(b) = {:#x}\n", memlens::is(a, b),
             memlens::id(a), memlens::id(b));
  fmt::print("is(a, c)     -> {:5}  one object, two names: id(c) = {:#x}\n", memlens::is(a, c),
             memlens::id(c));
  fmt::print("a == c       -> {:5}  Ref's own == compares identity, like every smart pointer\n",
             a == c);

  c->push_back(4);
  fmt::print("\nc->push_back(4)\n");
  fmt::print("a = {}  (changed through c)\nb = {}  (another object, untouched)\n", *a, *b);
  fmt::print("*a == *b     -> {}\n", *a == *b);
  return 0;
}
