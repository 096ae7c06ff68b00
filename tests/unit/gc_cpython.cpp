// CPython 3.11's own collector scenarios, ported to memlens: test_gc.py's resurrection tests and
// test_bug21435, and test_finalization.py's self-cycle and cycle-chain finalization tests.
//
// Every figure asserted here is what CPython 3.11 gives for the same scenario;
// tests/data/gc_cpython_scenarios.py runs them in CPython and prints each line this file
// compares against (`python3 tests/data/gc_cpython_scenarios.py`).
//
// The mapping: a Python class is an Object type, `self.x = y` a Ref member listed in
// `traverse`, `__del__` a `finalize()` override (both run at most once, PEP 442),
// `weakref.ref(x)` a memlens::Weak without a callback, `id(self)` the object's address.
// CPython's figures count objects only: in 3.11 an instance whose `__dict__` is never read has
// no dict object (its attributes live inline), so these scenarios make none, and memlens has
// none to count. No weak reference here has a callback, so no weakref object is counted either.
//
// What CPython 3.9+ counts as collected is its `final_unreachable`: what is still unreachable
// after finalizers and weakref callbacks ran. Objects a finalizer resurrects, and objects that
// reference counting frees because a finalizer dropped a reference, are not counted.
#include <memlens/gc.hpp>

#include <memlens/weakref.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "gc_test.hpp"
#include "memlens_test.hpp"

namespace test_gc_cpython {

using memlens::make;
using memlens::Ref;
using memlens::Weak;
namespace gc = memlens::gc;

using test_gc_support::GcGuard;

/// A full collection and how it moved the oldest generation's statistics, in the words of the
/// script's `collect_with_stats`.
inline std::string collect_with_stats() {
  const auto before = gc::get_stats()[2];
  const std::size_t found = gc::collect();
  const auto after = gc::get_stats()[2];
  return "collect=" + std::to_string(found) +
         " collected+=" + std::to_string(after.collected - before.collected) +
         " uncollectable+=" + std::to_string(after.uncollectable - before.uncollectable);
}

// ---------------------------------------------------------------------------------------------
// test_gc.py

/// test_resurrection_does_not_block_cleanup_of_other_objects' `A`: a self-loop.
struct Loop : memlens::Object {
  static inline int alive = 0;
  Ref<Loop> me;
  Loop() { ++alive; }
  ~Loop() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(me); }
};

/// Its `Z`: a self-loop whose finalizer saves it in a list.
struct LoopLazarus final : Loop {
  static inline std::vector<Ref<Loop>> saved;
  void finalize() override { saved.emplace_back(this); }
};

/// `A()` or `Z()` as a statement: made, looped and dropped.
template <class T>
void spawn_loop() {
  auto loop = make<T>();
  loop->me = loop;
}

/// test_bug21435's `A`: an object with one attribute.
struct Attr final : memlens::Object {
  Ref<memlens::Object> attr;
  void traverse(memlens::Visitor& visit) override { visit(attr); }
};

/// Its `B`: holds `x`, and its finalizer drops `attr`, half of its cycle.
struct Dropper final : memlens::Object {
  static inline int finalized = 0;
  Ref<memlens::Object> x;
  Ref<memlens::Object> attr;
  void traverse(memlens::Visitor& visit) override { visit(x, attr); }
  void finalize() override {
    ++finalized;
    attr = nullptr;
  }
};

/// test_resurrection_is_transitive's `Cargo`: a self-loop that also points at a Lazarus.
struct Cargo final : memlens::Object {
  Ref<memlens::Object> me;
  Ref<memlens::Object> laz;
  void traverse(memlens::Visitor& visit) override { visit(me, laz); }
};

/// Its `Lazarus`: the finalizer saves the object, and the cargo with it.
struct Lazarus final : memlens::Object {
  static inline int finalized = 0;
  static inline std::vector<Ref<Lazarus>> saved;
  Ref<Cargo> cargo;
  void traverse(memlens::Visitor& visit) override { visit(cargo); }
  void finalize() override {
    ++finalized;
    saved.emplace_back(this);
  }
};

