// Every name of memlens' public contract that exists, reached with nothing but
// <memlens/memlens.hpp>, spelled as users spell them (Python's module-qualified names
// included: memlens::weakref::WeakValueDictionary). Compiled under the strict consumer's flags;
// exits 0 only if what it checks at run time holds.
#include <unistd.h>

#include <any>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memlens/memlens.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("contract: failed: %s\n", what);
    ++failures;
  }
}

struct Node : memlens::Object {
  memlens::Ref<Node> next;
  int finalized = 0;
  void traverse(memlens::Visitor& visit) override { visit(next); }
  void finalize() override { ++finalized; }
  void memlens_sizeof(memlens::sys::SizeVisitor& size) const { size(next); }
  void poke() {}
  int value() const { return 7; }
};

/// A clock that moves only when told: what TTLWeakCache's constructor with a clock is for.
struct HandClock {
  using duration = std::chrono::milliseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<HandClock>;
  const duration* elapsed = nullptr;
  time_point now() const { return time_point(*elapsed); }
};

static_assert(std::is_base_of_v<memlens::Error, memlens::ReferenceError>);
static_assert(std::is_base_of_v<memlens::Error, memlens::ValueError>);
static_assert(std::is_base_of_v<memlens::Error, memlens::TypeError>);
static_assert(std::is_base_of_v<std::runtime_error, memlens::Error>);
static_assert(std::is_same_v<memlens::weakref::ref<Node>, memlens::Weak<Node>>);
static_assert(std::is_same_v<memlens::weakref::WeakValueDictionary<int, Node>,
                             memlens::WeakValueDictionary<int, Node>>);
static_assert(std::is_same_v<memlens::weakref::WeakKeyDictionary<Node, int>,
                             memlens::WeakKeyDictionary<Node, int>>);
static_assert(std::is_same_v<memlens::weakref::WeakSet<Node>, memlens::WeakSet<Node>>);
static_assert(std::is_same_v<memlens::weakref::WeakMethod<Node, void (Node::*)()>,
                             memlens::WeakMethod<Node, void (Node::*)()>>);

void object_model() {
  memlens::Ref<Node> a = memlens::make<Node>();
  memlens::Ref<Node> b = a;
  expect(a == b && memlens::is(a, b) && memlens::id(a) == memlens::id(b), "identity");
  memlens::Ref<memlens::Object> base = a;
  expect(base.get() == static_cast<memlens::Object*>(a.get()), "Ref<Derived> to Ref<Base>");
  memlens::Ref<Node> adopted(a.get());
  expect(memlens::sys::getrefcount(a) == 4, "Ref<T>(T*) adds a reference");
  expect(std::hash<memlens::Ref<Node>>{}(a) == std::hash<memlens::Ref<Node>>{}(b), "std::hash");
  expect(fmt::format("{}", a).find("object at 0x") != std::string::npos, "fmt formatter");
  auto values = memlens::make<std::vector<int>>(std::size_t{3}, 7);
  expect(values->size() == 3, "make of a value type");
  std::size_t visited = 0;
  a->next = b;
  struct Counter final : memlens::Visitor {
    std::size_t* n;
    explicit Counter(std::size_t* count) : n(count) {}
    void visit_edge(const memlens::Edge&) override { ++*n; }
  } counter(&visited);
  memlens::traverse(counter, a->next);  // a member, as a type's traverse passes it
  expect(visited == 1, "memlens::traverse");
  a->next.reset();
  b = nullptr;
  adopted.reset();
  base.reset();
  expect(memlens::sys::getrefcount(a) == 1, "reset and = nullptr drop references");
}

void sys() {
  std::vector<int> v(10);
  expect(memlens::sys::getsizeof(v) == sizeof(v) + 10 * sizeof(int), "getsizeof");
  expect(memlens::sys::deep_sizeof(v) == memlens::sys::getsizeof(v), "deep_sizeof");
  expect(memlens::is(memlens::sys::intern("x"), memlens::sys::intern("x")), "intern");
  expect(memlens::is(memlens::integer(-5), memlens::integer(-5)), "integer");
}

