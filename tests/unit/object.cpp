// Tests of memlens/object.hpp: Ref semantics, make, identity, the object header.
#include <memlens/object.hpp>

#include <memlens/gc.hpp>
#include <memlens/threads.hpp>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "child_process.hpp"
#include "gc_test.hpp"
#include "memlens_test.hpp"

namespace test_object {

using memlens::make;
using memlens::Ref;

inline std::size_t count(const memlens::Object* o) { return memlens::detail::Access::refcnt(o); }
template <class T>
std::size_t count(const Ref<T>& r) {
  return count(r.object());
}

/// Counts live instances, to prove destruction happens exactly when the count reaches zero.
struct Counted : memlens::Object {
  static inline int alive = 0;
  int value;
  explicit Counted(int v = 0) : value(v) { ++alive; }
  Counted(const Counted& other) : memlens::Object(other), value(other.value) { ++alive; }
  Counted& operator=(const Counted&) = default;
  ~Counted() override { --alive; }
  bool operator==(const Counted& other) const { return value == other.value; }
};

/// Holds an object as a member: not made by make, so no Ref may name it.
struct Outer : memlens::Object {
  Counted inner{3};
};

struct Node : memlens::Object {
  Ref<Node> next;
  int payload = 0;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};

/// Overrides traverse and finalize as private members: memlens calls them through Object.
class PrivateHooks : public memlens::Object {
 public:
  static inline int finalized = 0;
  Ref<PrivateHooks> next;

 private:
  void traverse(memlens::Visitor& visit) override { visit(next); }
  void finalize() override { ++finalized; }
};

/// The same with protected overrides.
class ProtectedHooks : public memlens::Object {
 public:
  static inline int finalized = 0;
  Ref<ProtectedHooks> next;

 protected:
  void traverse(memlens::Visitor& visit) override { visit(next); }
  void finalize() override { ++finalized; }
};

struct Base : memlens::Object {
  virtual int kind() const { return 1; }
};
struct Derived : Base {
  int kind() const override { return 2; }
};

struct Unrelated {
  virtual ~Unrelated() = default;
  std::int64_t padding = 7;
};
/// Object is not the first base: its header sits at a non-zero offset in the allocation.
struct SecondBase : Unrelated, memlens::Object {
  static inline int alive = 0;
  Ref<Node> ref;
  SecondBase() { ++alive; }
  ~SecondBase() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(ref); }
};

struct alignas(64) OverAligned : memlens::Object {
  Ref<Node> ref;
  double data[4] = {};
  void traverse(memlens::Visitor& visit) override { visit(ref); }
};

/// Stores a Ref to itself in its constructor, as a registry entry would.
struct SelfRegistering : memlens::Object {
  static inline std::vector<Ref<SelfRegistering>> registry;
  SelfRegistering() { registry.emplace_back(this); }
};

struct Throwing : memlens::Object {
  explicit Throwing(bool fail) {
    if (fail) throw std::runtime_error("constructor failed");
  }
};

struct Point {
  int x, y;
  bool operator==(const Point&) const = default;
};

/// A link of a chain whose nodes count themselves, to prove each dies exactly once.
struct Link : memlens::Object {
  static inline int alive = 0;
  Ref<Link> next;
  Link() { ++alive; }
  ~Link() override { --alive; }
};

/// A chain of n links, deeper than the trashcan's limit when n > 64.
inline Ref<Link> chain(int n) {
  auto head = make<Link>();
  Link* tail = head.get();
  for (int i = 1; i < n; ++i) {
    tail->next = make<Link>();
    tail = tail->next.get();
  }
  return head;
}

/// Reports, as the very last static destructor of the program, how many links outlived exit.
struct ExitReport {
  ~ExitReport() {
    if (armed) {
      std::fprintf(stderr, "links alive after static destruction: %d\n", Link::alive);
      std::fflush(stderr);
    }
  }
  bool armed = false;
};
// Declared (and so constructed) before exit_chain: destroyed after it.
constinit ExitReport exit_report;
constinit Ref<Link> exit_chain;

/// Unregisters itself through a helper that takes a Ref, from its destructor.
struct Unregistering : memlens::Object {
  static inline int destructions = 0;
  static inline std::vector<const memlens::Object*> registry;
  static void unregister(Ref<Unregistering> self) {
    std::erase(registry, self.object());
  }
  Unregistering() { registry.push_back(this); }
  ~Unregistering() override {
    ++destructions;
    unregister(Ref<Unregistering>(this));
  }
};

/// A base larger than the 17 bits make once kept the Object base's offset in. Polymorphic, so
/// that it, not Object, starts the layout of a type that derives from both.
struct Large {
  virtual ~Large() = default;
  char bytes[200'000] = {};
};
struct FarBase : Large, memlens::Object {
  static inline int alive = 0;
  Ref<FarBase> next;
  FarBase() { ++alive; }
  ~FarBase() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(next); }
};

}  // namespace test_object

