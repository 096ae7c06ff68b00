// Seed challenge 6: a weak reference does not keep its object alive.
#include <fmt/format.h>

#include <memlens/memlens.hpp>

struct MyObject : memlens::Object {};

int main() {
  auto obj = memlens::make<MyObject>();
  memlens::weakref::ref<MyObject> ref = obj;
  memlens::Weak<MyObject> with_callback(obj, [] { fmt::print("  callback: the object died\n"); });

  fmt::print("ref = {}\n", ref);
  fmt::print("is(ref(), obj): {}\n", memlens::is(ref(), obj));
  fmt::print("getrefcount(obj) = {}: weak references add nothing\n",
             memlens::sys::getrefcount(obj));
  fmt::print("getweakrefcount(obj) = {}: ref and with_callback\n",
             memlens::weakref::getweakrefcount(obj));

  fmt::print("\nobj.reset()  (del obj)\n");
  obj.reset();
  fmt::print("ref() = {}, ref.expired() = {}\n", ref(), ref.expired());
  fmt::print("ref = {}\n", ref);
  return 0;
}