void weak_references() {
  auto a = memlens::make<Node>();
  int calls = 0;
  memlens::weakref::ref<Node> watch(a, [&calls] { ++calls; });
  expect(watch.lock() == a && watch() == a && !watch.expired(), "Weak");
  expect(memlens::weakref::getweakrefcount(a) == 1, "getweakrefcount");
  expect(memlens::weakref::getweakrefs(a).size() == 1, "getweakrefs");
  memlens::weakref::WeakValueDictionary<int, Node> by_id;
  by_id.insert_or_assign(1, a);
  expect(by_id.get(1) == a && by_id.contains(1) && by_id.size() == 1, "WeakValueDictionary");
  for (const auto& entry : by_id) expect(entry.second == a, "WeakValueDictionary iteration");
  memlens::weakref::WeakKeyDictionary<Node, int> extra;
  extra.insert_or_assign(a, 5);
  expect(extra.get(a) == std::optional<int>(5) && extra.contains(a) && extra.size() == 1,
         "WeakKeyDictionary");
  memlens::weakref::WeakSet<Node> members;
  members.add(a);
  for (const auto& member : members) expect(member == a, "WeakSet iteration");
  expect(members.contains(a) && members.size() == 1, "WeakSet");
  memlens::weakref::WeakMethod poke(a, &Node::poke);
  memlens::weakref::WeakMethod value(a, &Node::value);
  expect(poke() && value() == std::optional<int>(7), "WeakMethod");
  int finalized = 0;
  memlens::weakref::finalize on_death(a, [&finalized] { ++finalized; });
  expect(on_death.alive(), "finalize");
  memlens::finalize detached(a, [] {});
  expect(detached.detach().has_value(), "finalize::detach");
  a.reset();
  expect(calls == 1 && finalized == 1 && watch.expired(), "callbacks ran");
  expect(!on_death() && !by_id.erase(1) && !extra.erase(a) && by_id.size() == 0, "dead entries");
  members.discard(a);
}

void collector() {
  namespace gc = memlens::gc;
  gc::disable();
  expect(!gc::isenabled(), "gc::disable");
  auto [c0, c1, c2] = gc::get_count();
  static_cast<void>(c0 + c1 + c2);
  const auto thresholds = gc::get_threshold();
  gc::set_threshold(std::get<0>(thresholds), std::get<1>(thresholds), std::get<2>(thresholds));
  auto a = memlens::make<Node>();
  a->next = a;
  expect(gc::is_tracked(a) && !gc::is_finalized(a), "is_tracked");
  expect(gc::get_referrers(a).size() == 1 && gc::get_referents(a).size() == 1, "referrers");
  expect(!gc::get_objects().empty() && !gc::get_objects(0).empty(), "get_objects");
  gc::CallbackInfo last;
  gc::callbacks().push_back([&last](std::string_view phase, const gc::CallbackInfo& info) {
    if (phase == "stop") last = info;
  });
  a.reset();
  gc::set_debug(gc::DEBUG_SAVEALL);
  expect(gc::collect(2) == 1 && gc::garbage().size() == 1, "DEBUG_SAVEALL");
  expect(last.generation == 2 && last.collected == 1 && last.uncollectable == 0, "callbacks");
  gc::set_debug(0);
  memlens::dynamic_ref_cast<Node>(gc::garbage().front())->next.reset();
  gc::garbage().clear();
  gc::callbacks().clear();
  const auto stats = gc::get_stats();
  expect(stats[2].collections >= 1 && stats[2].collected >= 1 && stats[2].uncollectable == 0,
         "get_stats");
  gc::freeze();
  static_cast<void>(gc::get_freeze_count());
  gc::unfreeze();
  gc::enable();
}