// ---------------------------------------------------------------------------------------------
// test_finalization.py: objects that record their finalization, check that their state is
// intact while it runs, and then do nothing, resurrect themselves, or cut their references.

struct Base : memlens::Object {
  static inline std::vector<const void*> finalized;  // ids, in finalization order
  static inline std::vector<Ref<Base>> survivors;    // what the resurrecting finalizers saved
  static inline int errors = 0;                      // failed sanity checks
  static inline bool quiet = false;                  // set while cleaning up

  const void* id_ = this;  // SimpleBase's `self.id_ = id(self)`

  virtual bool sane() const { return id_ == this; }
  virtual void side_effect() {}
  void finalize() override {
    if (quiet) return;
    finalized.push_back(this);
    if (!sane()) ++errors;
    side_effect();
  }
};

/// A resurrecting finalizer's side effect (SimpleResurrector).
inline void resurrect(Base* self) { Base::survivors.emplace_back(self); }

/// SelfCycleBase: `self.ref = self`.
struct SelfLoop : Base {
  Ref<SelfLoop> ref;
  void traverse(memlens::Visitor& visit) override { visit(ref); }
  bool sane() const override { return Base::sane() && ref.get() == this; }
};
struct SelfLoopResurrector final : SelfLoop {
  void side_effect() override { resurrect(this); }
};
struct SelfLoopSuicide final : SelfLoop {
  void side_effect() override { ref = nullptr; }
};

/// ChainedBase: a node of a doubly linked ring; a node that cut its links says so.
struct Link : Base {
  Ref<Link> left;
  Ref<Link> right;
  bool cut = false;
  void traverse(memlens::Visitor& visit) override { visit(left, right); }
  bool sane() const override {
    if (!Base::sane()) return false;
    if (cut) return !left && !right;
    if (!left || !right) return false;
    const bool left_ok = left->cut ? !left->right : left->right.get() == this;
    const bool right_ok = right->cut ? !right->left : right->left.get() == this;
    return left_ok && right_ok;
  }
};
struct LinkResurrector final : Link {
  void side_effect() override { resurrect(this); }
};
struct LinkSuicide final : Link {
  void side_effect() override {
    cut = true;
    left = nullptr;
    right = nullptr;
  }
};

/// build_chain: node i's left is node i-1 (the first's is the last), and that one's right is i.
template <class... Kinds>
std::vector<Ref<Base>> ring() {
  std::vector<Ref<Link>> links{make<Kinds>()...};
  const std::size_t n = links.size();
  for (std::size_t i = 0; i < n; ++i) {
    links[i]->left = links[(i + n - 1) % n];
    links[(i + n - 1) % n]->right = links[i];
  }
  return {links.begin(), links.end()};
}

/// Two collections around one scenario, as check_resurrecting_chain and the self-cycle tests
/// do: the first with the objects just dropped, the second after the survivors list was
/// cleared. Returns the two lines the script prints.
inline std::vector<std::string> run_finalization(
    const std::function<std::vector<Ref<Base>>()>& build) {
  Base::quiet = false;
  Base::finalized.clear();
  Base::survivors.clear();
  Base::errors = 0;
  gc::collect();
  std::vector<const void*> ids;
  std::vector<Weak<Base>> refs;
  {
    auto objects = build();
    for (const auto& o : objects) {
      ids.push_back(o.get());
      refs.emplace_back(o);
    }
  }
  const auto state = [&](const std::string& label, std::size_t found) {
    std::string alive;
    for (const auto& r : refs) alive += r.expired() ? '0' : '1';
    return label + ": collect=" + std::to_string(found) +
           " finalized=" + std::to_string(Base::finalized.size()) + "/" +
           std::to_string(ids.size()) + " survivors=" + std::to_string(Base::survivors.size()) +
           " weakrefs_alive=" + alive + " errors=" + std::to_string(Base::errors);
  };
  std::vector<std::string> lines;
  lines.push_back(state("first", gc::collect()));
  auto finalized = Base::finalized;
  std::sort(finalized.begin(), finalized.end());
  auto sorted_ids = ids;
  std::sort(sorted_ids.begin(), sorted_ids.end());
  CHECK(finalized == sorted_ids);  // each object finalized once
  Base::survivors.clear();
  lines.push_back(state("survivors cleared, second", gc::collect()));
  CHECK(Base::finalized.size() == ids.size());  // never twice
  Base::quiet = true;
  gc::collect();
  return lines;
}

}  // namespace test_gc_cpython

