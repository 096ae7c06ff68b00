// Shared by every consumer test: the smallest program a user of memlens would write.
#include <memlens/memlens.hpp>

int main() {
  auto r = memlens::make<int>(42);
  return (*r == 42 && memlens::sys::getrefcount(r) == 1) ? 0 : 1;
}
