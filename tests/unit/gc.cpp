// Tests of memlens/gc.hpp: the cycle collector, with CPython 3.11 + PEP 442 semantics.
#include <memlens/gc.hpp>

#include <memlens/sys.hpp>
#include <memlens/weakref.hpp>

#include <memlens/tools/circular_reference_detector.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <new>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gc_test.hpp"
#include "memlens_test.hpp"

namespace test_gc {

using memlens::make;
using memlens::Ref;
using memlens::Weak;
namespace gc = memlens::gc;

struct Node : memlens::Object {
  static inline int alive = 0;
  Ref<Node> next;
  Ref<Node> other;
  int payload = 0;
  Node() { ++alive; }
  ~Node() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(next, other); }
};

struct Leaf : memlens::Object {};

/// Runs each test with automatic collection off and an empty young heap, and restores the
/// collector's settings afterwards.
struct Quiet {
  std::tuple<std::size_t, std::size_t, std::size_t> thresholds = gc::get_threshold();
  Quiet() {
    gc::disable();
    gc::collect();
  }
  ~Quiet() {
    gc::set_debug(0);
    gc::garbage().clear();
    gc::callbacks().clear();
    gc::unfreeze();
    gc::set_threshold(std::get<0>(thresholds), std::get<1>(thresholds), std::get<2>(thresholds));
    gc::collect();
    gc::enable();
  }
};

inline bool contains(const std::vector<Ref<memlens::Object>>& objects, const memlens::Object* o) {
  for (const auto& r : objects)
    if (r.object() == o) return true;
  return false;
}

/// Makes a ring of n nodes and returns its first node.
inline Ref<Node> ring(int n) {
  auto first = make<Node>();
  Node* last = first.get();
  for (int i = 1; i < n; ++i) {
    last->next = make<Node>();
    last = last->next.get();
  }
  last->next = first;
  return first;
}

/// Logs what a finalizer sees, to check PEP 442's "the cycle is intact".
struct Finalized : memlens::Object {
  static inline std::vector<std::string> log;
  static inline Ref<Finalized> resurrected;
  Ref<Finalized> partner;
  Weak<Finalized> weak_partner;
  std::string name;
  bool resurrect = false;
  bool fail = false;
  explicit Finalized(std::string n) : name(std::move(n)) {}
  void traverse(memlens::Visitor& visit) override { visit(partner); }
  void finalize() override {
    log.push_back(name + ": partner " + (partner ? partner->name : "null") + ", weak partner " +
                  (weak_partner.lock() ? "alive" : "null"));
    if (resurrect) resurrected = Ref<Finalized>(this);
    if (fail) throw std::runtime_error(name + " failed");
  }
};

/// Adjacency in sets and maps: the usual graph layouts whose keys are const.
struct Vertex : memlens::Object {
  static inline int alive = 0;
  std::set<Ref<Vertex>> out;
  std::unordered_set<Ref<Vertex>> hashed;
  std::map<Ref<Vertex>, int> weights;
  std::unordered_map<Ref<Vertex>, Ref<Vertex>> pairs;
  Vertex() { ++alive; }
  ~Vertex() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(out, hashed, weights, pairs); }
};

/// Reports its only reference twice: a broken traverse.
struct Twice : memlens::Object {
  Ref<Twice> next;
  void traverse(memlens::Visitor& visit) override { visit(next, next); }
};

/// Inspects its owner from a member's destructor, after the owner's `next` was released (the
/// Ref still names what it pointed at, possibly queued by the trashcan with a count of zero).
struct Inspected : memlens::Object {
  static inline int alive = 0;
  static inline std::size_t seen = 0;
  static inline int inspections = 0;
  static inline bool use_detector = false;
  struct Inspector {
    Inspected* owner;
    ~Inspector() {
      // Only where the trashcan queued `next` (its memory is still there, its count zero);
      // above that depth `next` is already freed, and nothing may look at it.
      if (memlens::detail::thread_state.dealloc_depth < memlens::detail::trashcan_depth) return;
      ++inspections;
      const Ref<Inspected> self(owner);
      if (use_detector) {
        seen += memlens::CircularReferenceDetector().find_cycles(self).size();
      } else {
        seen += gc::get_referents(self).size();
      }
    }
  };
  Inspector inspector{this};  // destroyed after `next`
  Ref<Inspected> next;
  Inspected() { ++alive; }
  ~Inspected() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(next); }
};

