// Challenge 4: two objects that reference each other form a cycle that reference counting
// cannot free; gc::collect() finds and frees it.
#include <memlens/gc.hpp>

#include <memlens/sys.hpp>
#include <memlens/weakref.hpp>

#include "memlens_test.hpp"

namespace test_c04 {
struct Node : memlens::Object {
  static inline int alive = 0;
  memlens::Ref<Node> ref;  // self.ref = None
  Node() { ++alive; }
  ~Node() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("ref", ref)); }
};
}  // namespace test_c04

using test_c04::Node;

TEST_CASE("c04: a cycle outlives its names until gc::collect", "[challenge][c04][gc]") {
  memlens::gc::disable();  // so that only the collect() below frees the cycle
  memlens::gc::collect();
  memlens::Weak<Node> watch_a, watch_b;
  {
    auto a = memlens::make<Node>();
    auto b = memlens::make<Node>();
    a->ref = b;
    b->ref = a;  // cycle
    watch_a = a;
    watch_b = b;
    CHECK(memlens::sys::getrefcount(a) == 2);  // `a` and b.ref
    CHECK(memlens::gc::get_referrers(a).size() == 1);
    CHECK(memlens::is(memlens::gc::get_referents(a).at(0), b));
  }
  // Both names are gone, yet each object still holds the other.
  CHECK(Node::alive == 2);
  CHECK_FALSE(watch_a.expired());
  CHECK(memlens::gc::collect() == 2);
  CHECK(Node::alive == 0);
  CHECK(watch_a.expired());
  CHECK(watch_b.expired());
  memlens::gc::enable();
}

TEST_CASE("c04: breaking the cycle by hand frees it without the collector",
          "[challenge][c04][gc]") {
  memlens::gc::disable();
  {
    auto a = memlens::make<Node>();
    auto b = memlens::make<Node>();
    a->ref = b;
    b->ref = a;
    b->ref = nullptr;  // break it
  }
  CHECK(Node::alive == 0);
  CHECK(memlens::gc::collect() == 0);
  memlens::gc::enable();
}

TEST_CASE("c04: a weak back reference never forms a cycle", "[challenge][c04][weakref]") {
  struct Parent : memlens::Object {
    memlens::Ref<memlens::Object> child;
    void traverse(memlens::Visitor& visit) override { visit(child); }
  };
  struct ChildNode : memlens::Object {
    memlens::Weak<Parent> parent;  // weak: the parent owns the child, not the reverse
  };
  memlens::Weak<ChildNode> child_watch;
  {
    auto parent = memlens::make<Parent>();
    auto child = memlens::make<ChildNode>();
    child->parent = parent;
    parent->child = child;
    child_watch = child;
  }
  CHECK(child_watch.expired());  // freed by reference counting alone
}
