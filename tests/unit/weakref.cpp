// Tests of memlens/weakref.hpp against the semantics of Python's weakref module.
#include <memlens/weakref.hpp>

#include <memlens/sys.hpp>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "memlens_test.hpp"

namespace test_weakref {

using memlens::make;
using memlens::Ref;
using memlens::Weak;

struct Item : memlens::Object {
  std::string name;
  explicit Item(std::string n = "") : name(std::move(n)) {}
  std::string greet(const std::string& who) const { return name + " greets " + who; }
  void touch() { ++touched; }
  int touched = 0;
};

/// Logs its finalizer and what a weak reference to it shows at that moment.
struct Logged : memlens::Object {
  std::vector<std::string>* log;
  Weak<Logged>* watcher = nullptr;
  explicit Logged(std::vector<std::string>* l) : log(l) {}
  void finalize() override {
    log->push_back(watcher && watcher->lock() ? "finalize: weakref sees object"
                                              : "finalize: weakref is null");
  }
  ~Logged() override { log->push_back("destructor"); }
};

/// Restores the default unraisable hook when a test ends.
struct HookGuard {
  std::vector<std::string> reports;
  HookGuard() {
    memlens::sys::set_unraisablehook([this](const memlens::sys::UnraisableInfo& info) {
      try {
        std::rethrow_exception(info.exception);
      } catch (const std::exception& e) {
        reports.push_back(std::string(info.err_msg) + ": " + e.what());
      }
    });
  }
  ~HookGuard() { memlens::sys::set_unraisablehook(nullptr); }
};

/// Lists itself in a WeakSet and makes a temporary weak reference to itself, then may throw.
struct SelfListing : memlens::Object {
  static inline const memlens::Object* last = nullptr;
  SelfListing(memlens::WeakSet<SelfListing>& set, bool fail) {
    last = this;
    set.add(Ref<SelfListing>(this));
    Weak<SelfListing> temporary(Ref<SelfListing>(this));
    if (fail) throw std::runtime_error("constructor failed");
  }
};

inline bool in_weak_table(const memlens::Object* o) {
  return memlens::detail::weak_registry().count(o) != 0;
}

/// A member object that makes a weak reference to itself while its owner is made.
struct Part : memlens::Object {
  explicit Part(Weak<Part>* watch) { *watch = Ref<Part>(this); }
};
struct Whole : memlens::Object {
  Part part;
  explicit Whole(Weak<Part>* watch) : part(watch) {}
};

/// A value whose copy throws when asked to.
struct Fragile {
  static inline bool fail = false;
  int value = 0;
  explicit Fragile(int v) : value(v) {}
  Fragile(const Fragile& other) : value(other.value) {
    if (fail) throw std::runtime_error("copy failed");
  }
  Fragile(Fragile&&) noexcept = default;
  Fragile& operator=(const Fragile& other) {
    if (fail) throw std::runtime_error("copy failed");
    value = other.value;
    return *this;
  }
  Fragile& operator=(Fragile&&) noexcept = default;
};

}  // namespace test_weakref

using namespace test_weakref;

TEST_CASE("a constructor that throws after weak references to itself leaves none behind",
          "[weakref]") {
  memlens::WeakSet<SelfListing> set;
  CHECK_THROWS_AS(make<SelfListing>(set, true), std::runtime_error);
  CHECK(set.size() == 0);
  CHECK(set.begin() == set.end());
  CHECK_FALSE(in_weak_table(SelfListing::last));
  // The next object (at the same address, when the pool hands the block out again) has weak
  // references of its own, cleared when it dies: a dead handle never locks onto a newer object.
  auto next = make<SelfListing>(set, false);
  CHECK(set.size() == 1);
  Weak<SelfListing> watch = next;
  next.reset();
  CHECK(watch.expired());
  CHECK(set.size() == 0);
  auto newer = make<SelfListing>(set, false);
  CHECK_FALSE(watch.lock());
  CHECK(set.size() == 1);
}

TEST_CASE("weak references to an object that is part of another die with it", "[weakref]") {
  Weak<Part> watch;
  auto whole = make<Whole>(&watch);
  CHECK(watch.lock().get() == &whole->part);
  whole.reset();
  CHECK(watch.expired());
  CHECK_FALSE(watch.lock());
}