using namespace test_object;

TEST_CASE("make returns the only reference and the object dies with it", "[object]") {
  REQUIRE(Counted::alive == 0);
  {
    auto a = make<Counted>(5);
    CHECK(count(a) == 1);
    CHECK(a->value == 5);
    CHECK(Counted::alive == 1);
  }
  CHECK(Counted::alive == 0);
}

TEST_CASE("copies add references and destruction and reset drop them", "[object]") {
  auto a = make<Counted>(1);
  {
    Ref<Counted> b = a;
    CHECK(count(a) == 2);
    Ref<Counted> c;
    c = b;
    CHECK(count(a) == 3);
    c.reset();
    CHECK_FALSE(c);
    CHECK(count(a) == 2);
    b = nullptr;
    CHECK(count(a) == 1);
  }
  Ref<Counted> moved = std::move(a);
  CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): a moved-from Ref is null, by contract
  CHECK(count(moved) == 1);
  Ref<Counted>& alias = moved;
  moved = alias;  // self-assignment keeps the object
  CHECK(count(moved) == 1);
  CHECK(Counted::alive == 1);
  moved.reset();
  CHECK(Counted::alive == 0);
}

TEST_CASE("== is identity and *a == *b is equality", "[object]") {
  auto a = make<Counted>(3);
  auto b = make<Counted>(3);
  auto c = a;
  CHECK(*a == *b);
  CHECK(a != b);
  CHECK_FALSE(memlens::is(a, b));
  CHECK(a == c);
  CHECK(memlens::is(a, c));
  CHECK(memlens::id(a) == memlens::id(c));
  CHECK(memlens::id(a) != memlens::id(b));
  CHECK(memlens::id(Ref<Counted>()) == 0);
  CHECK(Ref<Counted>() == nullptr);
}

TEST_CASE("a copy of an object is a new object with its own header", "[object]") {
  auto a = make<Counted>(9);
  auto extra = a;
  auto b = make<Counted>(*a);
  CHECK(count(b) == 1);
  CHECK(count(a) == 2);
  CHECK(*a == *b);
  CHECK_FALSE(memlens::is(a, b));
  *b = Counted(4);  // assignment copies the value, never the header
  CHECK(count(b) == 1);
  CHECK(b->value == 4);
}

TEST_CASE("Ref<Derived> converts to Ref<Base> and Ref<Object> keeping identity", "[object]") {
  auto d = make<Derived>();
  Ref<Base> b = d;
  Ref<memlens::Object> o = b;
  Ref<const Base> cb = b;
  CHECK(b->kind() == 2);
  CHECK(memlens::is(d, o));
  CHECK(memlens::is(cb, d));
  CHECK(memlens::id(o) == memlens::id(d));
  CHECK(count(d) == 4);
  auto back = memlens::dynamic_ref_cast<Derived>(o);
  REQUIRE(back);
  CHECK(memlens::is(back, d));
  CHECK_FALSE(memlens::dynamic_ref_cast<Node>(o));
  auto down = memlens::static_ref_cast<Derived>(std::move(b));
  CHECK_FALSE(b);  // NOLINT(bugprone-use-after-move)
  CHECK(count(d) == 5);
}

TEST_CASE("Ref(this) adds a reference also inside the constructor", "[object]") {
  auto a = make<Counted>(1);
  Ref<Counted> again(a.get());
  CHECK(count(a) == 2);
  CHECK(memlens::is(a, again));

  SelfRegistering::registry.clear();
  {
    auto s = make<SelfRegistering>();
    CHECK(count(s) == 2);
    CHECK(memlens::is(s, SelfRegistering::registry.at(0)));
  }
  CHECK(count(SelfRegistering::registry.at(0)) == 1);  // the registry keeps it alive
  SelfRegistering::registry.clear();
}

TEST_CASE("Ref<T>(T*) refuses an object make did not create", "[object]") {
  // A Ref to it could outlive it: on the stack, inside another object, in static storage.
  Counted on_stack(2);
  CHECK_THROWS_AS(Ref<Counted>(&on_stack), memlens::TypeError);
  CHECK_THROWS_WITH(Ref<Counted>(&on_stack), memlens_test::contains("was not made by memlens::make"));
  CHECK(count(&on_stack) == 1);
  auto outer = make<Outer>();
  CHECK_THROWS_AS(Ref<Counted>(&outer->inner), memlens::TypeError);
  CHECK(Ref<Outer>(outer.get()) == outer);  // what make made is fine, from any raw pointer
  CHECK(Ref<Counted>(nullptr) == nullptr);
}