/// A gc callback whose copies throw when asked to.
struct CopyFails {
  static inline bool fail = false;
  CopyFails() = default;
  CopyFails(const CopyFails&) {
    if (fail) throw std::bad_alloc();
  }
  void operator()(std::string_view, const gc::CallbackInfo&) const {}
};

}  // namespace test_gc

using namespace test_gc;

TEST_CASE("gc tracks objects that can hold references and only those", "[gc]") {
  CHECK(gc::is_tracked(make<Node>()));
  CHECK_FALSE(gc::is_tracked(make<Leaf>()));
  CHECK(gc::is_tracked(make<std::vector<Ref<Node>>>()));
  CHECK_FALSE(gc::is_tracked(make<std::vector<int>>()));
  CHECK_FALSE(gc::is_tracked(memlens::integer(5)));
  CHECK_FALSE(gc::is_tracked(Ref<Node>()));
}

TEST_CASE("collect frees cycles and returns how many objects it found", "[gc]") {
  Quiet quiet;
  REQUIRE(Node::alive == 0);
  {
    auto a = make<Node>();
    auto b = make<Node>();
    a->next = b;
    b->next = a;
    auto self = make<Node>();
    self->next = self;
  }
  CHECK(Node::alive == 3);  // reference counting alone cannot free them
  CHECK(gc::collect() == 3);
  CHECK(Node::alive == 0);
  CHECK(gc::collect() == 0);
}

TEST_CASE("collect leaves reachable cycles alone", "[gc]") {
  Quiet quiet;
  auto root = make<Node>();
  {
    auto b = make<Node>();
    root->next = b;
    b->next = root;
    b->other = make<Node>();  // reachable through the cycle
  }
  CHECK(gc::collect() == 0);
  CHECK(Node::alive == 3);
  root.reset();
  CHECK(gc::collect() == 3);
  CHECK(Node::alive == 0);
}

TEST_CASE("untracked objects keep what they hold alive", "[gc]") {
  Quiet quiet;
  struct Opaque : memlens::Object {  // holds a Ref but does not report it
    Ref<Node> hidden;
  };
  auto opaque = make<Opaque>();
  {
    auto a = make<Node>();
    a->next = a;
    opaque->hidden = a;
  }
  CHECK(gc::collect() == 0);  // the reference from `opaque` looks external: conservative
  opaque.reset();
  CHECK(gc::collect() == 1);
}

TEST_CASE("objects move from generation 0 to 1 to 2 as they survive", "[gc]") {
  Quiet quiet;
  auto n = make<Node>();
  CHECK(contains(gc::get_objects(0), n.object()));
  gc::collect(0);
  CHECK(contains(gc::get_objects(1), n.object()));
  CHECK_FALSE(contains(gc::get_objects(0), n.object()));
  gc::collect(1);
  CHECK(contains(gc::get_objects(2), n.object()));
  gc::collect(2);
  CHECK(contains(gc::get_objects(2), n.object()));
  CHECK(contains(gc::get_objects(), n.object()));
  CHECK_FALSE(contains(gc::get_objects(), make<Leaf>().object()));
  CHECK_THROWS_AS(gc::get_objects(3), memlens::ValueError);
  CHECK_THROWS_AS(gc::get_objects(-1), memlens::ValueError);
  CHECK_THROWS_AS(gc::collect(3), memlens::ValueError);
}