TEST_CASE("WeakKeyDictionary::insert_or_assign changes nothing when the value throws",
          "[weakref][WeakKeyDictionary]") {
  memlens::WeakKeyDictionary<Item, Fragile> dict;
  auto key = make<Item>("k");
  const Fragile one(1), two(2);
  Fragile::fail = true;
  CHECK_THROWS_AS(dict.insert_or_assign(key, one), std::runtime_error);
  CHECK(dict.size() == 0);
  CHECK_FALSE(dict.contains(key));
  CHECK(dict.begin() == dict.end());
  Fragile::fail = false;
  dict.insert_or_assign(key, one);
  Fragile::fail = true;
  CHECK_THROWS_AS(dict.insert_or_assign(key, two), std::runtime_error);
  Fragile::fail = false;
  REQUIRE(dict.find_value(key));
  CHECK(dict.find_value(key)->value == 1);
  CHECK(dict.size() == 1);
  key.reset();
  CHECK(dict.size() == 0);
}

TEST_CASE("a weak reference does not keep its object alive", "[weakref]") {
  auto obj = make<Item>("a");
  Weak<Item> w = obj;
  CHECK(memlens::sys::getrefcount(obj) == 1);
  CHECK(memlens::is(w(), obj));
  CHECK(memlens::is(w.lock(), obj));
  CHECK_FALSE(w.expired());
  obj.reset();
  CHECK(w.expired());
  CHECK_FALSE(w());
  CHECK_FALSE(w.lock());
  Weak<Item> empty;
  CHECK(empty.expired());
  CHECK_FALSE(empty.lock());
}

TEST_CASE("weakref::ref is Weak and Weak<Derived> converts to Weak<Object>", "[weakref]") {
  auto obj = make<Item>();
  memlens::weakref::ref<Item> r = obj;
  Weak<memlens::Object> base = r;
  Weak<memlens::Object> from_ref = Ref<memlens::Object>(obj);
  CHECK(memlens::is(base.lock(), obj));
  CHECK(memlens::is(from_ref.lock(), obj));
  CHECK(memlens::weakref::getweakrefcount(obj) == 3);
}

TEST_CASE("getweakrefcount counts live handles and getweakrefs returns one per reference",
          "[weakref]") {
  auto obj = make<Item>();
  CHECK(memlens::weakref::getweakrefcount(obj) == 0);
  Weak<Item> a = obj;
  {
    Weak<Item> b = obj;
    Weak<Item> c = b;
    CHECK(memlens::weakref::getweakrefcount(obj) == 3);
    auto refs = memlens::weakref::getweakrefs(obj);
    REQUIRE(refs.size() == 3);
    for (auto& r : refs) CHECK(memlens::is(r.lock(), obj));
  }
  CHECK(memlens::weakref::getweakrefcount(obj) == 1);
  Weak<Item> moved = std::move(a);
  CHECK(memlens::weakref::getweakrefcount(obj) == 1);
  CHECK(a.expired());  // NOLINT(bugprone-use-after-move)
  CHECK_FALSE(moved.expired());
  moved.reset();
  CHECK(memlens::weakref::getweakrefcount(obj) == 0);
  CHECK(memlens::weakref::getweakrefcount(Ref<Item>()) == 0);
}

TEST_CASE("callbacks run once newest first and see every weak reference null", "[weakref]") {
  std::vector<std::string> log;
  auto obj = make<Item>();
  Weak<Item> plain = obj;
  Weak<Item> first(obj, [&] { log.push_back(plain.expired() ? "first: null" : "first: alive"); });
  Weak<Item> second(obj, [&](Weak<Item>& self) {
    log.push_back(self.lock() ? "second: alive" : "second: null");
  });
  CHECK(first.has_callback());
  obj.reset();
  CHECK(log == std::vector<std::string>{"second: null", "first: null"});
  CHECK_FALSE(first.has_callback());
}