void tracing() {
  namespace tm = memlens::tracemalloc;
  tm::start(4);
  expect(tm::is_tracing() && tm::get_traceback_limit() == 4, "start");
  std::vector<int, tm::Allocator<int>> traced(100);
  tm::TracingResource resource;
  std::pmr::vector<int> pooled(&resource);
  pooled.resize(10);
  int slot = 0;
  tm::track(&slot, 8, 5);
  auto node = memlens::make<Node>();
  auto [current, peak] = tm::get_traced_memory();
  expect(current >= 440 && peak >= current, "get_traced_memory");
  tm::Snapshot snapshot = tm::take_snapshot();
  const std::vector<tm::Trace>& traces = snapshot.traces();
  expect(!traces.empty(), "Snapshot::traces");
  for (const char* key : {"lineno", "filename", "traceback"}) {
    std::vector<tm::Statistic> stats = snapshot.statistics(key);
    expect(!stats.empty() && stats.front().size > 0 && stats.front().count > 0, key);
  }
  expect(!snapshot.statistics("lineno", true).empty(), "cumulative statistics");
  std::vector<tm::StatisticDiff> diffs = snapshot.compare_to(tm::Snapshot(), "lineno");
  expect(!diffs.empty() && diffs.front().size_diff > 0 && diffs.front().count_diff > 0 &&
             diffs.front().size > 0 && diffs.front().count > 0,
         "compare_to");
  tm::Snapshot filtered = snapshot.filter_traces(
      {tm::Filter(true, "*", std::nullopt, false), tm::DomainFilter(false, 5)});
  expect(filtered.traces().size() + 1 == traces.size(), "filter_traces");
  const tm::Traceback& traceback = traces.front().traceback;
  const tm::Frame& frame = traceback.front();
  std::size_t frames = 0;
  for (const tm::Frame& f : traceback) frames += f.lineno >= 0 ? 1u : 0u;
  expect(frames == traceback.size() && !frame.filename.empty(), "Traceback and Frame");
  expect(
      !fmt::format("{} {} {}", traces.front(), snapshot.statistics("lineno").front(), diffs.front())
           .empty(),
      "formatters");
  const std::string path =
      (std::filesystem::temp_directory_path() / ("contract-" + std::to_string(getpid()))).string();
  snapshot.dump(path);
  expect(tm::Snapshot::load(path).traces().size() == traces.size(), "dump and load");
  std::filesystem::remove(path);
  expect(tm::get_object_traceback(node).has_value(), "get_object_traceback");
  expect(tm::untrack(&slot, 5) && tm::get_tracemalloc_memory() > 0, "untrack");
  tm::reset_peak();
  tm::clear_traces();
  tm::stop();
  // Sampled tracing: start(nframe, TraceOptions).
  const tm::TraceOptions options{.sample_bytes = 4096};
  tm::start(1, options);
  std::vector<char, tm::Allocator<char>> sampled(std::size_t{1} << 20);  // p(1 MiB) = 1
  expect(tm::is_tracing() && tm::get_traced_memory().current >= (std::size_t{1} << 19),
         "start(n, options)");
  tm::stop();
  expect(tm::get_traced_memory().current == 0 && tm::get_traced_memory().peak == 0, "stop");
  static_cast<void>(tm::is_hooked());
}

void tools() {
  memlens::WeakCache<std::string, Node> cache;
  auto a = memlens::make<Node>();
  cache.set("a", a);
  expect(cache.get("a") == a && cache.size() == 1, "WeakCache");
  memlens::TTLWeakCache<std::string, Node> ttl_cache(std::chrono::seconds(5));
  ttl_cache.set("a", a);
  expect(ttl_cache.get("a") == a && ttl_cache.size() == 1, "TTLWeakCache");
  std::chrono::milliseconds elapsed{0};
  memlens::TTLWeakCache<std::string, Node, HandClock> timed(std::chrono::seconds(5),
                                                            HandClock{&elapsed});
  timed.set("a", a, std::chrono::seconds(10));
  elapsed = std::chrono::seconds(10);
  expect(!timed.get("a") && timed.size() == 0, "TTLWeakCache with a clock");
  const memlens::TTLCacheStats ttl_stats = timed.stats();
  expect(ttl_stats.hits == 0 && ttl_stats.misses == 1 && ttl_stats.evictions == 1 &&
             ttl_stats.expired == 1 && ttl_stats.collected == 0,
         "TTLCacheStats");
  bool refused = false;
  try {
    timed.set("a", a, std::chrono::milliseconds(0));
  } catch (const memlens::ValueError&) {
    refused = true;
  }
  expect(refused, "TTLWeakCache refuses a ttl of 0");
  auto b = memlens::make<Node>();
  a->next = b;
  b->next = a;
  memlens::CircularReferenceDetector detector;
  std::vector<memlens::Cycle> cycles = detector.find_cycles(a, 10);
  expect(cycles.size() == 1 && cycles.front().size() == 2 && cycles.front().front() == a,
         "CircularReferenceDetector");
  for (const memlens::Ref<memlens::Object>& member : cycles.front()) {
    expect(member != nullptr, "Cycle");
  }
  expect(!detector.report(cycles).empty() && !detector.to_dot(cycles).empty(), "report");
  a->next.reset();
  std::size_t reports = 0;
  auto sink = [&reports](const memlens::MemoryUsage&) { ++reports; };
  memlens::memory_tracker([] {}, sink, "tracked")();
  { memlens::MemoryTrackerScope scope("scope", sink); }
  expect(reports == 2, "memory_tracker and MemoryTrackerScope");
  memlens::MemoryProfiler profiler;
  profiler.start();
  profiler.snapshot("one");
  expect(profiler.stop().growth.size() == 1, "MemoryProfiler");
}