TEST_CASE("a collection examines only its generations: older objects count as outside", "[gc]") {
  Quiet quiet;
  auto old = make<Node>();
  gc::collect(0);  // `old` is in generation 1 now
  {
    auto young = make<Node>();
    young->next = old;
    old->next = young;
  }
  old.reset();  // a garbage cycle across generations 0 and 1
  CHECK(gc::collect(0) == 0);  // the reference from generation 1 keeps `young`
  CHECK(Node::alive == 2);
  CHECK(gc::collect(1) == 2);  // both generations: the cycle is found
  CHECK(Node::alive == 0);

  // The same with a frozen object, which no collection examines.
  auto frozen = make<Node>();
  gc::freeze();
  {
    auto young = make<Node>();
    young->next = frozen;
    frozen->next = young;
  }
  frozen.reset();
  CHECK(gc::collect() == 0);
  CHECK(Node::alive == 2);
  gc::unfreeze();  // back into generation 2
  CHECK(gc::collect(1) == 0);
  CHECK(gc::collect(2) == 2);
  CHECK(Node::alive == 0);
}

namespace test_gc {
struct Hub : memlens::Object {
  static inline int alive = 0;
  std::vector<Ref<memlens::Object>> refs;
  Hub() { ++alive; }
  ~Hub() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(refs); }
};

/// Reports its reference as an Edge it builds itself, one that cannot be taken (as a const
/// member's).
struct ByHand : memlens::Object {
  static inline int alive = 0;
  Ref<memlens::Object> target;
  ByHand() { ++alive; }
  ~ByHand() override { --alive; }
  void traverse(memlens::Visitor& visit) override {
    if (target) {
      visit.visit_edge(memlens::Edge(*const_cast<memlens::Object*>(target.object()), "target",
                                     nullptr, nullptr));
    }
  }
};
struct Back : memlens::Object {
  static inline int alive = 0;
  Ref<ByHand> back;
  Back() { ++alive; }
  ~Back() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(back); }
};
}  // namespace test_gc

TEST_CASE("collect breaks cycles through objects with many references", "[gc]") {
  Quiet quiet;
  {
    auto hub = make<Hub>();
    for (int i = 0; i < 1000; ++i) {  // far more than one clearing keeps inline
      auto spoke = make<Hub>();
      spoke->refs.push_back(hub);
      hub->refs.push_back(spoke);
    }
  }
  CHECK(Hub::alive == 1001);
  CHECK(gc::collect() == 1001);
  CHECK(Hub::alive == 0);
}


TEST_CASE("a traverse may report references by calling visit_edge itself", "[gc]") {
  Quiet quiet;
  auto by_hand = make<ByHand>();
  auto back = make<Back>();
  by_hand->target = back;
  back->back = by_hand;
  by_hand.reset();
  CHECK(gc::collect() == 0);  // `back` is held from outside, and keeps `by_hand`
  CHECK(ByHand::alive == 1);
  back.reset();
  CHECK(gc::collect() == 2);  // the hand-made edge counts as internal
  CHECK(ByHand::alive == 0);
  CHECK(Back::alive == 0);
}

namespace test_gc {
struct Holder : memlens::Object {
  static inline int alive = 0;
  Ref<memlens::Object> ref;
  Holder() { ++alive; }
  ~Holder() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(ref); }
};
/// Holds its reference in a const member, which the collector cannot detach.
struct ConstHolder : memlens::Object {
  static inline int alive = 0;
  const Ref<memlens::Object> fixed;
  explicit ConstHolder(Ref<memlens::Object> r) : fixed(std::move(r)) { ++alive; }
  ~ConstHolder() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(fixed); }
};
}  // namespace test_gc

TEST_CASE("cycles through const members are freed", "[gc]") {
  // The const reference cannot be detached: its target outlives the clearing and dies with its
  // holder. (The hand-made Edge test covers the other order, holder first in the list.)
  Quiet quiet;
  {
    auto holder = make<Holder>();
    auto fixed = make<ConstHolder>(holder);
    holder->ref = fixed;
  }
  CHECK(Holder::alive == 1);
  CHECK(ConstHolder::alive == 1);
  CHECK(gc::collect() == 2);
  CHECK(Holder::alive == 0);
  CHECK(ConstHolder::alive == 0);
}