TEST_CASE("a callback runs only if its handle is still alive", "[weakref]") {
  int calls = 0;
  auto obj = make<Item>();
  {
    Weak<Item> gone(obj, [&] { ++calls; });
  }
  // A handle destroyed by an earlier callback loses its turn.
  auto victim = std::make_unique<Weak<Item>>(obj, [&] { calls += 100; });
  Weak<Item> killer(obj, [&] { victim.reset(); });
  // A handle whose callback destroys the handle itself.
  std::unique_ptr<Weak<Item>> self_destroying;
  self_destroying = std::make_unique<Weak<Item>>(obj, [&] {
    self_destroying.reset();
    ++calls;
  });
  obj.reset();
  CHECK(calls == 1);
  CHECK_FALSE(self_destroying);
}

TEST_CASE("a copy carries no callback and a move carries it", "[weakref]") {
  int calls = 0;
  auto obj = make<Item>();
  Weak<Item> original(obj, [&] { ++calls; });
  Weak<Item> copy = original;
  CHECK_FALSE(copy.has_callback());
  Weak<Item> moved = std::move(original);
  CHECK(moved.has_callback());
  obj.reset();
  CHECK(calls == 1);
  CHECK_THROWS_AS(Weak<Item>(Ref<Item>(), [] {}), memlens::ValueError);
}

TEST_CASE("on a count reaching zero: finalize sees the object then callbacks see null",
          "[weakref]") {
  std::vector<std::string> log;
  auto obj = make<Logged>(&log);
  Weak<Logged> watcher = obj;
  obj->watcher = &watcher;
  Weak<Logged> with_callback(obj, [&] {
    log.push_back(watcher.lock() ? "callback: weakref sees object" : "callback: weakref is null");
  });
  obj.reset();
  CHECK(log == std::vector<std::string>{"finalize: weakref sees object",
                                        "callback: weakref is null", "destructor"});
}

TEST_CASE("a callback that throws is reported and the others still run", "[weakref]") {
  HookGuard hook;
  int calls = 0;
  auto obj = make<Item>("x");
  Weak<Item> a(obj, [&] { ++calls; });
  Weak<Item> b(obj, [] { throw std::runtime_error("boom"); });
  Weak<Item> c(obj, [&] { ++calls; });
  obj.reset();
  CHECK(calls == 2);
  REQUIRE(hook.reports.size() == 1);
  CHECK(hook.reports[0] == "Exception ignored in weakref callback for: boom");
}

TEST_CASE("the default unraisable hook prints to stderr and goes on", "[weakref]") {
  auto obj = make<Item>();
  int calls = 0;
  Weak<Item> a(obj, [&] { ++calls; });
  Weak<Item> b(obj, [] { throw std::logic_error("printed to stderr by design"); });
  obj.reset();
  CHECK(calls == 1);
}

TEST_CASE("WeakValueDictionary forgets values that die", "[weakref][WeakValueDictionary]") {
  memlens::WeakValueDictionary<std::string, Item> d;
  auto a = make<Item>("a");
  auto b = make<Item>("b");
  d.insert_or_assign("a", a);
  d.insert_or_assign("b", b);
  CHECK(d.size() == 2);
  CHECK(memlens::sys::getrefcount(a) == 1);
  CHECK(memlens::is(d.get("a"), a));
  CHECK(d.contains("b"));
  CHECK_FALSE(d.get("zzz"));
  b.reset();
  CHECK(d.size() == 1);
  CHECK_FALSE(d.contains("b"));
  CHECK_FALSE(d.get("b"));

  std::vector<std::string> seen;
  for (auto [key, value] : d) {
    REQUIRE(value);
    seen.push_back(key + "=" + value->name);
  }
  CHECK(seen == std::vector<std::string>{"a=a"});

  auto b2 = make<Item>("b2");
  d.insert_or_assign("b", b2);  // revives the dead entry
  CHECK(d.size() == 2);
  d.insert_or_assign("a", b2);  // replaces a live one
  CHECK(d.size() == 2);
  CHECK(memlens::is(d.get("a"), b2));
  CHECK(d.erase("a"));
  CHECK_FALSE(d.erase("a"));
  CHECK(d.size() == 1);
  CHECK_THROWS_AS(d.insert_or_assign("null", Ref<Item>()), memlens::ValueError);

  auto moved = std::move(d);  // callbacks follow the state, not the object
  b2.reset();
  CHECK(moved.size() == 0);
  CHECK(moved.empty());
}