// Object accounting by type and the leak detector, as pinned.
struct Leaky : memlens::Object {
  int payload = 0;
};
void leaks() {
  std::vector<memlens::sys::TypeStats> stats = memlens::sys::type_stats();
  expect(!stats.empty() && !stats.front().type_name.empty() && stats.front().created >= stats.front().count &&
             stats.front().bytes > 0,
         "sys::type_stats");
  memlens::LeakDetectorOptions options;
  options.nframe = 16;
  options.min_snapshots = 3;
  options.collect_first = true;
  memlens::MemoryLeakDetector detector(options);
  detector.start_monitoring();
  std::vector<memlens::Ref<Leaky>> kept;
  for (int round = 0; round < 3; ++round) {
    const memlens::LeakSnapshot& snapshot = detector.take_snapshot("round");
    expect(!snapshot.types.empty(), "LeakSnapshot");
    kept.push_back(memlens::make<Leaky>());
  }
  detector.take_snapshot();
  const memlens::LeakSnapshot copy = detector.snapshots().back();
  const memlens::SnapshotComparison cmp =
      memlens::MemoryLeakDetector::compare_snapshots(detector.snapshots().front(), copy);
  const std::vector<memlens::TypeGrowth>& by_type = cmp.by_type;
  const std::vector<memlens::tracemalloc::StatisticDiff>& by_site = cmp.by_site;
  expect(!by_type.empty() && by_type.front().count_diff == 3 &&
             by_type.front().count_after == by_type.front().count_before + 3 &&
             by_type.front().size_diff > 0,
         "compare_snapshots");
  static_cast<void>(by_site);
  std::vector<memlens::SuspectedLeak> found = detector.find_leaks();
  expect(!found.empty() && found.front().count_growth == 2 && found.front().size_growth > 0,
         "find_leaks");
  const memlens::tracemalloc::Traceback& site = found.front().site;
  const std::vector<memlens::PathStep>& path = found.front().retaining_path;
  static_cast<void>(site);
  for (const memlens::PathStep& step : path) expect(step.object != nullptr && step.edge.size() < 100, "PathStep");
  found.clear();
  expect(!detector.report().empty(), "report");
  detector.stop_monitoring();
}

// The advanced profiler, as pinned.
void profiling() {
  memlens::ProfilerOptions options;
  options.nframe = 16;
  options.sample_interval = std::chrono::milliseconds(10);
  options.sample_bytes = 0;
  memlens::AdvancedMemoryProfiler profiler(options);
  profiler.start();
  const memlens::ProfileSnapshot& first = profiler.take_snapshot("first");
  std::vector<memlens::Ref<Leaky>> kept;
  for (int round = 0; round < 3; ++round) {
    kept.push_back(memlens::make<Leaky>());
    profiler.take_snapshot();
  }
  profiler.stop();
  expect(first.label == "first" && profiler.snapshots().size() == 4, "take_snapshot");
  std::vector<memlens::Growth> growth = profiler.analyze_growth();
  expect(!growth.empty() && !growth.front().label.empty() && growth.front().size_diff > 0 &&
             growth.front().count_diff > 0,
         "analyze_growth");
  std::vector<memlens::SuspectedLeak> leaks = profiler.detect_leaks();
  expect(!leaks.empty(), "detect_leaks");
  leaks.clear();
  std::vector<memlens::Suggestion> suggestions = profiler.suggest_optimizations();
  for (const memlens::Suggestion& s : suggestions) {
    expect(!s.rule.empty() && !s.message.empty() && !s.site.empty() && s.estimated_saving > 0,
           "Suggestion");
  }
  const std::vector<memlens::TimelinePoint> points = profiler.timeline();
  expect(points.size() >= 6 && points.back().elapsed >= points.front().elapsed &&
             points.back().traced_peak >= points.back().traced_current && points.back().rss > 0,
         "timeline");
  expect(!profiler.sparkline(20).empty(), "sparkline");
  char dir[] = "/tmp/memlens_contract_XXXXXX";
  if (mkdtemp(dir) == nullptr) return expect(false, "mkdtemp");
  const std::filesystem::path report = std::filesystem::path(dir) / "report.html";
  const std::filesystem::path timeline = std::filesystem::path(dir) / "timeline.svg";
  profiler.generate_report(report);
  profiler.plot_memory_timeline(timeline);
  expect(std::filesystem::file_size(report) > 0 && std::filesystem::file_size(timeline) > 0,
         "generate_report and plot_memory_timeline");
  std::filesystem::remove_all(dir);
}

}  // namespace