TEST_CASE("get_count and thresholds and automatic collection follow CPython", "[gc]") {
  Quiet quiet;
  CHECK(std::get<0>(gc::get_count()) == 0);
  std::vector<Ref<Node>> keep;
  for (int i = 0; i < 3; ++i) keep.push_back(make<Node>());
  auto untracked = make<Leaf>();
  CHECK(std::get<0>(gc::get_count()) == 3);  // tracked allocations only
  keep.pop_back();
  CHECK(std::get<0>(gc::get_count()) == 2);  // minus deallocations
  gc::collect(0);
  CHECK(gc::get_count() == std::make_tuple(std::size_t{0}, std::size_t{1}, std::size_t{0}));

  gc::set_threshold(5, 10, 10);
  CHECK(gc::get_threshold() == std::make_tuple(std::size_t{5}, std::size_t{10}, std::size_t{10}));
  gc::enable();
  CHECK(gc::isenabled());
  const auto before = gc::get_stats()[0].collections;
  for (int i = 0; i < 6; ++i) {
    auto a = make<Node>();
    a->next = a;
  }
  CHECK(gc::get_stats()[0].collections == before + 1);  // the 6th allocation went over 5
  CHECK(Node::alive == 2 + 1);                          // `keep` plus the cycle made after it
  gc::disable();
  CHECK_FALSE(gc::isenabled());
}

TEST_CASE("get_stats counts collections per generation", "[gc]") {
  Quiet quiet;
  const auto before = gc::get_stats();
  {
    auto r = ring(4);
  }
  CHECK(gc::collect(1) == 4);
  const auto after = gc::get_stats();
  CHECK(after[1].collections == before[1].collections + 1);
  CHECK(after[1].collected == before[1].collected + 4);
  CHECK(after[0].collections == before[0].collections);
  CHECK(after[2].collections == before[2].collections);
  CHECK(after[1].uncollectable == before[1].uncollectable);
}

TEST_CASE("callbacks see start and stop with the collection's figures", "[gc]") {
  Quiet quiet;
  std::vector<std::string> seen;
  gc::callbacks().push_back([&](std::string_view phase, const gc::CallbackInfo& info) {
    seen.push_back(std::string(phase) + " " + std::to_string(info.generation) + " " +
                   std::to_string(info.collected) + " " + std::to_string(info.uncollectable));
  });
  {
    auto r = ring(3);
  }
  gc::collect(2);
  CHECK(seen == std::vector<std::string>{"start 2 0 0", "stop 2 3 0"});
}

TEST_CASE("freeze moves everything out of the collector's reach", "[gc]") {
  Quiet quiet;
  {
    auto r = ring(5);
  }
  gc::freeze();
  CHECK(gc::get_freeze_count() >= 5);
  CHECK(gc::collect() == 0);
  CHECK(Node::alive == 5);
  gc::unfreeze();
  CHECK(gc::get_freeze_count() == 0);
  CHECK(gc::collect() == 5);
  CHECK(Node::alive == 0);
}

TEST_CASE("get_referrers and get_referents", "[gc]") {
  Quiet quiet;
  auto a = make<Node>();
  auto b = make<Node>();
  auto c = make<Node>();
  auto leaf_holder = make<std::vector<Ref<Leaf>>>();
  auto leaf = make<Leaf>();
  leaf_holder->push_back(leaf);
  a->next = c;
  b->next = c;
  b->other = c;  // two edges, one referrer
  auto referrers = gc::get_referrers(c);
  CHECK(referrers.size() == 2);
  CHECK(contains(referrers, a.object()));
  CHECK(contains(referrers, b.object()));
  CHECK(gc::get_referrers(a).empty());
  CHECK(gc::get_referrers(leaf).size() == 1);

  auto referents = gc::get_referents(b);
  CHECK(referents.size() == 2);
  CHECK(referents[0] == c);
  CHECK(gc::get_referents(leaf_holder).at(0) == leaf);  // untracked referents are listed too
  CHECK(gc::get_referents(leaf).empty());
}

