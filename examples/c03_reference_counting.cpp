// Seed challenge 3: sys::getrefcount through assignment, calls, containers and deletion.
#include <fmt/format.h>

#include <memlens/memlens.hpp>
#include <string_view>
#include <vector>

namespace {

using List = std::vector<int>;

void show(std::string_view step, const memlens::Ref<List>& x) {
  fmt::print("{:<44} getrefcount(x) = {}\n", step, memlens::sys::getrefcount(x));
}

void by_value(memlens::Ref<List> parameter) { show("  inside by_value(Ref)", parameter); }
void by_reference(const memlens::Ref<List>& parameter) {
  show("  inside by_reference(const Ref&)", parameter);
}

}  // namespace

int main() {
  fmt::print("memlens counts exactly; CPython's getrefcount shows one more (its argument).\n\n");
  auto x = memlens::make<List>();
  show("x = make<List>()", x);
  auto y = x;
  show("y = x", x);
  by_value(x);
  show("after by_value(x)", x);
  by_reference(x);
  std::vector<memlens::Ref<List>> list{x, x};
  show("list = {x, x}", x);
  list.clear();
  show("list.clear()", x);
  y.reset();
  show("y.reset()  (del y)", x);
  memlens::Weak<List> probe = x;
  x.reset();
  fmt::print("{:<44} the object is {}\n", "x.reset()  (the last one)",
             probe.expired() ? "destroyed" : "alive");
  return 0;
}