void caches() {
  // The seed's AdvancedCache(max_memory_mb=50, eviction_policy='LRU', use_weak_refs=True).
  memlens::AdvancedCache<std::string, memlens::Ref<Node>> weak(50, memlens::EvictionPolicy::LRU,
                                                              true);
  auto kept = memlens::make<Node>();
  weak.set("kept", kept);
  weak.set("gone", memlens::make<Node>(), std::chrono::seconds(60));
  expect(weak.get("kept") == std::optional<memlens::Ref<Node>>(kept) && !weak.get("gone"),
         "AdvancedCache with weak values");
  memlens::AdvancedCache<std::string, std::string> cache(1, memlens::EvictionPolicy::LFU);
  for (auto policy : {memlens::EvictionPolicy::LRU, memlens::EvictionPolicy::LFU,
                      memlens::EvictionPolicy::FIFO}) {
    memlens::AdvancedCache<int, int> each(1, policy);
    each.set(1, 1);
    expect(each.get(1) == 1, "EvictionPolicy");
  }
  cache.set("a", "1");
  expect(cache.get_or_set("b", [] { return std::string("2"); }) == "2", "get_or_set");
  expect(cache.erase("a") && !cache.erase("a"), "AdvancedCache::erase");
  expect(cache.evict_if_needed() == 0, "evict_if_needed");
  const memlens::CacheStats stats = cache.stats();
  expect(stats.hits == 0 && stats.misses == 1 && stats.evictions == 0 &&
             stats.expirations == 0 && stats.entries == 1 &&
             stats.memory_bytes == cache.current_memory_usage() &&
             stats.max_memory_bytes == 1048576 && stats.hit_rate() == 0.0,
         "CacheStats");
  const auto path = std::filesystem::temp_directory_path() /
                    ("memlens_contract_cache_" + std::to_string(::getpid()) + ".bin");
  cache.save_to_disk(path);
  memlens::AdvancedCache<std::string, std::string> loaded;
  loaded.load_from_disk(path);
  std::filesystem::remove(path);
  expect(loaded.get("b") == std::string("2"), "save_to_disk and load_from_disk");
  cache.clear();
  expect(cache.current_memory_usage() == 0, "AdvancedCache::clear");
  bool refused = false;
  try {
    memlens::AdvancedCache<int, std::string> not_weak(1, memlens::EvictionPolicy::LRU, true);
  } catch (const memlens::ValueError&) {
    refused = true;
  }
  expect(refused, "use_weak_refs needs Ref values");
}

void pool() {
  struct Connection {
    bool connected = true;
  };
  memlens::PoolOptions<Connection> options;
  options.health_check = [](const Connection& c) { return c.connected; };
  options.validate_on_acquire = true;
  options.validate_on_release = false;
  options.idle_timeout = std::chrono::milliseconds(1000);
  memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 1, 2,
                                       options);
  memlens::Lease<Connection> lease = pool.acquire(std::chrono::milliseconds(10));
  expect(lease->connected && (*lease).connected && lease.get() != nullptr, "Lease");
  std::optional<memlens::Lease<Connection>> second = pool.try_acquire();
  expect(second.has_value() && !pool.try_acquire(), "ObjectPool::try_acquire");
  bool timed_out = false;
  try {
    pool.acquire(std::chrono::milliseconds(1));
  } catch (const memlens::TimeoutError&) {
    timed_out = true;
  }
  expect(timed_out, "TimeoutError");
  second->invalidate();
  second.reset();
  pool.release(std::move(lease));
  expect(pool.health_check(Connection{}) && pool.shrink() == 0, "health_check and shrink");
  const memlens::PoolStats stats = pool.stats();
  expect(stats.size == 1 && stats.idle == 1 && stats.in_use == 0 && stats.created == 2 &&
             stats.destroyed == 1 && stats.acquires == 2 && stats.waits == 1 &&
             stats.timeouts == 1 && stats.failed_health_checks == 0,
         "PoolStats");
  bool refused = false;
  try {
    memlens::ObjectPool<Connection> bad([] { return std::make_unique<Connection>(); }, 3, 2);
  } catch (const memlens::ValueError&) {
    refused = true;
  }
  expect(refused, "min_size > max_size");
}