TEST_CASE("DEBUG_SAVEALL keeps garbage in gc::garbage()", "[gc]") {
  Quiet quiet;
  gc::set_debug(gc::DEBUG_SAVEALL);
  CHECK(gc::get_debug() == gc::DEBUG_SAVEALL);
  {
    auto r = ring(3);
  }
  CHECK(gc::collect() == 3);
  CHECK(gc::garbage().size() == 3);
  CHECK(Node::alive == 3);
  gc::set_debug(0);
  gc::garbage().clear();
  CHECK(Node::alive == 3);  // still a cycle
  CHECK(gc::collect() == 3);
  CHECK(Node::alive == 0);
}

TEST_CASE("PEP 442: weakrefs are cleared first then finalizers run on an intact cycle",
          "[gc][finalize]") {
  Quiet quiet;
  Finalized::log.clear();
  std::vector<std::string> callbacks;
  Weak<Finalized> external;
  {
    auto a = make<Finalized>("a");
    auto b = make<Finalized>("b");
    a->partner = b;
    b->partner = a;
    a->weak_partner = b;
    b->weak_partner = a;
    external = Weak<Finalized>(a, [&] {
      callbacks.push_back(std::string("callback, finalizers so far: ") +
                          std::to_string(Finalized::log.size()));
    });
  }
  CHECK(gc::collect() == 2);
  CHECK(callbacks == std::vector<std::string>{"callback, finalizers so far: 0"});
  std::sort(Finalized::log.begin(), Finalized::log.end());
  CHECK(Finalized::log == std::vector<std::string>{"a: partner b, weak partner null",
                                                   "b: partner a, weak partner null"});
  CHECK(external.expired());
}

TEST_CASE("callbacks of weak references that are garbage themselves do not run",
          "[gc][weakref]") {
  Quiet quiet;
  struct Holder : memlens::Object {
    Ref<Holder> partner;
    Weak<Holder> watch;  // listed in traverse: it dies with its holder
    void traverse(memlens::Visitor& visit) override { visit(partner, watch); }
  };
  int inside = 0;
  int outside = 0;
  Weak<Holder> external;
  {
    auto a = make<Holder>();
    auto b = make<Holder>();
    a->partner = b;
    b->partner = a;
    a->watch = Weak<Holder>(b, [&] { ++inside; });
    external = Weak<Holder>(b, [&] { ++outside; });
  }
  CHECK(gc::collect() == 2);
  CHECK(inside == 0);   // the handle was garbage too
  CHECK(outside == 1);  // the handle outside the garbage is told
  CHECK(external.expired());
}

TEST_CASE("a finalizer that resurrects keeps its object and what it reaches once",
          "[gc][finalize]") {
  Quiet quiet;
  Finalized::log.clear();
  Finalized::resurrected = nullptr;
  {
    auto a = make<Finalized>("a");
    auto b = make<Finalized>("b");
    a->partner = b;
    b->partner = a;
    a->resurrect = true;
  }
  // Both were unreachable, both resurrected: as CPython 3.9+, nothing counts as collected.
  CHECK(gc::collect() == 0);
  REQUIRE(Finalized::resurrected);
  CHECK(Finalized::resurrected->name == "a");
  CHECK(Finalized::resurrected->partner->name == "b");
  CHECK(gc::is_finalized(Finalized::resurrected));
  CHECK(gc::is_finalized(Finalized::resurrected->partner));
  CHECK(Finalized::log.size() == 2);
  Finalized::resurrected->resurrect = false;
  Finalized::resurrected = nullptr;
  CHECK(gc::collect() == 2);
  CHECK(Finalized::log.size() == 2);  // never finalized twice
}

TEST_CASE("a finalizer that throws is reported and the collection goes on", "[gc][finalize]") {
  Quiet quiet;
  Finalized::log.clear();
  std::vector<std::string> reports;
  memlens::sys::set_unraisablehook([&](const memlens::sys::UnraisableInfo& info) {
    try {
      std::rethrow_exception(info.exception);
    } catch (const std::exception& e) {
      reports.push_back(e.what());
    }
  });
  {
    auto a = make<Finalized>("a");
    auto b = make<Finalized>("b");
    a->partner = b;
    b->partner = a;
    a->fail = true;
  }
  CHECK(gc::collect() == 2);
  memlens::sys::set_unraisablehook(nullptr);
  CHECK(reports == std::vector<std::string>{"a failed"});
  CHECK(Finalized::log.size() == 2);
}

