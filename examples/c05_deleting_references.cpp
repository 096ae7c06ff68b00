// Seed challenge 5: deleting a reference does not necessarily delete the object.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memlens/memlens.hpp>
#include <vector>

namespace {

struct Noisy : memlens::Object {
  ~Noisy() override { fmt::print("  (the object is destroyed now)\n"); }
  std::vector<int> items{1, 2, 3};
};

}  // namespace

int main() {
  auto x = memlens::make<Noisy>();
  auto y = x;
  fmt::print("x = [1, 2, 3]; y = x\n");
  fmt::print("id(x) == id(y): {} ({:#x})\n", memlens::id(x) == memlens::id(y), memlens::id(x));

  fmt::print("\nx.reset()  (del x)\n");
  x.reset();
  fmt::print("x is {}, y->items = {}, getrefcount(y) = {}\n", x, y->items,
             memlens::sys::getrefcount(y));

  fmt::print("\ny.reset()  (the last reference)\n");
  y.reset();
  fmt::print("done\n");
  return 0;
}