TEST_CASE("make frees its memory when the constructor throws", "[object]") {
  CHECK_THROWS_AS(make<Throwing>(true), std::runtime_error);
  CHECK(make<Throwing>(false));
}

TEST_CASE("make boxes value types and Ref<T> then behaves as a pointer to T", "[object]") {
  auto v = make<std::vector<int>>(3, 7);
  CHECK(*v == std::vector<int>{7, 7, 7});
  v->push_back(1);
  CHECK(v->size() == 4);
  auto p = make<Point>(1, 2);  // aggregate: brace-initialized
  CHECK(*p == Point{1, 2});
  auto s = make<const std::string>("abc");
  static_assert(std::is_same_v<decltype(s.get()), const std::string*>);
  CHECK(*s == "abc");
  Ref<const std::vector<int>> cv = v;
  Ref<memlens::Object> as_object = v;
  CHECK(memlens::is(cv, v));
  CHECK(count(v) == 3);
  CHECK(memlens::dynamic_ref_cast<std::vector<int>>(as_object) == v);
  CHECK_FALSE(memlens::dynamic_ref_cast<std::string>(as_object));
  CHECK(memlens::type_name(as_object) == memlens::type_name(v));
  CHECK(memlens::type_name(v).find("vector<int") != std::string::npos);
}

TEST_CASE("make accepts traverse and finalize overridden private or protected", "[object]") {
  test_gc_support::GcGuard guard;
  PrivateHooks::finalized = 0;
  ProtectedHooks::finalized = 0;
  {
    auto a = make<PrivateHooks>();
    auto b = make<ProtectedHooks>();
    CHECK(memlens::gc::is_tracked(a));
    CHECK(memlens::gc::is_tracked(b));
    a->next = a;
    b->next = b;
  }
  CHECK(memlens::gc::collect() == 2);  // their traverse reported the self-references
  CHECK(PrivateHooks::finalized == 1);
  CHECK(ProtectedHooks::finalized == 1);
}

TEST_CASE("repr is Python's <Type object at 0x...>", "[object]") {
  auto n = make<Node>();
  const std::string text = memlens::repr(n);
  CHECK(text.rfind("<test_object::Node object at 0x", 0) == 0);
  CHECK(text.back() == '>');
  CHECK(memlens::repr(Ref<Node>()) == "None");
  CHECK(memlens::type_name(Ref<Node>()) == "NoneType");
}

TEST_CASE("Refs hash and order by identity", "[object]") {
  auto a = make<Counted>(1);
  auto b = make<Counted>(1);
  std::unordered_set<Ref<Counted>> set{a, b, a};
  CHECK(set.size() == 2);
  std::set<Ref<Counted>> ordered{a, b, a};
  CHECK(ordered.size() == 2);
  std::map<Ref<Counted>, int> by_object;
  by_object[a] = 1;
  CHECK(by_object.count(b) == 0);
  CHECK(std::hash<Ref<Counted>>{}(a) == std::hash<Ref<memlens::Object>>{}(Ref<memlens::Object>(a)));
}

TEST_CASE("the object header: 16 bytes and 16 more when tracked", "[object]") {
  STATIC_REQUIRE(sizeof(memlens::Object) == 16);
  STATIC_REQUIRE(sizeof(memlens::detail::GcHead) == 16);
  STATIC_REQUIRE(sizeof(Ref<Node>) == sizeof(void*));
  STATIC_REQUIRE(memlens::detail::is_tracked_type<Node>);
  STATIC_REQUIRE_FALSE(memlens::detail::is_tracked_type<Counted>);
  STATIC_REQUIRE(memlens::detail::is_tracked_type<memlens::detail::Box<std::vector<Ref<Node>>>>);
  STATIC_REQUIRE_FALSE(memlens::detail::is_tracked_type<memlens::detail::Box<std::vector<int>>>);

  auto untracked = make<Counted>();
  auto tracked = make<Node>();
  using memlens::detail::Access;
  using namespace memlens::detail::flag;
  CHECK_FALSE(Access::flags(untracked.object()) & memlens::detail::flag::tracked);
  CHECK(Access::flags(tracked.object()) & memlens::detail::flag::tracked);
  CHECK(memlens::detail::prefix_size(tracked.object()) == 16);
  CHECK(memlens::detail::prefix_size(untracked.object()) == 0);
}

