// Everything a user's program may touch, in one translation unit with track_new.hpp and the
// standard containers, so that the strict consumer build instantiates the templates users do.
// Exits 0 only if what it checks holds.
#include <chrono>
#include <cstdio>
#include <deque>
#include <list>
#include <map>
#include <memlens/memlens.hpp>
#include <memlens/track_new.hpp>
#include <memory>
#include <memory_resource>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "strict consumer: failed: %s\n", what);
    ++failures;
  }
}

struct Node : memlens::Object {
  std::string name;
  memlens::Ref<Node> parent;
  std::vector<memlens::Ref<Node>> children;
  std::map<std::string, memlens::Ref<Node>> by_name;
  std::optional<memlens::Ref<Node>> maybe;
  std::variant<int, memlens::Ref<Node>> either;
  std::set<memlens::Ref<Node>> set;
  std::unordered_map<int, std::pair<memlens::Ref<Node>, memlens::Ref<Node>>> pairs;
  memlens::Weak<Node> weak_parent;
  int finalized = 0;

  explicit Node(std::string n = {}) : name(std::move(n)) {}
  void traverse(memlens::Visitor& visit) override {
    visit(memlens::named("parent", parent), children, by_name, maybe, either, set, pairs,
          weak_parent);
  }
  void finalize() override { ++finalized; }
  void memlens_sizeof(memlens::sys::SizeVisitor& size) const {
    size(name, parent, children, by_name, maybe, either, set, pairs);
  }
  void greet() {}
  int answer() const { return 42; }
};

struct Point {
  int x = 0;
  int y = 0;
};

void object_model() {
  auto root = memlens::make<Node>("root");
  auto child = memlens::make<Node>("child");
  child->parent = root;
  root->children.push_back(child);
  root->by_name.emplace("child", child);
  root->maybe = child;
  root->either = child;
  root->set.insert(child);
  root->pairs.emplace(1, std::make_pair(child, root));
  child->weak_parent = root;
  memlens::Ref<memlens::Object> as_object = child;
  expect(memlens::is(as_object, child), "Ref<Derived> converts to Ref<Object>");
  expect(memlens::dynamic_ref_cast<Node>(as_object) == child, "dynamic_ref_cast");
  expect(memlens::static_ref_cast<Node>(as_object) == child, "static_ref_cast");
  expect(memlens::id(child) != 0, "id");
  expect(memlens::type_name(child).find("Node") != std::string::npos, "type_name");
  expect(fmt::format("{}", child).find("Node object at 0x") != std::string::npos, "fmt of a Ref");
  expect(memlens::repr(child) == fmt::format("{}", child), "repr");
  expect(memlens::sys::getrefcount(root) == 3, "getrefcount");
  std::size_t edges = 0;
  memlens::for_each_edge(*root, [&](const memlens::Edge&) { ++edges; });
  expect(edges == 7, "for_each_edge");
  auto point = memlens::make<Point>(1, 2);
  expect(point->x + point->y == 3, "make of an aggregate");
  auto numbers = memlens::make<std::vector<int>>(3, 7);
  expect(numbers->size() == 3 && (*numbers)[2] == 7, "make of a value type");
  memlens::Weak<Node> watch = child;
  root.reset();
  child.reset();
  as_object.reset();
  expect(!watch.expired(), "a cycle outlives its names");
  expect(memlens::gc::collect() == 2, "gc::collect frees the cycle");
  expect(watch.expired() && !watch.lock(), "a weak reference to a collected object");
}