TEST_CASE("WeakValueDictionary purges dead entries as it grows", "[weakref][WeakValueDictionary]") {
  memlens::WeakValueDictionary<int, Item> d;
  auto keep = make<Item>("keep");
  d.insert_or_assign(-1, keep);
  for (int i = 0; i < 1000; ++i) d.insert_or_assign(i, make<Item>());  // each dies at once
  CHECK(d.size() == 1);
  std::size_t visited = 0;
  for (auto entry : d) {
    CHECK(entry.first == -1);
    ++visited;
  }
  CHECK(visited == 1);
}

TEST_CASE("WeakKeyDictionary drops the entry and its value when the key dies",
          "[weakref][WeakKeyDictionary]") {
  memlens::WeakKeyDictionary<Item, Ref<Item>> d;
  auto key = make<Item>("key");
  auto value = make<Item>("value");
  Weak<Item> value_watch = value;
  d.insert_or_assign(key, std::move(value));
  CHECK(d.size() == 1);
  CHECK(d.contains(key));
  REQUIRE(d.get(key));
  CHECK((*d.get(key))->name == "value");
  CHECK(memlens::sys::getrefcount(key) == 1);

  auto other = make<Item>("other");  // equal-looking keys are distinct: keys are by identity
  CHECK_FALSE(d.contains(other));
  d.insert_or_assign(other, make<Item>("other value"));
  CHECK(d.size() == 2);
  std::vector<std::string> pairs;
  for (auto [k, v] : d) pairs.push_back(k->name + " -> " + v->name);
  std::sort(pairs.begin(), pairs.end());
  CHECK(pairs == std::vector<std::string>{"key -> value", "other -> other value"});

  key.reset();
  CHECK(value_watch.expired());  // the value went with its key
  CHECK(d.size() == 1);
  CHECK(d.erase(other));
  CHECK(d.empty());
  CHECK_THROWS_AS(d.insert_or_assign(Ref<Item>(), Ref<Item>()), memlens::ValueError);
}

TEST_CASE("WeakSet holds members weakly", "[weakref][WeakSet]") {
  memlens::WeakSet<Item> set;
  auto a = make<Item>("a");
  auto b = make<Item>("b");
  set.add(a);
  set.add(a);
  set.add(b);
  CHECK(set.size() == 2);
  CHECK(set.contains(a));
  b.reset();
  CHECK(set.size() == 1);
  std::vector<Ref<Item>> members(set.begin(), set.end());
  REQUIRE(members.size() == 1);
  CHECK(memlens::is(members[0], a));
  set.discard(a);
  CHECK_FALSE(set.contains(a));
  CHECK(set.empty());
}

TEST_CASE("WeakMethod calls the method while its object lives", "[weakref][WeakMethod]") {
  auto item = make<Item>("ann");
  memlens::WeakMethod greet(item, &Item::greet);
  memlens::WeakMethod touch(item, &Item::touch);
  CHECK(greet(std::string("bob")) == std::optional<std::string>("ann greets bob"));
  CHECK(touch());
  CHECK(item->touched == 1);
  CHECK(greet.alive());
  CHECK(memlens::sys::getrefcount(item) == 1);
  item.reset();
  CHECK_FALSE(greet.alive());
  CHECK_FALSE(greet(std::string("bob")).has_value());
  CHECK_FALSE(touch());
  CHECK_FALSE(touch.object());
}

TEST_CASE("finalize runs once at death even when its handle is gone", "[weakref][finalize]") {
  std::vector<std::string> log;
  auto obj = make<Item>("x");
  {
    memlens::finalize f(obj, [&] { log.push_back("dropped handle"); });
  }
  memlens::finalize kept(obj, [&] { log.push_back("kept handle"); });
  CHECK(kept.alive());
  CHECK(memlens::is(kept.peek(), obj));
  obj.reset();
  CHECK(log == std::vector<std::string>{"kept handle", "dropped handle"});
  CHECK_FALSE(kept.alive());
  CHECK_FALSE(kept());  // already ran
  CHECK_FALSE(kept.detach());
}

