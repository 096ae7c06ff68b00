// Benchmarks of the thread-safe tools:
//
// - memlens::ObjectPool against a std::mutex + vector free list and against std::make_unique +
//   destroy of the same object, one acquire + release per iteration, on one thread and on two
//   sharing one pool (real time; validation off: no health check). Goals: >= 50 M
//   acquire+release pairs/s on one thread, >= 20 M/s aggregate on two.
// - memlens::WeakEventSystem against boost::signals2 (Debian's libboost-dev) whose slots track
//   their listeners' std::weak_ptrs (track_foreign), both thread-safe: a publish to 10 live
//   listeners; to 10 live listeners after 1,000 more died and were cleaned up (memlens:
//   cleanup(); signals2 has no such call and cleans a few dead slots per emission, so it is
//   emitted until its slot count is back to 10 before timing); a subscribe + unsubscribe next
//   to 10 listeners; one thread, CPU time. Goal: publish >= 3x faster than signals2 in both
//   cases. The signals2 side is built only where Boost is found.
//
// The summary at the end gives the ratios measured in this run and judges the goals.

#include <benchmark/benchmark.h>
#include <fmt/core.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memlens/memlens.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if MEMLENS_HAVE_BOOST
#include <boost/signals2.hpp>
#endif

namespace {

/// What the pools hold: an object worth pooling, 256 bytes of buffer.
struct Connection {
  std::array<std::byte, 248> buffer{};
  std::size_t queries = 0;
};

/// The usual hand-written pool: a free list under one mutex.
class MutexFreeList {
 public:
  std::unique_ptr<Connection> acquire() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) return std::make_unique<Connection>();
    auto object = std::move(free_.back());
    free_.pop_back();
    return object;
  }
  void release(std::unique_ptr<Connection> object) {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(object));
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> free_;
};

memlens::ObjectPool<Connection>& shared_pool() {
  static memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 2, 8);
  return pool;
}

MutexFreeList& shared_free_list() {
  static MutexFreeList list;
  return list;
}

void pool_memlens(benchmark::State& state) {
  auto& pool = shared_pool();
  for (auto _ : state) {
    auto lease = pool.acquire();
    ++lease->queries;
    benchmark::DoNotOptimize(lease.get());
  }
  state.SetItemsProcessed(state.iterations());
}

void pool_mutex_free_list(benchmark::State& state) {
  auto& list = shared_free_list();
  for (auto _ : state) {
    auto object = list.acquire();
    ++object->queries;
    benchmark::DoNotOptimize(object.get());
    list.release(std::move(object));
  }
  state.SetItemsProcessed(state.iterations());
}

void pool_make_unique(benchmark::State& state) {
  for (auto _ : state) {
    auto object = std::make_unique<Connection>();
    ++object->queries;
    benchmark::DoNotOptimize(object.get());
  }
  state.SetItemsProcessed(state.iterations());
}

// ---------------------------------------------------------------------------------------------
// Events.

struct Event {
  int value = 0;
};

/// A memlens listener: an object with a method, as the seed's Listener.
struct Listener : memlens::Object {
  std::int64_t sum = 0;
  void handle(const Event& e) { sum += e.value; }
};

/// The same listener for signals2, owned by std::shared_ptr.
struct PlainListener {
  std::int64_t sum = 0;
  void handle(const Event& e) { sum += e.value; }
};

constexpr int kLive = 10, kDead = 1000;

void publish_memlens(benchmark::State& state, bool with_dead) {
  memlens::WeakEventSystem<Event> events;
  std::vector<memlens::Ref<Listener>> live;
  for (int i = 0; i < kLive; ++i) {
    live.push_back(memlens::make<Listener>());
    events.subscribe("tick", live.back(), &Listener::handle);
  }
  if (with_dead) {
    std::vector<memlens::Ref<Listener>> doomed;
    for (int i = 0; i < kDead; ++i) {
      doomed.push_back(memlens::make<Listener>());
      events.subscribe("tick", doomed.back(), &Listener::handle);
    }
    doomed.clear();
    if (events.cleanup() != kDead) state.SkipWithError("cleanup missed dead listeners");
  }
  Event e{1};
  for (auto _ : state) {
    const std::size_t called = events.publish("tick", e);
    benchmark::DoNotOptimize(called);
  }
  if (live.front()->sum != static_cast<std::int64_t>(state.iterations())) {
    state.SkipWithError("a listener missed events");
  }
  state.SetItemsProcessed(state.iterations());
}

void subscribe_memlens(benchmark::State& state) {
  memlens::WeakEventSystem<Event> events;
  std::vector<memlens::Ref<Listener>> live;
  for (int i = 0; i < kLive; ++i) {
    live.push_back(memlens::make<Listener>());
    events.subscribe("tick", live.back(), &Listener::handle);
  }
  auto extra = memlens::make<Listener>();
  for (auto _ : state) {
    const auto id = events.subscribe("tick", extra, &Listener::handle);
    events.unsubscribe("tick", id);
  }
  state.SetItemsProcessed(state.iterations());
}

#if MEMLENS_HAVE_BOOST
using Signal = boost::signals2::signal<void(const Event&)>;

boost::signals2::connection connect(Signal& signal, const std::shared_ptr<PlainListener>& l) {
  return signal.connect(
      Signal::slot_type(&PlainListener::handle, l.get(), boost::placeholders::_1).track_foreign(l));
}