using namespace test_gc_cpython;

// ---------------------------------------------------------------------------------------------
// test_gc.py

TEST_CASE("CPython test_gc: test_resurrection_does_not_block_cleanup_of_other_objects",
          "[gc][cpython]") {
  // CPython before 3.9 counted resurrected objects as collected, in collect()'s result and in
  // get_stats(); it now counts only what it frees. The script's lines:
  //   100 Loop: collect=100 collected+=100 uncollectable+=0
  //   1 Lazarus: collect=0 collected+=0 uncollectable+=0
  //   100 Loop + 1 Lazarus: collect=100 collected+=100 uncollectable+=0
  //   saved list cleared: collect=2 collected+=2 uncollectable+=0
  GcGuard guard;
  LoopLazarus::saved.clear();
  const int alive_before = Loop::alive;
  for (int i = 0; i < 100; ++i) spawn_loop<Loop>();
  CHECK(collect_with_stats() == "collect=100 collected+=100 uncollectable+=0");
  CHECK(Loop::alive == alive_before);

  spawn_loop<LoopLazarus>();
  CHECK(collect_with_stats() == "collect=0 collected+=0 uncollectable+=0");  // merely resurrected
  CHECK(LoopLazarus::saved.size() == 1);
  CHECK(Loop::alive == alive_before + 1);

  for (int i = 0; i < 100; ++i) spawn_loop<Loop>();
  spawn_loop<LoopLazarus>();
  CHECK(collect_with_stats() == "collect=100 collected+=100 uncollectable+=0");
  CHECK(LoopLazarus::saved.size() == 2);
  CHECK(Loop::alive == alive_before + 2);

  LoopLazarus::saved.clear();  // the two resurrected loops, finalized already
  CHECK(collect_with_stats() == "collect=2 collected+=2 uncollectable+=0");
  CHECK(Loop::alive == alive_before);
}

TEST_CASE("CPython test_gc: test_bug21435 (a finalizer drops half of its cycle)", "[gc][cpython]") {
  // The finalizer's `attr = None` frees the other half by reference counting, which frees the
  // finalized object and its `x`: nothing is left for the collector to free or count.
  // The script's line: collect=0 finalized=1 alive=0
  GcGuard guard;
  Dropper::finalized = 0;
  std::vector<Weak<memlens::Object>> alive;
  {
    auto a = make<Attr>();
    auto b = make<Dropper>();
    b->x = make<Attr>();
    a->attr = b;
    b->attr = a;
    alive = {a, b, b->x};
  }
  const std::size_t found = gc::collect();
  const auto live = std::count_if(alive.begin(), alive.end(), [](auto& w) { return !w.expired(); });
  CHECK("collect=" + std::to_string(found) + " finalized=" + std::to_string(Dropper::finalized) +
            " alive=" + std::to_string(live) ==
        "collect=0 finalized=1 alive=0");
}