struct Subscriber : memlens::Object {
  int received = 0;
  void handle(const std::any& event) { received += std::any_cast<int>(event); }
};

void on_event(const std::any&) {}

void events() {
  memlens::WeakEventSystem<> events;
  auto listener = memlens::make<Subscriber>();
  auto owner = memlens::make<Subscriber>();
  const memlens::SubscriptionId id =
      events.subscribe("update", listener, &Subscriber::handle, 1,
                       memlens::WeakEventSystem<>::Filter([](const std::any&) { return true; }));
  events.subscribe("update", memlens::WeakMethod(owner, &Subscriber::handle));
  events.subscribe("update", &on_event, 0);
  events.subscribe("update", owner, [](Subscriber& self, const std::any&) { self.received += 10; });
  expect(events.publish("update", std::any(2)) == 4 && listener->received == 2 &&
             owner->received == 12,
         "WeakEventSystem::publish");
  expect(events.listener_count("update") == 4, "listener_count");
  expect(events.unsubscribe("update", id) && !events.unsubscribe("update", id), "unsubscribe");
  owner = nullptr;
  expect(events.cleanup() == 2 && events.listener_count("update") == 1, "cleanup");
}

void dataset() {
  // The pinned signatures, with a file of three rows.
  const auto path = std::filesystem::temp_directory_path() /
                    ("memlens_contract_" + std::to_string(::getpid()) + ".csv");
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fputs("name,price\n\"a, b\",1.5\nc,2\nd,\n", f);
    std::fclose(f);
  }
  const memlens::ProcessorOptions designated{.threads = 2, .use_mmap = true};  // -Wextra-clean
  expect(designated.threads == 2 && designated.memory_budget == std::size_t{64} << 20 &&
             !designated.progress,
         "ProcessorOptions defaults");
  memlens::ProcessorOptions options;
  options.threads = 1;
  options.use_mmap = false;
  options.delimiter = ',';
  options.memory_budget = std::size_t{64} << 20;
  options.on_bad_row = memlens::BadRowAction::raise;
  memlens::Progress last;
  options.progress = [&last](const memlens::Progress& p) { last = p; };
  const memlens::DatasetProcessor processor(2, options);
  memlens::ChunkRange results = processor.process_file(path);
  std::vector<std::uint64_t> first_rows;
  for (const memlens::ChunkResult& chunk : processor.process_file(path)) {
    first_rows.push_back(chunk.first_row);
  }
  const memlens::DatasetSummary summary = processor.aggregate_results(results);
  const memlens::ColumnStats& price = summary.columns.at(1);
  expect(summary.rows == 3 && price.name == "price" && price.count == 2 && price.sum == 3.5 &&
             price.min == 1.5 && price.max == 2 && price.mean() == 1.75 &&
             first_rows == std::vector<std::uint64_t>{0, 2} && last.rows == 3 &&
             last.bytes_done == last.bytes_total && last.elapsed.count() > 0,
         "DatasetProcessor");
  const auto usage = processor.memory_usage();
  expect(usage.current_rss > 0 && usage.peak_rss >= usage.current_rss && usage.anon_rss > 0,
         "DatasetProcessor::memory_usage");
  bool missing = false;
  try {
    processor.process_file(path.string() + ".missing");
  } catch (const memlens::Error&) {
    missing = true;
  }
  expect(missing, "DatasetProcessor: a missing file throws Error");
  std::filesystem::remove(path);
}

int main() {
  object_model();
  sys();
  weak_references();
  collector();
  tracing();
  tools();
  leaks();
  profiling();
  caches();
  pool();
  events();
  dataset();
  return failures == 0 ? 0 : 1;
}
