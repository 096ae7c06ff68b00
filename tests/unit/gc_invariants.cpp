// Property tests of the cycle collector on random graphs whose references live in every kind of
// member the collector walks: vectors, sets, unordered_sets, maps and unordered_maps (Refs as
// keys and as values), optionals and variants, with finalizers that resurrect.
//
// The invariants, for every collection:
//  - what gc::collect() returns is exactly the number of objects it destroys itself: objects a
//    finalizer resurrected are neither counted nor destroyed, and with finalizers that only
//    resurrect, no object dies by reference counting during the collection, so the count equals
//    the destructor calls during collect();
//  - the objects destroyed, and the count, are what a model of CPython 3.11 (PEP 442) predicts:
//    the unreachable objects are finalized, what the finalizers saved survives with everything
//    it reaches, and CPython's `final_unreachable` (counted) is what is still unreachable and
//    still kept alive by a cycle; the rest of the unreachable objects die by reference counting
//    during the finalizers, uncounted;
//  - resurrected objects are alive afterwards, with all their references in place;
//  - once nothing outside refers to them any more, collections free every object.
#include <memlens/gc.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "gc_test.hpp"
#include "memlens_test.hpp"

namespace test_gc_invariants {

using memlens::make;
using memlens::Ref;
namespace gc = memlens::gc;

/// Where every reference of a node is, mirrored with ids so a model can follow the graph.
struct Mirror {
  std::vector<int> vec;
  std::multiset<int> set, uset, map_keys;
  std::map<int, int> by_number;  // number -> node
  std::map<int, int> umap;       // key node -> value node, or -1 for a null value
  int opt = -1;
  int var = -1;

  /// Every reference, once per slot that holds it.
  std::vector<int> edges() const {
    std::vector<int> out(vec);
    out.insert(out.end(), set.begin(), set.end());
    out.insert(out.end(), uset.begin(), uset.end());
    out.insert(out.end(), map_keys.begin(), map_keys.end());
    for (const auto& [number, node] : by_number) out.push_back(node);
    for (const auto& [key, value] : umap) {
      out.push_back(key);
      if (value >= 0) out.push_back(value);
    }
    if (opt >= 0) out.push_back(opt);
    if (var >= 0) out.push_back(var);
    std::sort(out.begin(), out.end());
    return out;
  }
};

struct PNode;

/// The state of one graph: which nodes live, when each died, what finalizers saved.
struct World {
  static inline World* current = nullptr;  // the world of the graph being tested
  int phase = 0;  // 0: building and dropping, 1: inside the collect() under test, 2: after
  std::vector<PNode*> live;       // by id; null once destroyed
  std::vector<int> destroyed_in;  // by id: the phase of its destruction, or -1
  std::vector<Mirror> mirror;     // by id
  std::vector<char> finalized;    // by id
  std::vector<Ref<PNode>> saved;  // what finalizers resurrected
};

struct PNode : memlens::Object {
  int id = -1;
  std::vector<Ref<PNode>> vec;
  std::set<Ref<PNode>> set;
  std::unordered_set<Ref<PNode>> uset;
  std::map<Ref<PNode>, int> map;                    // Refs as keys
  std::map<int, Ref<PNode>> by_number;              // Refs as values
  std::unordered_map<Ref<PNode>, Ref<PNode>> umap;  // Refs as keys and as values
  std::optional<Ref<PNode>> opt;
  std::variant<std::monostate, int, Ref<PNode>> var;