TEST_CASE("CPython test_gc: test_resurrection_is_transitive", "[gc][cpython]") {
  // The script's lines:
  //   first collect=0 finalized=1 saved=1
  //   cargo kept: True
  //   collect while held=0
  //   after release: collect=2 finalized=1 saved=0   (beyond CPython's test: the pair is
  //                                                    freed, and not finalized again)
  GcGuard guard;
  Lazarus::finalized = 0;
  Lazarus::saved.clear();
  const void* cargo_id = nullptr;
  {
    auto laz = make<Lazarus>();
    auto cargo = make<Cargo>();
    cargo->me = cargo;
    cargo_id = cargo.get();
    laz->cargo = cargo;
    cargo->laz = laz;
  }
  // (Each collect() is a statement of its own: the operands of + are not sequenced.)
  const std::size_t first = gc::collect();
  CHECK("first collect=" + std::to_string(first) +
            " finalized=" + std::to_string(Lazarus::finalized) +
            " saved=" + std::to_string(Lazarus::saved.size()) ==
        "first collect=0 finalized=1 saved=1");
  REQUIRE(Lazarus::saved.size() == 1);
  auto instance = std::move(Lazarus::saved.back());
  Lazarus::saved.pop_back();
  REQUIRE(instance->cargo);
  CHECK(instance->cargo.get() == cargo_id);
  CHECK(instance->cargo->laz.get() == instance.get());
  CHECK(gc::collect() == 0);  // collect while held
  instance = nullptr;
  const std::size_t last = gc::collect();
  CHECK("after release: collect=" + std::to_string(last) +
            " finalized=" + std::to_string(Lazarus::finalized) +
            " saved=" + std::to_string(Lazarus::saved.size()) ==
        "after release: collect=2 finalized=1 saved=0");
}

// ---------------------------------------------------------------------------------------------
// test_finalization.py, SelfCycleFinalizationTest

TEST_CASE("CPython test_finalization: SelfCycleFinalizationTest.test_simple",
          "[gc][cpython][finalize]") {
  GcGuard guard;
  const auto lines = run_finalization([] {
    auto s = make<SelfLoop>();
    s->ref = s;
    return std::vector<Ref<Base>>{s};
  });
  CHECK(lines == std::vector<std::string>{
                     "first: collect=1 finalized=1/1 survivors=0 weakrefs_alive=0 errors=0",
                     "survivors cleared, second: collect=0 finalized=1/1 survivors=0 "
                     "weakrefs_alive=0 errors=0"});
}

TEST_CASE("CPython test_finalization: SelfCycleFinalizationTest.test_simple_resurrect",
          "[gc][cpython][finalize]") {
  // The weak reference reads None although the object lives on: weak references to garbage
  // are cleared before finalizers run (CPython's "XXX is this desirable?").
  GcGuard guard;
  const auto lines = run_finalization([] {
    auto s = make<SelfLoopResurrector>();
    s->ref = s;
    return std::vector<Ref<Base>>{s};
  });
  CHECK(lines == std::vector<std::string>{
                     "first: collect=0 finalized=1/1 survivors=1 weakrefs_alive=0 errors=0",
                     "survivors cleared, second: collect=1 finalized=1/1 survivors=0 "
                     "weakrefs_alive=0 errors=0"});
}

TEST_CASE("CPython test_finalization: SelfCycleFinalizationTest.test_simple_suicide",
          "[gc][cpython][finalize]") {
  // The finalizer breaks the self-loop: reference counting frees the object, the collector has
  // nothing left to count.
  GcGuard guard;
  const auto lines = run_finalization([] {
    auto s = make<SelfLoopSuicide>();
    s->ref = s;
    return std::vector<Ref<Base>>{s};
  });
  CHECK(lines == std::vector<std::string>{
                     "first: collect=0 finalized=1/1 survivors=0 weakrefs_alive=0 errors=0",
                     "survivors cleared, second: collect=0 finalized=1/1 survivors=0 "
                     "weakrefs_alive=0 errors=0"});
}

// ---------------------------------------------------------------------------------------------
// test_finalization.py, CycleChainFinalizationTest: doubly linked rings of plain (Link),
// resurrecting (LinkResurrector) and suicidal (LinkSuicide) nodes.

