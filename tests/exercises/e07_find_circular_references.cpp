// Exercise 7: CircularReferenceDetector finds every cycle through an object, reports it
// readably and exports it to Graphviz.
#include <memlens/tools/circular_reference_detector.hpp>

#include <memlens/gc.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace test_e07 {
struct Node : memlens::Object {
  std::string name;
  memlens::Ref<Node> ref;
  std::vector<memlens::Ref<Node>> children;
  explicit Node(std::string n) : name(std::move(n)) {}
  void traverse(memlens::Visitor& visit) override {
    visit(memlens::named("ref", ref), memlens::named("children", children));
  }
  std::string repr() const override { return "Node(" + name + ")"; }
};

inline std::vector<std::string> names(const memlens::Cycle& cycle) {
  std::vector<std::string> out;
  for (const auto& o : cycle) out.push_back(o->repr());
  return out;
}
}  // namespace test_e07

using test_e07::Node;
using test_e07::names;

TEST_CASE("e07: the seed's two-node cycle", "[exercise][e07][gc]") {
  auto a = memlens::make<Node>("A");
  auto b = memlens::make<Node>("B");
  a->ref = b;
  b->ref = a;
  memlens::CircularReferenceDetector detector;
  auto cycles = detector.find_cycles(a);
  REQUIRE(cycles.size() == 1);
  CHECK(memlens::is(cycles[0].front(), a));
  CHECK(names(cycles[0]) == std::vector<std::string>{"Node(A)", "Node(B)"});
  CHECK(cycles[0].edge_name(0) == "ref");
  CHECK(cycles[0].edge_name(1) == "ref");
  const std::string report = detector.report(cycles);
  CHECK(report.find("Node(A) -.ref-> Node(B) -.ref-> Node(A)") != std::string::npos);
  CHECK(report.rfind("1 reference cycle through Node(A):", 0) == 0);
  b->ref = nullptr;  // let the test end without garbage
}

TEST_CASE("e07: every elementary cycle through the object and only those",
          "[exercise][e07][gc]") {
  // A -> B -> A, A -> C -> B -> A, A -> A, and D -> E -> D which does not pass through A.
  auto a = memlens::make<Node>("A");
  auto b = memlens::make<Node>("B");
  auto c = memlens::make<Node>("C");
  auto d = memlens::make<Node>("D");
  auto e = memlens::make<Node>("E");
  a->children = {b, c, a};
  b->ref = a;
  c->ref = b;
  a->ref = d;  // D is reachable from A but cannot reach A back
  d->ref = e;
  e->ref = d;
  memlens::CircularReferenceDetector detector;
  auto cycles = detector.find_cycles(a);
  std::vector<std::vector<std::string>> found;
  for (const auto& cycle : cycles) found.push_back(names(cycle));
  std::sort(found.begin(), found.end());
  CHECK(found == std::vector<std::vector<std::string>>{
                     {"Node(A)"}, {"Node(A)", "Node(B)"}, {"Node(A)", "Node(C)", "Node(B)"}});
  CHECK(detector.find_cycles(d).size() == 1);
  CHECK(detector.find_cycles(memlens::make<Node>("lonely")).empty());
  CHECK(detector.report({}) == "No reference cycles found.\n");

  const std::string dot = detector.to_dot(cycles);
  CHECK(dot.rfind("digraph cycles {", 0) == 0);
  CHECK(dot.find("label=\"Node(A)\"") != std::string::npos);
  CHECK(dot.find("label=\"children\"") != std::string::npos);
  CHECK(dot.find("Node(D)") == std::string::npos);
  a->children.clear();
  a->ref = nullptr;
  d->ref = nullptr;
}

TEST_CASE("e07: max_cycles bounds the search on a dense graph", "[exercise][e07][gc]") {
  std::vector<memlens::Ref<Node>> nodes;
  for (int i = 0; i < 12; ++i) nodes.push_back(memlens::make<Node>(std::to_string(i)));
  for (auto& n : nodes) n->children = nodes;  // complete graph: ~10^8 cycles through node 0
  memlens::CircularReferenceDetector detector;
  CHECK(detector.find_cycles(nodes[0], 50).size() == 50);
  CHECK_THROWS_AS(detector.find_cycles(nodes[0], 0), memlens::ValueError);
  CHECK_THROWS_AS(detector.find_cycles(memlens::Ref<Node>()), memlens::ValueError);
  for (auto& n : nodes) n->children.clear();
}

TEST_CASE("e07: a 100000-node ring is one cycle found without deep recursion",
          "[exercise][e07][gc]") {
  auto first = memlens::make<Node>("0");
  Node* last = first.get();
  for (int i = 1; i < 100'000; ++i) {
    last->ref = memlens::make<Node>(std::to_string(i));
    last = last->ref.get();
  }
  last->ref = first;
  memlens::CircularReferenceDetector detector;
  auto cycles = detector.find_cycles(first);
  REQUIRE(cycles.size() == 1);
  CHECK(cycles[0].size() == 100'000);
  cycles.clear();
  last->ref = nullptr;
}