void publish_signals2(benchmark::State& state, bool with_dead) {
  Signal signal;
  std::vector<std::shared_ptr<PlainListener>> live;
  for (int i = 0; i < kLive; ++i) {
    live.push_back(std::make_shared<PlainListener>());
    connect(signal, live.back());
  }
  if (with_dead) {
    std::vector<std::shared_ptr<PlainListener>> doomed;
    for (int i = 0; i < kDead; ++i) {
      doomed.push_back(std::make_shared<PlainListener>());
      connect(signal, doomed.back());
    }
    doomed.clear();
    // Its cleanup: each emission drops a few expired slots.
    for (int i = 0; i < 100 * kDead && signal.num_slots() != kLive; ++i) signal(Event{0});
    if (signal.num_slots() != kLive) state.SkipWithError("signals2 kept dead slots");
  }
  Event e{1};
  for (auto _ : state) signal(e);
  if (live.front()->sum != static_cast<std::int64_t>(state.iterations())) {
    state.SkipWithError("a listener missed events");
  }
  state.SetItemsProcessed(state.iterations());
}

void subscribe_signals2(benchmark::State& state) {
  Signal signal;
  std::vector<std::shared_ptr<PlainListener>> live;
  for (int i = 0; i < kLive; ++i) {
    live.push_back(std::make_shared<PlainListener>());
    connect(signal, live.back());
  }
  auto extra = std::make_shared<PlainListener>();
  for (auto _ : state) connect(signal, extra).disconnect();
  state.SetItemsProcessed(state.iterations());
}
#endif

/// Median items/s per benchmark name, as the reporter sees them.
class Collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
        const auto it = run.counters.find("items_per_second");
        if (it != run.counters.end()) {
          rates[fmt::format("{}/{}", run.run_name.function_name, run.threads)] = it->second.value;
        }
      }
    }
  }
  std::map<std::string, double> rates;
};

double rate(const Collector& c, const std::string& name) {
  const auto it = c.rates.find(name);
  return it == c.rates.end() ? 0.0 : it->second;
}

void summarize(const Collector& c) {
  fmt::print("\nSummary (medians of this run; pool pairs = acquire + release):\n");
  for (int threads : {1, 2}) {
    const double memlens = rate(c, fmt::format("pool/memlens/{}", threads));
    const double list = rate(c, fmt::format("pool/mutex_free_list/{}", threads));
    const double fresh = rate(c, fmt::format("pool/make_unique/{}", threads));
    fmt::print("  {} thread(s): memlens {:.1f} M pairs/s, mutex free list {:.1f} M/s ({:.2f}x), "
               "make_unique {:.1f} M/s ({:.2f}x)\n",
               threads, memlens / 1e6, list / 1e6, list > 0 ? memlens / list : 0.0, fresh / 1e6,
               fresh > 0 ? memlens / fresh : 0.0);
  }
  for (const char* name : {"publish/10_live", "publish/10_live_1000_dead_cleaned",
                           "subscribe_unsubscribe"}) {
    const double memlens = rate(c, fmt::format("{}/memlens/1", name));
    const double signals2 = rate(c, fmt::format("{}/signals2/1", name));
    if (signals2 > 0) {
      fmt::print("  {}: memlens {:.2f} M/s, signals2 {:.2f} M/s: {:.2f}x\n", name, memlens / 1e6,
                 signals2 / 1e6, memlens / signals2);
    } else {
      fmt::print("  {}: memlens {:.2f} M/s (signals2 not built)\n", name, memlens / 1e6);
    }
  }
  for (const char* name : {"publish/10_live", "publish/10_live_1000_dead_cleaned"}) {
    const double memlens = rate(c, fmt::format("{}/memlens/1", name));
    const double signals2 = rate(c, fmt::format("{}/signals2/1", name));
    if (signals2 > 0) {
      fmt::print("  goal {} >= 3x signals2: {} ({:.2f}x)\n", name,
                 memlens >= 3 * signals2 ? "met" : "NOT met", memlens / signals2);
    }
  }
  const double one = rate(c, "pool/memlens/1");
  const double two = rate(c, "pool/memlens/2");
  if (one == 0 || two == 0) return;  // filtered out
  fmt::print("  goal >= 50 M pairs/s on one thread: {} ({:.1f})\n", one >= 50e6 ? "met" : "NOT met",
             one / 1e6);
  fmt::print("  goal >= 20 M pairs/s on two threads: {} ({:.1f})\n", two >= 20e6 ? "met" : "NOT met",
             two / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  for (auto [name, function] : {std::pair{"pool/memlens", &pool_memlens},
                                std::pair{"pool/mutex_free_list", &pool_mutex_free_list},
                                std::pair{"pool/make_unique", &pool_make_unique}}) {
    benchmark::RegisterBenchmark(name, function)
        ->Threads(1)
        ->Threads(2)
        ->UseRealTime()
        ->Repetitions(3)
        ->ReportAggregatesOnly(true);
  }
  auto events = [](const char* name, auto function) {
    benchmark::RegisterBenchmark(name, function)->Repetitions(3)->ReportAggregatesOnly(true);
  };
  events("publish/10_live/memlens", [](benchmark::State& s) { publish_memlens(s, false); });
  events("publish/10_live_1000_dead_cleaned/memlens",
         [](benchmark::State& s) { publish_memlens(s, true); });
  events("subscribe_unsubscribe/memlens", subscribe_memlens);
#if MEMLENS_HAVE_BOOST
  events("publish/10_live/signals2", [](benchmark::State& s) { publish_signals2(s, false); });
  events("publish/10_live_1000_dead_cleaned/signals2",
         [](benchmark::State& s) { publish_signals2(s, true); });
  events("subscribe_unsubscribe/signals2", subscribe_signals2);
#endif
  benchmark::Initialize(&argc, argv);
  Collector collector;
  benchmark::RunSpecifiedBenchmarks(&collector);
  summarize(collector);
  benchmark::Shutdown();
  return 0;
}