  void traverse(memlens::Visitor& visit) override {
    visit(vec, set, uset, map, by_number, umap, opt, var);
  }
  ~PNode() override {
    World& w = *World::current;
    if (id < 0 || id >= static_cast<int>(w.live.size()) || w.live[id] != this) return;
    w.live[id] = nullptr;
    w.destroyed_in[id] = w.phase;
  }
  void clear_edges() {
    vec.clear();
    set.clear();
    uset.clear();
    map.clear();
    by_number.clear();
    umap.clear();
    opt.reset();
    var = std::monostate{};
    World::current->mirror[id] = Mirror{};
  }
  /// The ids this node refers to, as its traverse reports them.
  std::vector<int> actual_edges() {
    std::vector<int> out;
    memlens::for_each_edge(*this, [&](const memlens::Edge& e) {
      out.push_back(static_cast<PNode&>(e.referent()).id);
    });
    std::sort(out.begin(), out.end());
    return out;
  }
};

enum Finalizer : int { noop = 0, resurrect_self = 1, resurrect_other = 2, cut_references = 3 };

struct FPNode final : PNode {
  Finalizer kind = noop;
  int target = -1;  // resurrect_other: an id this node refers to
  void finalize() override {
    World& w = *World::current;
    w.finalized[id] = 1;
    switch (kind) {
      case resurrect_self:
        w.saved.emplace_back(this);
        break;
      case resurrect_other: {
        Ref<PNode> found;
        memlens::for_each_edge(*this, [&](const memlens::Edge& e) {
          auto& node = static_cast<PNode&>(e.referent());
          if (node.id == target && !found) found = Ref<PNode>(&node);
        });
        if (found) w.saved.push_back(std::move(found));
        break;
      }
      case cut_references:
        clear_edges();
        break;
      case noop:
        break;
    }
  }
};

/// One random graph, built as it goes into a World.
struct Built {
  std::vector<Ref<PNode>> kept;  // the external roots
  std::string description;
};

class GraphMaker {
 public:
  GraphMaker(std::uint32_t seed, bool with_cutting) : rng_(seed), with_cutting_(with_cutting) {}

  Built build(World& w) {
    Built b;
    const int n = 1 + pick(40);
    // Edge palettes: every kind of member, or only those whose Refs are const (set elements and
    // map keys), where a cycle has no reference the collector can simply null.
    const bool const_only = pick(4) == 0;
    const int finalizer_odds = pick(3);  // 0: no finalizers, 1: one node in 2 has one, 2: 1 in 4
    const int kinds = with_cutting_ ? 4 : 3;
    w.live.assign(n, nullptr);
    w.destroyed_in.assign(n, -1);
    w.mirror.assign(n, Mirror{});
    w.finalized.assign(n, 0);
    std::vector<Ref<PNode>> nodes;
    std::vector<FPNode*> finalizable;
    for (int i = 0; i < n; ++i) {
      if (finalizer_odds && pick(2 * finalizer_odds) == 0) {
        auto f = make<FPNode>();
        f->kind = static_cast<Finalizer>(pick(kinds));
        finalizable.push_back(f.get());
        nodes.push_back(f);
      } else {
        nodes.push_back(make<PNode>());
      }
      nodes.back()->id = i;
      w.live[i] = nodes.back().get();
    }
    const int edges = pick(3 * n + 1);
    for (int e = 0; e < edges; ++e) {
      const int s = pick(n), t = pick(n);
      PNode& src = *nodes[s];
      Mirror& m = w.mirror[s];
      switch (const_only ? 1 + 2 * pick(4) : pick(10)) {  // const only: 1, 3, 5, 7
        case 0:
          src.vec.push_back(nodes[t]);
          m.vec.push_back(t);
          break;
        case 1:
          if (src.set.insert(nodes[t]).second) m.set.insert(t);
          break;
        case 2: {  // an ordered map's value, under some number
          const int k = pick(4);
          src.by_number[k] = nodes[t];
          m.by_number[k] = t;
          break;
        }
        case 3:
          if (src.uset.insert(nodes[t]).second) m.uset.insert(t);
          break;
        case 4: {  // an unordered_map value, under some key
          const int k = pick(n);
          src.umap[nodes[k]] = nodes[t];
          m.umap[k] = t;
          break;
        }
        case 5:
          if (src.map.emplace(nodes[t], e).second) m.map_keys.insert(t);
          break;
        case 6:
          if (pick(8) == 0) {
            src.opt.reset();
            m.opt = -1;
          } else {
            src.opt = nodes[t];
            m.opt = t;
          }
          break;
        case 7:  // an unordered_map key with a null value
          if (src.umap.emplace(nodes[t], nullptr).second) m.umap[t] = -1;
          break;
        case 8:
          if (pick(8) == 0) {
            src.var = e;
            m.var = -1;
          } else {
            src.var = nodes[t];
            m.var = t;
          }
          break;
        default:
          src.vec.push_back(nodes[t]);
          m.vec.push_back(t);
          break;
      }
    }
    for (FPNode* f : finalizable) {
      if (f->kind != resurrect_other) continue;
      std::vector<int> out = w.mirror[f->id].edges();
      out.erase(std::remove(out.begin(), out.end(), f->id), out.end());
      if (!out.empty()) f->target = out[pick(static_cast<int>(out.size()))];
    }
    const int root_odds = pick(5);  // 0: no roots
    for (int i = 0; i < n; ++i)
      if (root_odds && pick(4 * root_odds) == 0) b.kept.push_back(nodes[i]);
    std::ostringstream d;
    d << n << " nodes, " << edges << " edges"
      << (const_only ? " (set elements and map keys only)" : "") << ", " << finalizable.size()
      << " with finalizers, " << b.kept.size() << " roots";
    b.description = d.str();
    return b;  // `nodes` goes: reference counting frees what no cycle or root keeps
  }