TEST_CASE("tracked objects join generation 0 and leave it when they die", "[object]") {
  const auto& gen0 = memlens::detail::gc_state().generations[0];
  auto on_list = [&](const memlens::Object* o) {
    for (const memlens::Object* p = gen0.first(); p != gen0.end(); p = memlens::detail::gc_head(p)->next)
      if (p == o) return true;
    return false;
  };
  auto a = make<Node>();
  auto b = make<Node>();
  auto big = make<OverAligned>();
  auto second = make<SecondBase>();
  CHECK(on_list(a.object()));
  CHECK(on_list(big.object()));
  CHECK(on_list(second.object()));
  const memlens::Object* middle = b.object();
  b.reset();
  CHECK_FALSE(on_list(middle));
  CHECK(on_list(a.object()));
  CHECK(on_list(second.object()));
}

TEST_CASE("over-aligned and multiply-inherited objects are laid out and freed correctly",
          "[object]") {
  auto big = make<OverAligned>();
  CHECK(reinterpret_cast<std::uintptr_t>(big.get()) % 64 == 0);
  big->data[3] = 1.5;
  big->ref = make<Node>();
  REQUIRE(SecondBase::alive == 0);
  {
    auto s = make<SecondBase>();
    CHECK(static_cast<const void*>(s.object()) != static_cast<const void*>(s.get()));
    CHECK(s->padding == 7);
    Ref<memlens::Object> o = s;
    CHECK(memlens::dynamic_ref_cast<SecondBase>(o).get() == s.get());
    s->ref = make<Node>();
    CHECK(SecondBase::alive == 1);
  }
  CHECK(SecondBase::alive == 0);  // ASan checks the right block was freed
}

TEST_CASE("dropping a 1000000-node chain does not overflow the stack", "[object]") {
  auto head = make<Node>();
  Node* tail = head.get();
  for (int i = 0; i < 1'000'000; ++i) {
    tail->next = make<Node>();
    tail = tail->next.get();
  }
  tail->payload = 42;
  head.reset();  // one release that frees a million objects
  SUCCEED("no stack overflow");
}

TEST_CASE("destruction order stays deterministic: everything is freed before reset returns",
          "[object]") {
  struct Link : memlens::Object {
    Ref<Link> next;
    int* alive;
    explicit Link(int* a) : alive(a) { ++*alive; }
    ~Link() override { --*alive; }
  };
  int alive = 0;
  auto head = make<Link>(&alive);
  Link* tail = head.get();
  for (int i = 0; i < 10'000; ++i) {
    tail->next = make<Link>(&alive);
    tail = tail->next.get();
  }
  CHECK(alive == 10'001);
  head.reset();
  CHECK(alive == 0);
}

TEST_CASE("a Ref(this) inside a destructor does not destroy the object again", "[object]") {
  Unregistering::destructions = 0;
  {
    auto a = make<Unregistering>();
    auto b = make<Unregistering>();
    CHECK(Unregistering::registry.size() == 2);
  }
  CHECK(Unregistering::destructions == 2);
  CHECK(Unregistering::registry.empty());
}

TEST_CASE("an Object base far inside its type is freed at the right address", "[object]") {
  // 200,000 bytes in front of the Object base: beyond what the header's flags could hold.
  {
    auto a = make<FarBase>();
    auto b = make<FarBase>();
    CHECK(FarBase::alive == 2);
    CHECK(static_cast<const void*>(a.get()) != static_cast<const void*>(a.object()));
    a->next = b;
    b->next = a;  // a cycle, so the collector finds its GcHead from the Object base too
    CHECK(memlens::dynamic_ref_cast<FarBase>(Ref<memlens::Object>(a)).get() == a.get());
  }
  CHECK(FarBase::alive == 2);
  CHECK(memlens::gc::collect() == 2);
  CHECK(FarBase::alive == 0);  // ASan checks the blocks freed are the blocks allocated
}

TEST_CASE("a thread_local Ref released at thread exit after a deep release on that thread",
          "[object][threads]") {
  // The trashcan's queue of the thread must outlive its thread_local objects: here it was
  // first used after `kept` was made, so a queue with a destructor would die before `kept`.
  Link::alive = 0;
  std::thread([] {
    thread_local memlens::HeapLock lock;  // held until the thread's last object is gone
    thread_local Ref<Link> kept;
    kept = chain(10'000);
    chain(10'000).reset();  // a release deep enough to queue
  }).join();
  CHECK(Link::alive == 0);
}

TEST_CASE("child: exit with a deep chain alive in a global Ref", "[.exit]") {
  chain(10'000).reset();  // a deep release first: the trashcan's queue exists
  exit_chain = chain(100'000);
  exit_report.armed = true;
  SUCCEED();
}

TEST_CASE("objects dying during static destruction are freed safely", "[object]") {
  const auto outcome =
      test_child::run_self({"child: exit with a deep chain alive in a global Ref"});
  INFO(outcome.output);
  CHECK(outcome.exited_with(0));
  CHECK(outcome.output.find("links alive after static destruction: 0\n") != std::string::npos);
}