TEST_CASE("finalize can run early or be detached", "[weakref][finalize]") {
  int calls = 0;
  auto obj = make<Item>();
  memlens::finalize early(obj, [&] { ++calls; });
  CHECK(early());
  CHECK(calls == 1);
  CHECK_FALSE(early.alive());
  CHECK_FALSE(early());

  memlens::finalize cancelled(obj, [&] { calls += 10; });
  auto detached = cancelled.detach();
  REQUIRE(detached);
  CHECK(memlens::is(detached->object, obj));
  CHECK_FALSE(cancelled.alive());
  obj.reset();
  CHECK(calls == 1);
  detached->function();
  CHECK(calls == 11);
  CHECK_THROWS_AS(memlens::finalize(Ref<Item>(), [] {}), memlens::ValueError);
}

TEST_CASE("moved-from weak containers are empty and usable", "[weakref]") {
  auto a = make<Item>("a");
  memlens::WeakValueDictionary<int, Item> values;
  values.insert_or_assign(1, a);
  auto values2 = std::move(values);
  CHECK(values.size() == 0);  // NOLINT(bugprone-use-after-move): documented as usable
  CHECK_FALSE(values.get(1));
  CHECK(values.begin() == values.end());
  values.insert_or_assign(2, a);
  CHECK(values.size() == 1);
  CHECK(values2.size() == 1);

  memlens::WeakKeyDictionary<Item, int> keys;
  keys.insert_or_assign(a, 1);
  auto keys2 = std::move(keys);
  CHECK(keys.empty());  // NOLINT(bugprone-use-after-move)
  CHECK_FALSE(keys.contains(a));
  CHECK_FALSE(keys.erase(a));
  CHECK(keys.begin() == keys.end());
  CHECK(keys2.get(a) == 1);

  memlens::WeakSet<Item> set;
  set.add(a);
  auto set2 = std::move(set);
  CHECK(set.size() == 0);  // NOLINT(bugprone-use-after-move)
  set.add(a);
  CHECK(set.contains(a));
  CHECK(set2.contains(a));
}

TEST_CASE("a WeakKeyDictionary value whose destructor clears the dictionary", "[weakref]") {
  struct Clearer {
    memlens::WeakKeyDictionary<Item, Clearer>* owner = nullptr;
    Clearer() = default;
    Clearer(const Clearer&) = default;
    Clearer(Clearer&& other) noexcept : owner(std::exchange(other.owner, nullptr)) {}
    Clearer& operator=(const Clearer&) = default;
    Clearer& operator=(Clearer&&) noexcept = default;
    ~Clearer() {
      if (owner) owner->clear();
    }
  };
  memlens::WeakKeyDictionary<Item, Clearer> d;
  auto key = make<Item>();
  Clearer c;
  c.owner = &d;
  d.insert_or_assign(key, std::move(c));
  key.reset();  // the value dies and clears `d` from inside the key's callback: no use after free
  CHECK(d.empty());
}

TEST_CASE("the weak containers change nothing when making the weak reference runs out of memory",
          "[weakref]") {
  if (!test_child::can_starve_malloc) {
    WARN("sanitizer build: malloc cannot be starved here");
    return;
  }
  // Exit codes: 0 the insertion threw bad_alloc and left the container as it was, 1 it did not
  // throw, 2 it changed the container, 3 malloc could not be starved.
  const auto values = test_child::run_in_child([] {
    memlens::WeakValueDictionary<int, Item> dict;
    auto kept = make<Item>("kept");
    auto added = make<Item>("added");
    dict.insert_or_assign(0, kept);
    // A spare block for a table node; none for the callback a weak reference allocates.
    if (!test_child::starve_malloc({56, 64, 72})) _exit(3);
    try {
      dict.insert_or_assign(1, added);
      _exit(1);
    } catch (const std::bad_alloc&) {
    }
    _exit(dict.size() == 1 && !dict.contains(1) && dict.get(0) == kept ? 0 : 2);
  });
  CHECK(values.exited_with(0));
  const auto keys = test_child::run_in_child([] {
    memlens::WeakKeyDictionary<Item, int> dict;
    auto kept = make<Item>("kept");
    auto added = make<Item>("added");
    dict.insert_or_assign(kept, 1);
    if (!test_child::starve_malloc({56, 64, 72})) _exit(3);
    try {
      dict.insert_or_assign(added, 2);
      _exit(1);
    } catch (const std::bad_alloc&) {
    }
    _exit(dict.size() == 1 && !dict.contains(added) && dict.contains(kept) ? 0 : 2);
  });
  CHECK(keys.exited_with(0));
}
