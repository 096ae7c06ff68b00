// memlens tools: CircularReferenceDetector (seed exercise 7): finds and shows the reference
// cycles an object takes part in.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/errors.hpp"
#include "memlens/object.hpp"
#include "memlens/visit.hpp"

namespace memlens {

/// One elementary reference cycle: objects A, B, ... such that A -> B -> ... -> A, starting at
/// the object the search started from. Holds strong references to its objects.
class Cycle {
 public:
  using value_type = Ref<Object>;
  using const_iterator = std::vector<Ref<Object>>::const_iterator;

  Cycle(std::vector<Ref<Object>> objects, std::vector<std::string> edge_names)
      : objects_(std::move(objects)), edge_names_(std::move(edge_names)) {}

  /// The object the search started from.
  const Ref<Object>& front() const { return objects_.front(); }
  std::size_t size() const noexcept { return objects_.size(); }
  const Ref<Object>& operator[](std::size_t i) const { return objects_[i]; }
  const_iterator begin() const noexcept { return objects_.begin(); }
  const_iterator end() const noexcept { return objects_.end(); }
  /// The member name of the reference from object i to the next one (the last wraps to the
  /// first), as the type gave it with `memlens::named`, or empty.
  std::string_view edge_name(std::size_t i) const { return edge_names_.at(i); }

 private:
  std::vector<Ref<Object>> objects_;
  std::vector<std::string> edge_names_;
};

/**
 * Finds every elementary reference cycle through an object and shows them: as text
 * (`Node(A) -.ref-> Node(B) -.ref-> Node(A)`) or as a Graphviz graph. Edges are what the types'
 * `traverse` report; objects are shown with their `repr()`.
 *
 * ```cpp
 * memlens::CircularReferenceDetector detector;
 * auto cycles = detector.find_cycles(node_a);
 * fmt::print("{}", detector.report(cycles));
 * ```
 *
 * The search first narrows the graph to the objects both reachable from the start and able to
 * reach it back (its strongly connected component), then enumerates cycles with Johnson's
 * algorithm, iteratively: time is linear in the component per cycle found, the stack stays flat
 * whatever the cycle length, and `max_cycles` bounds the work on dense graphs.
 */
class CircularReferenceDetector {
 public:
  /// Every elementary cycle through `object`, at most `max_cycles` of them (a dense graph can
  /// have exponentially many). Throws ValueError for a null Ref or max_cycles of 0.
  template <class T>
  std::vector<Cycle> find_cycles(const Ref<T>& object, std::size_t max_cycles = 100) const {
    if (!object) throw ValueError("CircularReferenceDetector: cannot search from a null Ref");
    if (max_cycles == 0) throw ValueError("CircularReferenceDetector: max_cycles must be > 0");
    return search(const_cast<Object*>(object.object()), max_cycles);
  }

  /// Readable text: one line per cycle, each object shown by its repr(), each edge by its
  /// member name when the type named it (`A -.next-> B`) or as `A --> B`.
  std::string report(const std::vector<Cycle>& cycles) const {
    if (cycles.empty()) return "No reference cycles found.\n";
    std::string out = std::to_string(cycles.size()) +
                      (cycles.size() == 1 ? " reference cycle" : " reference cycles") +
                      " through " + cycles.front().front()->repr() + ":\n";
    for (std::size_t c = 0; c < cycles.size(); ++c) {
      const Cycle& cycle = cycles[c];
      out += "  " + std::to_string(c + 1) + ". (" + std::to_string(cycle.size()) +
             (cycle.size() == 1 ? " object) " : " objects) ");
      for (std::size_t i = 0; i < cycle.size(); ++i) {
        out += cycle[i]->repr() + arrow(cycle.edge_name(i));
      }
      out += cycle.front()->repr() + "\n";
    }
    return out;
  }

  /// A Graphviz DOT digraph of the cycles (objects once each, edges once each).
  std::string to_dot(const std::vector<Cycle>& cycles) const {
    std::string out = "digraph cycles {\n  node [shape=box];\n";
    std::unordered_map<const Object*, std::size_t> ids;
    auto id_of = [&](const Ref<Object>& o) {
      auto [it, inserted] = ids.try_emplace(o.object(), ids.size());
      if (inserted) {
        out += "  n" + std::to_string(it->second) + " [label=\"" + escape(o->repr()) + "\"];\n";
      }
      return it->second;
    };
    std::vector<std::string> edges;
    for (const Cycle& cycle : cycles) {
      for (std::size_t i = 0; i < cycle.size(); ++i) {
        const std::size_t from = id_of(cycle[i]);
        const std::size_t to = id_of(cycle[(i + 1) % cycle.size()]);
        std::string edge = "  n" + std::to_string(from) + " -> n" + std::to_string(to);
        if (!cycle.edge_name(i).empty()) {
          edge += " [label=\"" + escape(std::string(cycle.edge_name(i))) + "\"]";
        }
        edge += ";\n";
        bool seen = false;
        for (const auto& e : edges) seen = seen || e == edge;
        if (!seen) edges.push_back(std::move(edge));
      }
    }
    for (const auto& e : edges) out += e;
    return out + "}\n";
  }

