// Benchmarks of sys::deep_sizeof: a map of a million elements and a graph of a million objects,
// in elements (or objects) measured per second.
//
// The peer for the graph is the obvious implementation: a std::unordered_set of visited
// objects and an explicit stack over for_each_edge. It shows what the visited set (a bitmap per
// address range, which stays in cache) is worth.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <map>
#include <memlens/gc.hpp>
#include <memlens/sys.hpp>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

constexpr std::size_t million = 1'000'000;

/// A graph node listing its references in memlens_sizeof too: deep_sizeof meets them as
/// Ref<GraphNode> and knows their type statically.
struct GraphNode : memlens::Object {
  memlens::Ref<GraphNode> next;
  memlens::Ref<GraphNode> other;
  void traverse(memlens::Visitor& visit) override { visit(next, other); }
  void memlens_sizeof(memlens::sys::SizeVisitor& size) const { size(next, other); }
};

/// The same node reporting no members: deep_sizeof finds the references through traverse
/// only, and each referent's type through its typeid.
struct TraversedNode : memlens::Object {
  memlens::Ref<TraversedNode> next;
  memlens::Ref<TraversedNode> other;
  void traverse(memlens::Visitor& visit) override { visit(next, other); }
  void memlens_sizeof(memlens::sys::SizeVisitor&) const {}
};

/// A million nodes: a chain through `next` (so all are reachable from the head) and a random
/// `other` edge each, which makes cycles and shared referents.
template <class Node>
memlens::Ref<Node> make_graph(std::size_t n) {
  memlens::gc::disable();
  std::vector<memlens::Ref<Node>> nodes;
  nodes.reserve(n);
  for (std::size_t i = 0; i < n; ++i) nodes.push_back(memlens::make<Node>());
  std::mt19937_64 random(42);
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  for (std::size_t i = 0; i < n; ++i) {
    if (i + 1 < n) nodes[i]->next = nodes[i + 1];
    nodes[i]->other = nodes[pick(random)];
  }
  memlens::gc::enable();
  return nodes.front();
}

template <class Node>
const memlens::Ref<Node>& graph() {
  static const auto* head = new memlens::Ref<Node>(make_graph<Node>(million));  // kept to exit
  return *head;
}

void set_rate(benchmark::State& state, std::size_t items, const char* name) {
  state.counters[name] =
      benchmark::Counter(static_cast<double>(items), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_deep_sizeof_map_int_int(benchmark::State& state) {
  std::map<int, int> map;
  for (int i = 0; i < static_cast<int>(million); ++i) map.emplace_hint(map.end(), i, i);
  for (auto _ : state) benchmark::DoNotOptimize(memlens::sys::deep_sizeof(map));
  state.SetLabel("elements own nothing: no walk, O(1)");
}
BENCHMARK(BM_deep_sizeof_map_int_int)->Unit(benchmark::kMicrosecond);

void BM_deep_sizeof_map_int_string(benchmark::State& state) {
  std::map<int, std::string> map;
  for (int i = 0; i < static_cast<int>(million); ++i) {
    map.emplace_hint(map.end(), i, "a value long enough for the heap " + std::to_string(i));
  }
  for (auto _ : state) benchmark::DoNotOptimize(memlens::sys::deep_sizeof(map));
  set_rate(state, million, "elements/s");
}
BENCHMARK(BM_deep_sizeof_map_int_string)->Unit(benchmark::kMillisecond);

void BM_deep_sizeof_unordered_map_string_vector(benchmark::State& state) {
  std::unordered_map<std::string, std::vector<int>> map;
  map.reserve(million);
  for (std::size_t i = 0; i < million; ++i)
    map.emplace("key " + std::to_string(i), std::vector<int>(i % 8));
  for (auto _ : state) benchmark::DoNotOptimize(memlens::sys::deep_sizeof(map));
  set_rate(state, million, "elements/s");
}
BENCHMARK(BM_deep_sizeof_unordered_map_string_vector)->Unit(benchmark::kMillisecond);

void BM_deep_sizeof_graph(benchmark::State& state) {
  const auto& head = graph<GraphNode>();
  for (auto _ : state) benchmark::DoNotOptimize(memlens::sys::deep_sizeof(head));
  set_rate(state, million, "objects/s");
  state.SetLabel("Refs listed in memlens_sizeof (and in traverse)");
}
BENCHMARK(BM_deep_sizeof_graph)->Unit(benchmark::kMillisecond);

void BM_deep_sizeof_graph_through_traverse(benchmark::State& state) {
  const auto& head = graph<TraversedNode>();
  for (auto _ : state) benchmark::DoNotOptimize(memlens::sys::deep_sizeof(head));
  set_rate(state, million, "objects/s");
  state.SetLabel("Refs found by traverse, types by typeid");
}
BENCHMARK(BM_deep_sizeof_graph_through_traverse)->Unit(benchmark::kMillisecond);

void BM_peer_unordered_set_walk(benchmark::State& state) {
  const auto& head = graph<TraversedNode>();
  for (auto _ : state) {
    std::unordered_set<const memlens::Object*> seen;
    std::vector<memlens::Object*> stack{const_cast<memlens::Object*>(head.object())};
    seen.insert(head.object());
    std::size_t total = 0;
    while (!stack.empty()) {
      memlens::Object* o = stack.back();
      stack.pop_back();
      total += sizeof(TraversedNode) + sizeof(memlens::detail::GcHead);
      memlens::for_each_edge(*o, [&](const memlens::Edge& edge) {
        if (seen.insert(&edge.referent()).second) stack.push_back(&edge.referent());
      });
    }
    benchmark::DoNotOptimize(total);
  }
  set_rate(state, million, "objects/s");
  state.SetLabel("peer: unordered_set + for_each_edge");
}
BENCHMARK(BM_peer_unordered_set_walk)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