  int pick(int k) { return k <= 0 ? 0 : static_cast<int>(rng_() % static_cast<std::uint32_t>(k)); }

 private:
  std::mt19937 rng_;
  bool with_cutting_;
};

/// What CPython 3.11 does with the world as it stands, for one collection: which nodes die
/// and how many of them it counts.
struct Prediction {
  std::vector<int> destroyed;  // sorted ids
  std::size_t counted = 0;
};

inline std::vector<char> reach(const World& w, const std::vector<int>& from,
                               const std::vector<std::vector<int>>& edges) {
  std::vector<char> seen(w.live.size(), 0);
  std::vector<int> stack(from);
  while (!stack.empty()) {
    const int i = stack.back();
    stack.pop_back();
    if (seen[i]) continue;
    seen[i] = 1;
    for (int t : edges[i]) stack.push_back(t);
  }
  return seen;
}

inline Prediction predict(const World& w, const std::vector<Ref<PNode>>& kept) {
  const int n = static_cast<int>(w.live.size());
  std::vector<std::vector<int>> edges(n);
  for (int i = 0; i < n; ++i)
    if (w.live[i]) edges[i] = w.mirror[i].edges();
  std::vector<int> roots;
  for (const auto& r : kept) roots.push_back(r->id);
  for (const auto& r : w.saved) roots.push_back(r->id);
  const auto reachable = reach(w, roots, edges);
  // Every unreachable node's pending finalizer runs.
  for (int i = 0; i < n; ++i) {
    if (!w.live[i] || reachable[i] || w.finalized[i]) continue;
    const auto* f = dynamic_cast<const FPNode*>(w.live[i]);
    if (!f) continue;
    if (f->kind == resurrect_self) roots.push_back(i);
    if (f->kind == resurrect_other && f->target >= 0) roots.push_back(f->target);
    if (f->kind == cut_references) edges[i].clear();
  }
  const auto survives = reach(w, roots, edges);
  Prediction p;
  std::vector<int> in_degree(n, 0);
  std::vector<char> dying(n, 0);
  for (int i = 0; i < n; ++i) {
    if (w.live[i] && !survives[i]) {
      dying[i] = 1;
      p.destroyed.push_back(i);
    }
  }
  for (int i = 0; i < n; ++i)
    if (dying[i])
      for (int t : edges[i]) ++in_degree[t];  // dying nodes refer only to dying or surviving ones
  // Reference counting frees, during the finalizers, every dying node that no cycle keeps:
  // peel the nodes nothing refers to; what remains is CPython's final_unreachable.
  std::vector<int> free_now;
  for (int i : p.destroyed)
    if (in_degree[i] == 0) free_now.push_back(i);
  std::size_t freed_by_counting = 0;
  while (!free_now.empty()) {
    const int i = free_now.back();
    free_now.pop_back();
    ++freed_by_counting;
    for (int t : edges[i])
      if (dying[t] && --in_degree[t] == 0) free_now.push_back(t);
  }
  p.counted = p.destroyed.size() - freed_by_counting;
  return p;
}

/// Lets go of everything the graph left: the roots, what finalizers saved (their finalizers may
/// save more, but each runs once), and, for cycles no collection frees, their references.
/// Returns how many nodes outlived collections with nothing outside referring to them.
inline int release_all(World& w, std::vector<Ref<PNode>>& kept) {
  kept.clear();
  int stranded = -1;
  for (int round = 0; round < 64; ++round) {
    auto doomed = std::move(w.saved);
    w.saved.clear();
    doomed.clear();
    gc::collect();
    if (!w.saved.empty()) continue;  // finalizers of nodes the roots kept saved some
    std::vector<Ref<PNode>> held;
    for (PNode* p : w.live)
      if (p) held.emplace_back(p);
    if (held.empty()) break;
    if (stranded < 0) stranded = static_cast<int>(held.size());
    for (auto& p : held) p->clear_edges();  // break them by hand
  }
  return std::max(stranded, 0);
}

inline std::string ids(const std::vector<int>& v) {
  std::ostringstream s;
  s << '{';
  for (int i : v) s << ' ' << i;
  s << " }";
  return s.str();
}

using test_gc_support::GcGuard;

/// Runs `graphs` random graphs through one collection each and checks the invariants; one
/// CHECK per graph, whose value lists the invariants it broke.
inline void check_invariants(std::uint32_t seed, bool with_cutting, int graphs) {
  GcGuard guard;
  static World world;  // static: a node that outlives a failed check must not find it gone
  world = World{};
  World::current = &world;
  GraphMaker maker(seed, with_cutting);
  int failures = 0, miscounted = 0, misdestroyed = 0, stranded_graphs = 0;
  for (int g = 0; g < graphs; ++g) {
    world.phase = 0;
    Built built = maker.build(world);
    const int generation = maker.pick(3);
    const std::size_t saved_before = world.saved.size();
    const Prediction predicted = predict(world, built.kept);

    world.phase = 1;
    const std::size_t found = gc::collect(generation);
    world.phase = 2;

    std::vector<int> destroyed;
    for (int i = 0; i < static_cast<int>(world.live.size()); ++i)
      if (world.destroyed_in[i] == 1) destroyed.push_back(i);
    std::vector<int> resurrected;  // by the finalizers of this collection
    for (std::size_t k = saved_before; k < world.saved.size(); ++k)
      resurrected.push_back(world.saved[k]->id);

    std::ostringstream broken;
    if (!with_cutting && found != destroyed.size()) {
      // No finalizer drops a reference: whatever dies in the collection, the collector freed.
      broken << "; counted " << found << " but destroyed " << destroyed.size();
    }
    if (found != predicted.counted) {
      broken << "; counted " << found << " where CPython counts " << predicted.counted;
      ++miscounted;
    }
    if (destroyed != predicted.destroyed) {
      broken << "; destroyed " << ids(destroyed) << " where CPython destroys "
             << ids(predicted.destroyed);
      ++misdestroyed;
    }
    for (const auto& s : world.saved)
      if (world.destroyed_in[s->id] != -1) broken << "; resurrected node " << s->id << " destroyed";
    // Survivors, resurrected ones included, keep every reference. (Nodes that should have died
    // are the check on `destroyed`'s business.)
    for (PNode* p : world.live) {
      if (p && !std::binary_search(predicted.destroyed.begin(), predicted.destroyed.end(), p->id) &&
          p->actual_edges() != world.mirror[p->id].edges())
        broken << "; survivor " << p->id << " lost references";
    }

    world.phase = 3;
    const int stranded = release_all(world, built.kept);
    if (stranded) {
      broken << "; " << stranded << " nodes outlived every collection once unreferenced";
      ++stranded_graphs;
    }
    const std::string violations = broken.str();
    INFO("graph " << g << ": " << built.description << "; collect(" << generation << ") returned "
                  << found << ", destroyed " << ids(destroyed) << ", resurrected "
                  << ids(resurrected));
    CHECK(violations == "");
    failures += !violations.empty();
    // Nodes the clean-up could not free would dangle in `live`; stop rather than corrupt.
    bool all_gone = true;
    for (PNode* p : world.live) all_gone &= p == nullptr;
    REQUIRE(all_gone);
  }
  INFO(failures << " of " << graphs << " graphs broke an invariant: " << miscounted
                << " miscounted, " << misdestroyed << " destroyed the wrong nodes, "
                << stranded_graphs << " left cycles that no collection frees");
  CHECK(failures == 0);
}

}  // namespace test_gc_invariants

TEST_CASE("gc invariants: collect counts exactly what it destroys and never what is resurrected",
          "[gc][invariants]") {
  test_gc_invariants::check_invariants(20261123, false, 600);
}

TEST_CASE("gc invariants: finalizers that cut their references leave CPython's final count",
          "[gc][invariants]") {
  test_gc_invariants::check_invariants(20261124, true, 600);
}