 private:
  struct Arc {
    std::size_t target;
    std::string name;
  };

  static std::string arrow(std::string_view name) {
    return name.empty() ? " --> " : " -." + std::string(name) + "-> ";
  }

  static std::string escape(const std::string& text) {
    std::string out;
    for (char ch : text) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    return out;
  }

  static std::vector<Cycle> search(Object* start, std::size_t max_cycles) {
    // 1. Everything reachable from the start, with its arcs (one traverse per object).
    std::vector<Object*> nodes{start};
    std::unordered_map<const Object*, std::size_t> index{{start, 0}};
    std::vector<std::vector<Arc>> arcs;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      arcs.emplace_back();
      for_each_edge(*nodes[i], [&](const Edge& e) {
        Object* target = &e.referent();
        // Being destroyed (a destructor's members may still name it): not part of any cycle.
        if (detail::Access::refcnt(target) == 0) return;
        auto [it, inserted] = index.try_emplace(target, nodes.size());
        if (inserted) nodes.push_back(target);
        arcs[i].push_back({it->second, std::string(e.name())});
      });
    }
    // 2. Of those, the ones that can reach the start back: its strongly connected component.
    std::vector<std::vector<std::size_t>> reverse(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i)
      for (const Arc& a : arcs[i]) reverse[a.target].push_back(i);
    std::vector<bool> in_component(nodes.size(), false);
    std::vector<std::size_t> work{0};
    in_component[0] = true;
    while (!work.empty()) {
      const std::size_t v = work.back();
      work.pop_back();
      for (std::size_t u : reverse[v]) {
        if (!in_component[u]) {
          in_component[u] = true;
          work.push_back(u);
        }
      }
    }
    // 3. Johnson's circuit search from the start, restricted to the component, with explicit
    // stacks instead of recursion.
    std::vector<Cycle> cycles;
    std::vector<bool> blocked(nodes.size(), false);
    std::vector<std::vector<std::size_t>> blocked_by(nodes.size());
    struct Frame {
      std::size_t node;
      std::size_t next_arc = 0;
      bool found = false;
    };
    std::vector<Frame> stack{{0}};
    std::vector<std::size_t> path_arcs;  // arc taken out of each frame but the top
    blocked[0] = true;
    auto unblock = [&](std::size_t u) {
      std::vector<std::size_t> pending{u};
      while (!pending.empty()) {
        const std::size_t x = pending.back();
        pending.pop_back();
        if (!blocked[x]) continue;
        blocked[x] = false;
        for (std::size_t w : blocked_by[x]) pending.push_back(w);
        blocked_by[x].clear();
      }
    };
    while (!stack.empty() && cycles.size() < max_cycles) {
      Frame& frame = stack.back();
      const auto& out = arcs[frame.node];
      if (frame.next_arc < out.size()) {
        const std::size_t arc = frame.next_arc++;
        const std::size_t w = out[arc].target;
        if (!in_component[w]) continue;
        if (w == 0) {
          frame.found = true;
          std::vector<Ref<Object>> objects;
          std::vector<std::string> names;
          for (std::size_t k = 0; k < stack.size(); ++k) {
            objects.push_back(detail::ref_if_alive(nodes[stack[k].node]));
            const std::size_t taken = k + 1 < stack.size() ? path_arcs[k] : arc;
            names.push_back(arcs[stack[k].node][taken].name);
          }
          cycles.emplace_back(std::move(objects), std::move(names));
        } else if (!blocked[w]) {
          path_arcs.push_back(arc);
          blocked[w] = true;
          stack.push_back({w});
        }
        continue;
      }
      // All arcs of this node explored.
      const Frame done = frame;
      stack.pop_back();
      if (done.found) {
        unblock(done.node);
      } else {
        for (const Arc& a : out) {
          if (!in_component[a.target]) continue;
          auto& list = blocked_by[a.target];
          bool listed = false;
          for (std::size_t x : list) listed = listed || x == done.node;
          if (!listed) list.push_back(done.node);
        }
      }
      if (!stack.empty()) {
        path_arcs.pop_back();
        stack.back().found = stack.back().found || done.found;
      }
    }
    return cycles;
  }
};

}  // namespace memlens