namespace test_gc_cpython {
inline std::vector<std::string> expected(const std::string& first, const std::string& second) {
  return {"first: " + first, "survivors cleared, second: " + second};
}
}  // namespace test_gc_cpython

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_homogenous",
          "[gc][cpython][finalize]") {
  GcGuard guard;
  CHECK(run_finalization(ring<Link, Link, Link>) ==
        expected("collect=3 finalized=3/3 survivors=0 weakrefs_alive=000 errors=0",
                 "collect=0 finalized=3/3 survivors=0 weakrefs_alive=000 errors=0"));
}

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_homogenous_resurrect",
          "[gc][cpython][finalize]") {
  GcGuard guard;
  CHECK(run_finalization(ring<LinkResurrector, LinkResurrector, LinkResurrector>) ==
        expected("collect=0 finalized=3/3 survivors=3 weakrefs_alive=000 errors=0",
                 "collect=3 finalized=3/3 survivors=0 weakrefs_alive=000 errors=0"));
}

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_homogenous_suicidal",
          "[gc][cpython][finalize]") {
  // Each finalizer cuts both links; reference counting frees the whole ring during the
  // finalizers, so nothing is counted.
  GcGuard guard;
  CHECK(run_finalization(ring<LinkSuicide, LinkSuicide, LinkSuicide>) ==
        expected("collect=0 finalized=3/3 survivors=0 weakrefs_alive=000 errors=0",
                 "collect=0 finalized=3/3 survivors=0 weakrefs_alive=000 errors=0"));
}

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_heterogenous_suicidal_one",
          "[gc][cpython][finalize]") {
  // Suicide, plain, suicide, plain: with every other node's links cut no cycle is left.
  GcGuard guard;
  CHECK(run_finalization(ring<LinkSuicide, Link, LinkSuicide, Link>) ==
        expected("collect=0 finalized=4/4 survivors=0 weakrefs_alive=0000 errors=0",
                 "collect=0 finalized=4/4 survivors=0 weakrefs_alive=0000 errors=0"));
}

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_heterogenous_suicidal_two",
          "[gc][cpython][finalize]") {
  // Suicide, suicide, plain, plain: the two plain nodes still form a cycle, and each suicidal
  // node is still held by one of them, so all four are counted.
  GcGuard guard;
  CHECK(run_finalization(ring<LinkSuicide, LinkSuicide, Link, Link>) ==
        expected("collect=4 finalized=4/4 survivors=0 weakrefs_alive=0000 errors=0",
                 "collect=0 finalized=4/4 survivors=0 weakrefs_alive=0000 errors=0"));
}

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_heterogenous_resurrect_one",
          "[gc][cpython][finalize]") {
  GcGuard guard;
  CHECK(run_finalization(ring<LinkResurrector, Link, LinkResurrector, Link>) ==
        expected("collect=0 finalized=4/4 survivors=2 weakrefs_alive=0000 errors=0",
                 "collect=4 finalized=4/4 survivors=0 weakrefs_alive=0000 errors=0"));
}

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_heterogenous_resurrect_two",
          "[gc][cpython][finalize]") {
  GcGuard guard;
  CHECK(run_finalization(
            ring<LinkResurrector, Link, LinkSuicide, LinkResurrector, Link, LinkSuicide>) ==
        expected("collect=0 finalized=6/6 survivors=2 weakrefs_alive=000000 errors=0",
                 "collect=6 finalized=6/6 survivors=0 weakrefs_alive=000000 errors=0"));
}

TEST_CASE("CPython test_finalization: CycleChainFinalizationTest.test_heterogenous_resurrect_three",
          "[gc][cpython][finalize]") {
  GcGuard guard;
  CHECK(run_finalization(
            ring<LinkResurrector, LinkResurrector, Link, Link, LinkSuicide, LinkSuicide>) ==
        expected("collect=0 finalized=6/6 survivors=2 weakrefs_alive=000000 errors=0",
                 "collect=6 finalized=6/6 survivors=0 weakrefs_alive=000000 errors=0"));
}