TEST_CASE("collecting a 1000000-node ring or doubly linked list does not recurse",
          "[gc][large]") {
  Quiet quiet;
  {
    auto r = ring(1'000'000);
  }
  CHECK(gc::collect() == 1'000'000);
  {
    auto head = make<Node>();
    Node* tail = head.get();
    for (int i = 1; i < 1'000'000; ++i) {
      tail->next = make<Node>();
      tail->next->other = Ref<Node>(tail);  // back link
      tail = tail->next.get();
    }
  }
  CHECK(gc::collect() == 1'000'000);
  CHECK(Node::alive == 0);
}

namespace test_gc {
/// A node whose finalizer does something drastic, chosen at random.
struct Wild : memlens::Object {
  static inline int alive = 0;
  static inline int finalized_again = 0;  // finalize() calls on an object that had one already
  static inline std::vector<Ref<Wild>> saved;
  std::vector<Ref<Wild>> edges;
  int action = 0;
  int finalized = 0;
  Wild() { ++alive; }
  ~Wild() override { --alive; }
  void traverse(memlens::Visitor& visit) override { visit(edges); }
  /// Drops the saved objects; their finalizers (if they had not run) may save more, but each
  /// finalizer runs once, so this ends.
  static void release_saved() {
    while (!saved.empty()) {
      auto doomed = std::move(saved);
      saved.clear();
      doomed.clear();
      memlens::gc::collect();
    }
  }
  void finalize() override {
    if (++finalized > 1) ++finalized_again;
    switch (action) {
      case 1:  // resurrect
        saved.emplace_back(this);
        break;
      case 2:  // drop its references
        edges.clear();
        break;
      case 3:
        throw std::runtime_error("wild finalizer");
      case 4:  // resurrect a neighbour
        if (!edges.empty()) saved.push_back(edges.front());
        break;
      default:
        break;
    }
  }
};
}  // namespace test_gc

TEST_CASE("stress: random graphs with finalizers that resurrect or drop or throw", "[gc][stress]") {
  Quiet quiet;
  memlens::sys::set_unraisablehook([](const memlens::sys::UnraisableInfo&) {});
  Wild::finalized_again = 0;
  std::mt19937 rng(20261122);
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + static_cast<int>(rng() % 40);
    std::vector<Ref<Wild>> nodes;
    for (int i = 0; i < n; ++i) {
      nodes.push_back(make<Wild>());
      nodes.back()->action = static_cast<int>(rng() % 6);
    }
    const int edges = static_cast<int>(rng() % (3 * n + 1));
    for (int e = 0; e < edges; ++e) {
      nodes[rng() % n]->edges.push_back(nodes[rng() % n]);
    }
    std::vector<Ref<Wild>> roots;
    for (int i = 0; i < n; ++i)
      if (rng() % 8 == 0) roots.push_back(nodes[i]);
    nodes.clear();
    gc::collect(static_cast<int>(rng() % 3));
    if (rng() % 2) roots.clear();
    gc::collect();
    if (rng() % 3 == 0) Wild::release_saved();
  }
  Wild::release_saved();
  gc::collect();
  memlens::sys::set_unraisablehook(nullptr);
  CHECK(Wild::alive == 0);
  CHECK(Wild::finalized_again == 0);  // PEP 442: at most once per object, resurrected or not
}