void weak_references() {
  auto a = memlens::make<Node>("a");
  int called = 0;
  memlens::Weak<Node> with_callback(a, [&called] { ++called; });
  memlens::weakref::ref<Node> plain = a;
  expect(memlens::weakref::getweakrefcount(a) == 2, "getweakrefcount");
  expect(memlens::weakref::getweakrefs(a).size() == 2, "getweakrefs");
  memlens::WeakValueDictionary<std::string, Node> values;
  values.insert_or_assign("a", a);
  memlens::WeakKeyDictionary<Node, std::string> keys;
  keys.insert_or_assign(a, std::string("value"));
  memlens::WeakSet<Node> set;
  set.add(a);
  memlens::WeakMethod greet(a, &Node::greet);
  memlens::WeakMethod answer(a, &Node::answer);
  expect(greet(), "WeakMethod on a void method");
  expect(answer() == std::optional<int>(42), "WeakMethod on a method with a result");
  int finalized = 0;
  memlens::weakref::finalize on_death(a, [&finalized] { ++finalized; });
  expect(values.size() == 1 && keys.size() == 1 && set.size() == 1, "weak containers hold a");
  std::size_t seen = 0;
  for (const auto& entry : values) seen += entry.second ? 1u : 0u;
  for (const auto& member : set) seen += member ? 1u : 0u;
  expect(seen == 2, "weak containers iterate");
  a.reset();
  expect(called == 1 && finalized == 1, "callbacks and finalize run once");
  expect(plain.expired() && values.size() == 0 && keys.size() == 0 && set.size() == 0,
         "weak containers forget the dead");
  expect(!greet() && !answer(), "WeakMethod of a dead object");
}

void collector() {
  memlens::gc::disable();
  memlens::gc::set_threshold(700, 10, 10);
  auto [t0, t1, t2] = memlens::gc::get_threshold();
  expect(t0 == 700 && t1 == 10 && t2 == 10, "thresholds");
  auto [c0, c1, c2] = memlens::gc::get_count();
  static_cast<void>(c0 + c1 + c2);
  auto kept = memlens::make<Node>("kept");
  expect(memlens::gc::is_tracked(kept) && !memlens::gc::is_finalized(kept), "is_tracked");
  expect(!memlens::gc::get_objects(0).empty() && !memlens::gc::get_objects().empty(),
         "get_objects");
  auto holder = memlens::make<Node>("holder");
  holder->children.push_back(kept);
  expect(memlens::gc::get_referrers(kept).size() == 1, "get_referrers");
  expect(memlens::gc::get_referents(holder).size() == 1, "get_referents");
  std::size_t phases = 0;
  memlens::gc::callbacks().push_back(
      [&phases](std::string_view, const memlens::gc::CallbackInfo& info) {
        phases += info.generation >= 0 ? 1 : 0;
      });
  memlens::gc::collect(0);
  memlens::gc::callbacks().clear();
  expect(phases == 2, "gc callbacks see start and stop");
  expect(memlens::gc::get_stats()[0].collections >= 1, "get_stats");
  memlens::gc::freeze();
  expect(memlens::gc::get_freeze_count() >= 2, "freeze");
  memlens::gc::unfreeze();
  memlens::gc::set_debug(memlens::gc::DEBUG_SAVEALL);
  memlens::gc::set_debug(0);
  expect(memlens::gc::garbage().empty(), "garbage");
  memlens::gc::enable();
  expect(memlens::gc::isenabled(), "enable");
}

void sizes_and_sys() {
  std::vector<std::string> strings(10, std::string(100, 'x'));
  std::map<int, std::string> map{{1, std::string(40, 'y')}};
  std::deque<int> deque(100, 1);
  std::list<double> list(10, 1.0);
  std::unordered_map<std::string, std::vector<int>> table{{"k", {1, 2, 3}}};
  auto shared = std::make_shared<std::vector<int>>(10);
  std::unique_ptr<std::string> unique = std::make_unique<std::string>(50, 'z');
  std::tuple<std::string, std::optional<std::vector<int>>> tuple{"t", std::vector<int>(4)};
  expect(memlens::sys::getsizeof(strings) >= sizeof(strings) + 10 * sizeof(std::string),
         "getsizeof of a vector");
  expect(memlens::sys::deep_sizeof(strings) > memlens::sys::getsizeof(strings), "deep_sizeof");
  expect(memlens::sys::footprint(map) >= memlens::sys::deep_sizeof(map), "footprint");
  std::size_t all = memlens::sys::deep_sizeof(deque) + memlens::sys::deep_sizeof(list) +
                    memlens::sys::deep_sizeof(table) + memlens::sys::deep_sizeof(shared) +
                    memlens::sys::deep_sizeof(unique) + memlens::sys::deep_sizeof(tuple);
  expect(all > 0, "deep_sizeof of the std containers");
  auto node = memlens::make<Node>("sized");
  expect(memlens::sys::deep_sizeof(node) >= sizeof(Node), "deep_sizeof of a Ref");
  expect(memlens::is(memlens::sys::intern("hello"), memlens::sys::intern("hello")), "intern");
  expect(memlens::is(memlens::integer(256), memlens::integer(256)), "small integers");
  expect(!memlens::is(memlens::integer(1000), memlens::integer(1000)), "large integers");
  auto previous = memlens::sys::set_unraisablehook(nullptr);
  memlens::sys::set_unraisablehook(previous);
}

