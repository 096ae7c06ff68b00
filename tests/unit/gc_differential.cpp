// Differential test of the cycle collector: the same random object graphs go through CPython's
// gc.collect() (tests/data/gc_differential.py) and memlens::gc::collect(), which must find the
// same number of unreachable objects and leave the same survivors.
#include <memlens/gc.hpp>

#include <memlens/weakref.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "memlens_test.hpp"

#ifndef MEMLENS_TESTS_DIR
#error "MEMLENS_TESTS_DIR must name the tests/ directory"
#endif

namespace test_gc_differential {

using memlens::make;
using memlens::Ref;

/// The C++ twin of the script's __slots__ node: eight reference slots.
struct Node : memlens::Object {
  Ref<Node> slots[8];
  void traverse(memlens::Visitor& visit) override { visit(slots); }
};

struct Graph {
  int n = 0;
  struct Assignment {
    int source, slot, target;
  };
  std::vector<Assignment> assignments;
  std::vector<int> roots;
};

/// Random graphs of several shapes. mt19937's output is fixed by the standard, and the
/// shapes use only `rng() % k`, so every platform builds the same graphs.
class GraphMaker {
 public:
  explicit GraphMaker(std::uint32_t seed) : rng_(seed) {}

  Graph next() {
    Graph g;
    g.n = 1 + pick(64);
    switch (pick(6)) {
      case 0:  // random edges, any density
        random_edges(g, pick(3 * g.n + 1));
        break;
      case 1:  // rings, with a few chords
        rings(g);
        random_edges(g, pick(g.n / 2 + 1));
        break;
      case 2:  // a cycle with chains hanging off it, in and out
        cycle_with_chains(g);
        break;
      case 3:  // self-loops and sparse edges
        for (int i = 0; i < g.n; ++i)
          if (pick(2)) assign(g, i, i);
        random_edges(g, pick(g.n + 1));
        break;
      case 4:  // dense: every slot of every node
        random_edges(g, 8 * g.n);
        break;
      default:  // chains only: reference counting frees them, the collector finds nothing
        for (int i = 0; i + 1 < g.n; ++i) assign(g, i, i + 1);
        break;
    }
    const int root_odds = pick(5);  // 0: no roots at all
    for (int i = 0; i < g.n; ++i)
      if (root_odds && pick(4 * root_odds) == 0) g.roots.push_back(i);
    return g;
  }

 private:
  int pick(int k) { return k <= 0 ? 0 : static_cast<int>(rng_() % static_cast<std::uint32_t>(k)); }
  void assign(Graph& g, int source, int target) {
    g.assignments.push_back({source, pick(8), target});
  }
  void random_edges(Graph& g, int count) {
    for (int e = 0; e < count; ++e) {
      // Two statements: the order in which a call's arguments are evaluated is unspecified
      // (g++ goes right to left, clang++ left to right), and the graphs must not depend on the
      // compiler. This order keeps the graphs g++ always built.
      const int target = pick(g.n);
      const int source = pick(g.n);
      assign(g, source, target);
    }
  }
  void rings(Graph& g) {
    int start = 0;
    while (start < g.n) {
      const int size = 1 + pick(g.n - start);
      for (int i = 0; i < size; ++i) {
        g.assignments.push_back({start + i, 0, start + (i + 1) % size});
      }
      start += size;
    }
  }
  void cycle_with_chains(Graph& g) {
    const int cycle = 1 + pick(g.n);
    for (int i = 0; i < cycle; ++i) g.assignments.push_back({i, 0, (i + 1) % cycle});
    for (int i = cycle; i < g.n; ++i) {
      const int anchor = pick(i);
      if (pick(2)) {
        g.assignments.push_back({i, 1, anchor});  // hangs on: points into the structure
      } else {
        g.assignments.push_back({anchor, 1 + pick(7), i});  // hangs off: pointed at
      }
    }
  }

  std::mt19937 rng_;
};

struct Outcome {
  std::size_t found = 0;
  std::vector<int> survivors;
  bool operator==(const Outcome&) const = default;
};

inline std::string describe(const Outcome& o) {
  std::ostringstream s;
  s << "found " << o.found << ", survivors {";
  for (int id : o.survivors) s << ' ' << id;
  s << " }";
  return s.str();
}

inline Outcome run_memlens(const Graph& g) {
  std::vector<Ref<Node>> nodes;
  for (int i = 0; i < g.n; ++i) nodes.push_back(make<Node>());
  for (const auto& a : g.assignments) nodes[a.source]->slots[a.slot] = nodes[a.target];
  std::vector<Ref<Node>> kept;
  for (int id : g.roots) kept.push_back(nodes[id]);
  std::vector<memlens::Weak<Node>> refs(nodes.begin(), nodes.end());
  nodes.clear();
  Outcome out;
  out.found = memlens::gc::collect();
  for (int i = 0; i < g.n; ++i)
    if (!refs[i].expired()) out.survivors.push_back(i);
  return out;
}

inline bool have_python() { return std::system("python3 -c pass > /dev/null 2>&1") == 0; }

}  // namespace test_gc_differential

using namespace test_gc_differential;

TEST_CASE("gc::collect agrees with CPython's gc.collect on 1,500 random graphs",
          "[gc][differential]") {
  if (!have_python()) {
    WARN("python3 not found: the differential test against CPython is skipped");
    return;
  }
  constexpr int graphs = 1500;
  GraphMaker maker(20261122);
  std::vector<Graph> all;
  for (int i = 0; i < graphs; ++i) all.push_back(maker.next());

  const auto dir = std::filesystem::temp_directory_path() /
                   ("memlens-gc-diff-" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream spec(dir / "graphs.txt");
    for (const auto& g : all) {
      spec << "G " << g.n << '\n';
      for (const auto& a : g.assignments) spec << "A " << a.source << ' ' << a.slot << ' ' << a.target << '\n';
      for (int r : g.roots) spec << "R " << r << '\n';
      spec << "E\n";
    }
  }
  const std::string command = "python3 \"" MEMLENS_TESTS_DIR "/data/gc_differential.py\" \"" +
                              (dir / "graphs.txt").string() + "\" \"" +
                              (dir / "cpython.txt").string() + "\"";
  REQUIRE(std::system(command.c_str()) == 0);

  std::ifstream results(dir / "cpython.txt");
  memlens::gc::disable();
  memlens::gc::collect();
  int agreed = 0;
  std::size_t total_found = 0;
  for (int i = 0; i < graphs; ++i) {
    std::string line;
    REQUIRE(std::getline(results, line));
    std::istringstream fields(line);
    Outcome cpython;
    fields >> cpython.found;
    for (int id; fields >> id;) cpython.survivors.push_back(id);
    const Outcome ours = run_memlens(all[i]);
    memlens::gc::collect();  // what the graph's roots kept, now unrooted
    INFO("graph " << i << ": CPython " << describe(cpython) << "; memlens " << describe(ours));
    CHECK(ours == cpython);
    agreed += ours == cpython;
    total_found += cpython.found;
  }
  memlens::gc::enable();
  std::filesystem::remove_all(dir);
  CHECK(agreed == graphs);
  CHECK(total_found > 10'000);  // the graphs did exercise the collector
}
