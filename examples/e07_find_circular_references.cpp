// Exercise 7: find circular references. CircularReferenceDetector lists every reference cycle
// through an object, as text and as a Graphviz graph.
#include <fmt/core.h>

#include <memlens/memlens.hpp>
#include <memlens/tools/circular_reference_detector.hpp>

namespace {
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
}  // namespace

int main() {
  memlens::CircularReferenceDetector detector;

  auto node_a = memlens::make<Node>("A");
  auto node_b = memlens::make<Node>("B");
  node_a->ref = node_b;
  node_b->ref = node_a;
  fmt::print("The seed's example:\n{}\n", detector.report(detector.find_cycles(node_a)));

  // A richer graph: a tree with a parent link, a self-reference and a detour.
  auto root = memlens::make<Node>("root");
  auto left = memlens::make<Node>("left");
  auto right = memlens::make<Node>("right");
  root->children = {left, right};
  left->ref = root;          // child -> parent
  right->children = {left};  // a detour through `right`
  root->ref = root;          // self-reference
  auto cycles = detector.find_cycles(root);
  fmt::print("A tree with back links:\n{}\n", detector.report(cycles));
  fmt::print("As Graphviz (dot -Tpng):\n{}", detector.to_dot(cycles));

  // Leave no garbage behind: break the cycles, or let the collector do it.
  node_b->ref = nullptr;
  root->ref = nullptr;
  left->ref = nullptr;
  fmt::print("\nAfter breaking the back links: {}",
             detector.report(detector.find_cycles(root)));
}