void threads() {
  auto shared = memlens::make<Node>("shared");
  std::thread worker(memlens::with_heap_lock([shared] { shared->finalized += 0; }));
  worker.join();
  memlens::HeapLock lock;
  expect(memlens::sys::getrefcount(shared) == 1, "with_heap_lock drops its captures");
}

void tracing() {
  namespace tm = memlens::tracemalloc;
  tm::start(8);
  auto before = tm::take_snapshot();
  std::vector<std::string> kept;
  for (int i = 0; i < 100; ++i) kept.emplace_back(100, 'x');
  std::vector<int, tm::Allocator<int>> traced(1000);
  tm::TracingResource resource;
  std::pmr::vector<int> pmr_vector(&resource);
  pmr_vector.resize(100);
  int manual = 0;
  tm::track(&manual, 64, 7);
  auto [current, peak] = tm::get_traced_memory();
  expect(current >= 100 * 101 && peak >= current, "get_traced_memory");
  auto after = tm::take_snapshot();
  expect(!after.statistics("lineno").empty() && !after.statistics("filename").empty() &&
             !after.statistics("traceback").empty() && !after.compare_to(before, "lineno").empty(),
         "statistics and compare_to");
  auto filtered = after.filter_traces({tm::Filter(true, "*"), tm::DomainFilter(false, 7)});
  expect(filtered.traces().size() < after.traces().size(), "filter_traces");
  std::string shown = fmt::format("{}", after.statistics("lineno").front()) +
                      fmt::format("{}", after.compare_to(before, "lineno").front()) +
                      after.traces().front().traceback.format().front();
  expect(!shown.empty(), "formatters");
  expect(tm::get_object_traceback(kept.data()).has_value(), "get_object_traceback");
  expect(tm::untrack(&manual, 7), "untrack");
  expect(tm::get_traceback_limit() == 8 && tm::get_tracemalloc_memory() > 0, "limits");
  tm::reset_peak();
  tm::clear_traces();
  tm::stop();
  expect(!tm::is_tracing() && tm::get_traced_memory().current == 0, "stop");
}

void tools() {
  memlens::WeakCache<std::string, Node> cache;
  auto cached = memlens::make<Node>("cached");
  cache.set("key", cached);
  expect(cache.get("key") == cached && cache.size() == 1, "WeakCache");
  memlens::TTLWeakCache<std::string, Node> ttl_cache;
  ttl_cache.set("key", cached, std::chrono::minutes(1));
  expect(ttl_cache.get("key") == cached && ttl_cache.size() == 1 && ttl_cache.stats().hits == 1,
         "TTLWeakCache");
  auto a = memlens::make<Node>("a");
  auto b = memlens::make<Node>("b");
  a->parent = b;
  b->parent = a;
  memlens::CircularReferenceDetector detector;
  auto cycles = detector.find_cycles(a);
  expect(cycles.size() == 1 && !detector.report(cycles).empty() && !detector.to_dot(cycles).empty(),
         "CircularReferenceDetector");
  a->parent = nullptr;
  std::size_t reported = 0;
  auto tracked = memlens::memory_tracker(
      [] { return std::vector<int>(1000); },
      [&reported](const memlens::MemoryUsage& usage) { reported = usage.peak; }, "tracked");
  // Kept beyond the call: a vector built and dropped unseen may never be allocated at all.
  static std::vector<int> result;
  result = tracked();
  expect(result.size() == 1000 && reported >= 4000, "memory_tracker");
  memlens::MemoryProfiler profiler;
  profiler.start();
  std::vector<std::string> data(100, std::string(64, 'p'));
  profiler.snapshot("data");
  auto report = profiler.stop();
  expect(!fmt::format("{}", report).empty(), "MemoryProfiler");
}

}  // namespace

int main() {
  object_model();
  weak_references();
  collector();
  sizes_and_sys();
  threads();
  tracing();
  tools();
  return failures == 0 ? 0 : 1;
}
