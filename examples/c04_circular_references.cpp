// Challenge 4: circular references. Two nodes that point at each other keep each other alive
// after their names are gone; the cycle collector finds and frees them.
#include <fmt/core.h>

#include <memlens/memlens.hpp>

namespace {
struct Node : memlens::Object {
  std::string name;
  memlens::Ref<Node> ref;
  explicit Node(std::string n) : name(std::move(n)) {}
  ~Node() override { fmt::print("  ~Node({}) runs\n", name); }
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("ref", ref)); }
  std::string repr() const override { return "Node(" + name + ")"; }
};
}  // namespace

int main() {
  memlens::gc::disable();  // collect by hand, to show when it happens
  memlens::Weak<Node> watch;
  {
    auto a = memlens::make<Node>("a");
    auto b = memlens::make<Node>("b");
    a->ref = b;
    b->ref = a;  // cycle
    watch = a;
    fmt::print("a = {}, b = {}; a.ref is b: {}\n", a, b, memlens::is(a->ref, b));
    fmt::print("getrefcount(a) = {} (the name `a` and b.ref)\n", memlens::sys::getrefcount(a));
    fmt::print("referrers of a: {}\n", memlens::gc::get_referrers(a).size());
    fmt::print("dropping the names a and b...\n");
  }
  fmt::print("a still alive after its name is gone: {}\n", !watch.expired());
  fmt::print("gc::collect()...\n");
  const auto found = memlens::gc::collect();
  fmt::print("gc::collect() found {} unreachable objects; a alive: {}\n", found, !watch.expired());
  memlens::gc::enable();
}