TEST_CASE("weak containers held by an object report their contents to the collector",
          "[gc][weakref]") {
  Quiet quiet;
  struct Registry : memlens::Object {
    memlens::WeakKeyDictionary<Node, Ref<memlens::Object>> attached;
    memlens::WeakValueDictionary<int, Node> by_id;
    memlens::WeakSet<Node> members;
    void traverse(memlens::Visitor& visit) override { visit(attached, by_id, members); }
  };
  auto key = make<Node>();
  memlens::Weak<Registry> watch;
  int weak_handles = 0;
  {
    auto registry = make<Registry>();
    registry->attached.insert_or_assign(key, Ref<memlens::Object>(registry));  // value -> owner
    registry->by_id.insert_or_assign(1, key);
    registry->members.add(key);
    watch = registry;
    auto referents = gc::get_referents(registry);
    REQUIRE(referents.size() == 1);  // the value; keys and by_id values are weak
    CHECK(referents[0] == registry);
    struct CountWeak final : memlens::Visitor {
      int* n;
      explicit CountWeak(int* count) : n(count) {}
      void visit_edge(const memlens::Edge&) override {}
      void visit_weak(memlens::detail::WeakLink&) override { ++*n; }
    } counter(&weak_handles);
    registry->traverse(counter);
  }
  CHECK(weak_handles == 3);
  CHECK_FALSE(watch.expired());  // kept alive by its own dictionary's value
  CHECK(gc::collect() == 1);
  CHECK(watch.expired());
  CHECK(Node::alive == 1);
}

TEST_CASE("cycles through set elements and map keys are freed in the collection that finds them",
          "[gc]") {
  Quiet quiet;
  Vertex::alive = 0;
  {
    auto a = make<Vertex>(), b = make<Vertex>(), c = make<Vertex>(), d = make<Vertex>();
    a->out.insert(b);
    b->hashed.insert(c);
    c->weights[d] = 1;
    d->pairs[a] = a;
  }
  CHECK(Vertex::alive == 4);
  CHECK(gc::collect() == 4);
  CHECK(Vertex::alive == 0);
  CHECK(gc::collect() == 0);  // nothing left to count again
  CHECK(gc::get_objects().empty());
}

TEST_CASE("a traverse that reports a reference twice does not make it unreachable", "[gc]") {
  if (!memlens::detail::gc_check_traverse) {
    WARN("traverses are checked in debug builds or with MEMLENS_CHECK_TRAVERSE=1 only");
    return;
  }
  Quiet quiet;
  auto a = make<Twice>();
  {
    auto b = make<Twice>();
    a->next = b;
    b->next = a;  // b reports its one reference to a twice; a is also held from outside
  }
  std::vector<std::string> reports;
  {
    test_gc_support::UnraisableRecorder recorder;
    CHECK(gc::collect() == 0);
    reports = recorder.reports;
  }
  REQUIRE(a->next);
  CHECK(a->next->next == a);
  REQUIRE_FALSE(reports.empty());
  CHECK(reports.front().find("more than once") != std::string::npos);
  a->next->next = nullptr;
}

TEST_CASE("APIs that hand out Refs skip objects already being destroyed", "[gc]") {
  // A chain deeper than the trashcan's limit: from the 64th link on, each `next` is queued with a
  // count of zero while its holder's member destructors still run.
  for (bool detector : {false, true}) {
    Inspected::alive = 0;
    Inspected::seen = 0;
    Inspected::inspections = 0;
    Inspected::use_detector = detector;
    auto head = make<Inspected>();
    Inspected* tail = head.get();
    for (int i = 0; i < 1'000; ++i) {
      tail->next = make<Inspected>();
      tail = tail->next.get();
    }
    head.reset();
    CHECK(Inspected::alive == 0);
    CHECK(Inspected::inspections > 10);  // once per 64 links: where the queue starts
    CHECK(Inspected::seen == 0);
  }
}

TEST_CASE("a gc callback list that cannot be copied does not leave the collector stuck",
          "[gc]") {
  Quiet quiet;
  gc::callbacks().push_back(CopyFails());
  CopyFails::fail = true;
  CHECK_THROWS_AS(gc::collect(), std::bad_alloc);
  CopyFails::fail = false;
  gc::callbacks().clear();
  {
    auto a = make<Node>();
    a->next = a;
  }
  CHECK(gc::collect() == 1);  // a collection runs again
}
