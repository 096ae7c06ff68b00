// Benchmarks of memlens::AdvancedCache<uint64_t, uint64_t> against "a typical C++ LRU" (a
// std::list of pairs and a std::unordered_map of list iterators under one std::mutex, a hit
// splicing its node to the front), and of every eviction policy's hit ratio against Belady's
// optimum. Three parts:
//
// - hits per second, 1 and 2 threads (real time, the median of 3 repetitions): the cache holds
//   every key (10,000, then 100,000) with room to spare; each thread reads its own precomputed
//   random sequence of them, one get per iteration (a miss fails the benchmark). Beside them a
//   bare std::unordered_map::find, no cache: the floor of a lookup on this machine. Goals, on
//   10,000 keys: >= 20 M hits/s on one thread, >= 1.6x that on two, >= 2x the typical LRU at
//   both thread counts.
// - bytes per entry beyond the key and value: 1,000,000 entries, each side counted two ways: by
//   a counting allocator (the bytes its containers ask for, the rule by which AdvancedCache's
//   current_memory_usage() counts its own), and by mallinfo2 (the heap's in-use bytes before
//   and after: malloc's chunk headers and rounding included).
// - hit ratios on two deterministic traces (splitmix64, fixed seeds), the cache used as a user
//   does (`if (!cache.get(k)) cache.set(k, v)`), beside Belady's offline optimum at exactly
//   10,000 entries. The limit is in bytes: each policy's is calibrated until a fill with
//   distinct keys leaves 10,000 entries +- 0.5%, and scaled again if a replay held on average
//   more or fewer (LFU's frequency buckets take bytes as they multiply); the entries held are
//   printed.
//   * zipf_scan: 20 cycles of 100,000 requests drawn from Zipf(0.99) over 1,000,000 keys, then
//     a scan of 20,000 keys never requested before (2,400,000 requests).
//   * recency: 2,000,000 requests; each re-requests, with probability 0.8, the key requested d
//     requests earlier, d geometric with mean 10,000 (d is a distance in requests, not in
//     distinct keys); otherwise, or when d reaches back before the start, a new key.
//   Goals: TinyLFU >= LRU + 5 points on zipf_scan, and >= LRU - 2 points on recency.
//
// The summary at the end gives the ratios measured in this run and judges the goals. The Python
// side is caches_cpython.py (cachetools and functools.lru_cache; `python3
// benchmarks/caches_cpython.py`), run on its own: it generates the same traces (the checksums
// printed on both sides must agree), or reads those this program writes with
// `--dump-traces=DIR` (DIR/zipf_scan.u64, DIR/recency.u64: little-endian uint64 keys).

#include <benchmark/benchmark.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#if __has_include(<malloc.h>) && defined(__GLIBC__)
#include <malloc.h>  // mallinfo2, malloc_trim
#define MEMLENS_BENCH_HAVE_MALLINFO2 1
#endif

#include "memlens/tools/advanced_cache.hpp"

namespace {

using memlens::AdvancedCache;
using memlens::CacheOptions;
using memlens::EvictionPolicy;
using Key = std::uint64_t;
using Value = std::uint64_t;
using Cache = AdvancedCache<Key, Value>;

constexpr std::size_t kCapacity = 10'000;  // entries, in the hit-ratio part
constexpr double kMiB = 1048576.0;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness, the same in caches_cpython.py.

/// splitmix64 (Steele, Lea, Flood 2014): the whole generator is its state and one finalizer.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() noexcept {
    state += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

/// A uniform double in [0, 1) from the top 53 bits.
double unit(std::uint64_t x) noexcept { return static_cast<double>(x >> 11) * 0x1.0p-53; }

/// The key for a number: splitmix64's finalizer, a bijection, so distinct numbers give distinct
/// keys that look random to a hash table (std::hash of an integer is the integer).
constexpr Key scramble(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr Value value_for(Key key) noexcept { return key ^ 0x5555555555555555ULL; }

/// A cache's options (field by field: -Wextra flags designated initializers that leave some out).
CacheOptions options(double max_memory_mb, EvictionPolicy policy) {
  CacheOptions o;
  o.max_memory_mb = max_memory_mb;
  o.policy = policy;
  return o;
}

const std::string& load_note() {
  static const std::string note = [] {
    double load = 0;
    if (getloadavg(&load, 1) == 1 && load > 1.5) {
      return fmt::format(
          "Other processes were running (load average {:.1f} on {} CPUs): timings are noisy, "
          "compare several runs\n",
          load, std::thread::hardware_concurrency());
    }
    return std::string();
  }();
  return note;
}

// ---------------------------------------------------------------------------------------------
// The typical C++ LRU, with an allocator so that its bytes can be counted.

/// The same counting allocator AdvancedCache's containers use: the bytes the containers ask
/// for, counted alike on both sides.
template <class T>
using CountingAllocator = memlens::detail::cache::Counting<T>;

/// What a C++ programmer writes when asked for a thread-safe LRU cache of `capacity` entries.
template <template <class> class Allocator = std::allocator>
class TypicalLru {
  using Entry = std::pair<Key, Value>;
  using List = std::list<Entry, Allocator<Entry>>;
  using Map = std::unordered_map<Key, typename List::iterator, std::hash<Key>, std::equal_to<Key>,
                                 Allocator<std::pair<const Key, typename List::iterator>>>;

 public:
  template <class... AllocatorArgs>
  explicit TypicalLru(std::size_t capacity, AllocatorArgs... args)
      : capacity_(capacity),
        list_(Allocator<Entry>(args...)),
        map_(0, std::hash<Key>{}, std::equal_to<Key>{},
             typename Map::allocator_type(Allocator<Entry>(args...))) {}

  std::optional<Value> get(Key key) {
    std::lock_guard lock(mutex_);
    const auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    list_.splice(list_.begin(), list_, it->second);
    return it->second->second;
  }

  void set(Key key, Value value) {
    std::lock_guard lock(mutex_);
    if (const auto it = map_.find(key); it != map_.end()) {
      it->second->second = value;
      list_.splice(list_.begin(), list_, it->second);
      return;
    }
    if (map_.size() >= capacity_) {
      map_.erase(list_.back().first);
      list_.pop_back();
    }
    list_.emplace_front(key, value);
    map_.emplace(key, list_.begin());
  }

  std::size_t size() {
    std::lock_guard lock(mutex_);
    return map_.size();
  }

 private:
  std::mutex mutex_;
  std::size_t capacity_;
  List list_;
  Map map_;
};

// ---------------------------------------------------------------------------------------------
// Part 1: hits per second.

constexpr std::size_t kSequenceLength = std::size_t{1} << 20;  // per thread; a power of two
constexpr int kMaxThreads = 2;

/// `keys` keys, all present in each cache, and each thread's sequence of reads.
struct HitFixture {
  explicit HitFixture(std::size_t keys)
      : lru(options(256, EvictionPolicy::LRU)),
        tiny_lfu(options(256, EvictionPolicy::TinyLFU)),
        typical(keys) {
    for (std::size_t i = 0; i < keys; ++i) {
      const Key key = scramble(i);
      lru.set(key, value_for(key));
      tiny_lfu.set(key, value_for(key));
      typical.set(key, value_for(key));
      map.emplace(key, value_for(key));
    }
    for (int t = 0; t < kMaxThreads; ++t) {
      SplitMix64 rng{0x417 + static_cast<std::uint64_t>(t)};
      auto& sequence = sequences[static_cast<std::size_t>(t)];
      sequence.resize(kSequenceLength);
      for (Key& key : sequence) key = scramble(rng.next() % keys);
    }
  }

  Cache lru;
  Cache tiny_lfu;
  TypicalLru<> typical;
  std::unordered_map<Key, Value> map;  // read only: the floor
  std::array<std::vector<Key>, kMaxThreads> sequences;
};

/// The fixture of `keys` keys, built once, by whichever thread asks first (the others wait).
HitFixture& hit_fixture(std::size_t keys) {
  if (keys == 10'000) {
    static HitFixture small(10'000);
    return small;
  }
  static HitFixture large(100'000);
  return large;
}

/// map_find is no cache: a bare std::unordered_map::find, no lock, nothing recorded. It is the
/// floor of a hash lookup's cost on this machine (its cache misses), which every cache pays.
enum class Contender { memlens_lru, memlens_tiny_lfu, typical_lru, map_find };
constexpr std::array<std::pair<Contender, const char*>, 4> kContenders = {{
    {Contender::memlens_lru, "memlens_LRU"},
    {Contender::memlens_tiny_lfu, "memlens_TinyLFU"},
    {Contender::typical_lru, "list_LRU"},
    {Contender::map_find, "map_find"},
}};
constexpr std::array<std::size_t, 2> kHitKeys = {10'000, 100'000};

template <class Lookup>
void read_all(benchmark::State& state, const std::vector<Key>& sequence, Lookup lookup) {
  std::size_t i = 0, misses = 0;
  Value sum = 0;
  for (auto _ : state) {
    const std::optional<Value> value = lookup(sequence[i++ & (kSequenceLength - 1)]);
    if (value) {
      sum += *value;
    } else {
      ++misses;
    }
  }
  benchmark::DoNotOptimize(sum);
  if (misses != 0) {
    state.SkipWithError("a key that was set was not found");
    return;
  }
  state.SetItemsProcessed(state.iterations());
}

void hits(benchmark::State& state, Contender contender, std::size_t keys) {
  HitFixture& fixture = hit_fixture(keys);
  const auto& sequence = fixture.sequences[static_cast<std::size_t>(state.thread_index())];
  switch (contender) {
    case Contender::memlens_lru:
      read_all(state, sequence, [&](Key k) { return fixture.lru.get(k); });
      break;
    case Contender::memlens_tiny_lfu:
      read_all(state, sequence, [&](Key k) { return fixture.tiny_lfu.get(k); });
      break;
    case Contender::typical_lru:
      read_all(state, sequence, [&](Key k) { return fixture.typical.get(k); });
      break;
    case Contender::map_find:
      read_all(state, sequence, [&](Key k) -> std::optional<Value> {
        const auto it = fixture.map.find(k);
        if (it == fixture.map.end()) return std::nullopt;
        return it->second;
      });
      break;
  }
}

std::string hits_name(const char* contender, std::size_t keys) {
  return fmt::format("hits/{}/{}", contender, keys);
}

// ---------------------------------------------------------------------------------------------
// Part 2: bytes per entry beyond the key and value.

constexpr std::size_t kFillEntries = 1'000'000;

/// The bytes malloc has handed out and not got back (chunk headers and rounding included),
/// after giving back what it can.
std::optional<std::size_t> heap_in_use() {
#ifdef MEMLENS_BENCH_HAVE_MALLINFO2
  malloc_trim(0);
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
#else
  return std::nullopt;
#endif
}

double per_entry(std::size_t bytes, std::size_t entries) {
  return static_cast<double>(bytes) / static_cast<double>(entries) -
         static_cast<double>(sizeof(Key) + sizeof(Value));
}

void publish_bytes(benchmark::State& state, std::size_t counted, std::optional<std::size_t> before,
                   std::optional<std::size_t> after, std::size_t entries) {
  if (entries != kFillEntries) {
    state.SkipWithError("the cache did not keep every entry");
    return;
  }
  state.counters["entries"] = static_cast<double>(entries);
  state.counters["counted_B/entry"] = per_entry(counted, entries);
  if (before && after && *after >= *before) {
    state.counters["malloc_B/entry"] = per_entry(*after - *before, entries);
  }
}

void bytes_memlens(benchmark::State& state, EvictionPolicy policy) {
  for (auto _ : state) {
    const auto before = heap_in_use();
    auto cache = std::make_unique<Cache>(options(4096, policy));
    for (std::size_t i = 0; i < kFillEntries; ++i) cache->set(scramble(i), value_for(scramble(i)));
    const auto after = heap_in_use();
    publish_bytes(state, cache->current_memory_usage(), before, after, cache->size());
  }
}

void bytes_typical(benchmark::State& state) {
  for (auto _ : state) {
    std::size_t counted = 0;
    const auto before = heap_in_use();
    auto cache = std::make_unique<TypicalLru<CountingAllocator>>(kFillEntries, &counted);
    for (std::size_t i = 0; i < kFillEntries; ++i) cache->set(scramble(i), value_for(scramble(i)));
    const auto after = heap_in_use();
    // The cache object itself (mutex, list head, map header) is not per entry; it is in
    // malloc's figure, 1 byte in 10^4 of it.
    publish_bytes(state, counted, before, after, cache->size());
  }
}

// ---------------------------------------------------------------------------------------------
// Part 3: hit ratios.

struct Trace {
  const char* name;
  std::vector<Key> keys;
  std::size_t distinct = 0;
};

/// FNV-1a over the keys as 64-bit words: caches_cpython.py prints the same of its traces.
std::uint64_t checksum(const std::vector<Key>& keys) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const Key key : keys) h = (h ^ key) * 0x100000001b3ULL;
  return h;
}

std::size_t count_distinct(const std::vector<Key>& keys) {
  std::vector<Key> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  return static_cast<std::size_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
}

// zipf_scan's parameters (caches_cpython.py has the same).
constexpr std::size_t kZipfKeys = 1'000'000;
constexpr double kZipfExponent = 0.99;
constexpr std::size_t kZipfPerCycle = 100'000;
constexpr std::size_t kScanLength = 20'000;
constexpr std::size_t kCycles = 20;
constexpr std::uint64_t kZipfSeed = 0x21ff;
constexpr std::uint64_t kScanBase = std::uint64_t{1} << 40;  // scan key numbers from here

/// Rank r (1-based) has weight r^-s; the rank of a draw is the first whose running total
/// exceeds the draw, scaled to the whole. Ranks are keys' numbers: scrambled, they are keys.
const Trace& zipf_scan_trace() {
  static const Trace trace = [] {
    std::vector<double> cumulative(kZipfKeys);
    double total = 0;
    for (std::size_t r = 1; r <= kZipfKeys; ++r) {
      total += std::pow(static_cast<double>(r), -kZipfExponent);
      cumulative[r - 1] = total;
    }
    Trace t{"zipf_scan", {}, 0};
    t.keys.reserve(kCycles * (kZipfPerCycle + kScanLength));
    SplitMix64 rng{kZipfSeed};
    std::uint64_t scanned = 0;
    for (std::size_t cycle = 0; cycle < kCycles; ++cycle) {
      for (std::size_t i = 0; i < kZipfPerCycle; ++i) {
        const double u = unit(rng.next()) * total;
        const auto at = std::upper_bound(cumulative.begin(), cumulative.end(), u);
        const auto rank =
            static_cast<std::uint64_t>(std::min<std::ptrdiff_t>(
                at - cumulative.begin(), static_cast<std::ptrdiff_t>(kZipfKeys) - 1)) +
            1;
        t.keys.push_back(scramble(rank));
      }
      for (std::size_t i = 0; i < kScanLength; ++i) {
        t.keys.push_back(scramble(kScanBase + scanned++));
      }
    }
    t.distinct = count_distinct(t.keys);
    return t;
  }();
  return trace;
}

// recency's parameters (caches_cpython.py has the same).
constexpr std::size_t kRecencyRequests = 2'000'000;
constexpr double kReuseProbability = 0.8;
constexpr double kMeanDistance = 10'000;
constexpr std::uint64_t kRecencySeed = 0x4ecc;
constexpr std::uint64_t kRecencyBase = std::uint64_t{2} << 40;  // new key numbers from here

/// Request i re-requests request i - d's key with probability kReuseProbability, d geometric
/// (P(d) = (1 - p)^(d - 1) p, p = 1 / kMeanDistance, drawn by inversion), else a new key.
const Trace& recency_trace() {
  static const Trace trace = [] {
    Trace t{"recency", {}, 0};
    t.keys.reserve(kRecencyRequests);
    SplitMix64 rng{kRecencySeed};
    const double log_q = std::log1p(-1.0 / kMeanDistance);
    std::uint64_t fresh = 0;
    for (std::size_t i = 0; i < kRecencyRequests; ++i) {
      std::optional<Key> key;
      if (unit(rng.next()) < kReuseProbability) {
        const double depth = std::log(1.0 - unit(rng.next())) / log_q;  // >= 0
        if (depth < static_cast<double>(i)) key = t.keys[i - 1 - static_cast<std::size_t>(depth)];
      }
      t.keys.push_back(key ? *key : scramble(kRecencyBase + fresh++));
    }
    t.distinct = count_distinct(t.keys);
    return t;
  }();
  return trace;
}

constexpr std::array<const Trace& (*)(), 2> kTraces = {zipf_scan_trace, recency_trace};
constexpr std::array<std::string_view, 2> kTraceNames = {"zipf_scan", "recency"};

constexpr std::array<std::pair<EvictionPolicy, const char*>, 4> kPolicies = {{
    {EvictionPolicy::LRU, "LRU"},
    {EvictionPolicy::LFU, "LFU"},
    {EvictionPolicy::FIFO, "FIFO"},
    {EvictionPolicy::TinyLFU, "TinyLFU"},
}};

/// The limit that holds kCapacity entries, and how many a fill with distinct keys left.
struct Calibration {
  double mb = 0;
  std::size_t entries = 0;
};

/// Fills caches with 3 x kCapacity distinct keys, scaling the limit by kCapacity / entries held
/// until they hold kCapacity +- 0.5%. The per-entry cost is not quite constant (hash-table
/// buckets grow in steps; TinyLFU's sketch and LFU's buckets count too), hence the iteration.
Calibration calibrate(EvictionPolicy policy) {
  static std::map<EvictionPolicy, Calibration> done;
  if (const auto it = done.find(policy); it != done.end()) return it->second;
  Calibration best;
  double mb = static_cast<double>(kCapacity) * 100 / kMiB;
  for (int round = 0; round < 40; ++round) {
    Cache cache(options(mb, policy));
    for (std::size_t i = 0; i < 3 * kCapacity; ++i) {
      const Key key = scramble((std::uint64_t{3} << 40) + i);
      cache.set(key, value_for(key));
    }
    const std::size_t entries = cache.size();
    const auto off = [](std::size_t n) { return n > kCapacity ? n - kCapacity : kCapacity - n; };
    if (best.entries == 0 || off(entries) < off(best.entries)) best = {mb, entries};
    if (static_cast<double>(off(entries)) <= 0.005 * kCapacity) break;
    // Proportional first; damped later, when steps in the cost could make it oscillate.
    const double factor = static_cast<double>(kCapacity) / static_cast<double>(entries);
    mb *= round < 10 ? factor : 1 + (factor - 1) / 2;
  }
  done[policy] = best;
  return best;
}

/// One policy's result on one trace, or Belady's.
struct HitRatio {
  double ratio = 0;
  std::size_t calibrated_entries = 0;                         // 0 for Belady
  double mean_entries = 0, min_entries = 0, max_entries = 0;  // while replaying, once warm
  double mb = 0;                                              // the limit replayed at
  int replays = 0;            // how many ran: more than 1 when the mean held was off kCapacity
  memlens::CacheStats stats;  // at the end of the replay
};
std::map<std::pair<std::string, std::string>, HitRatio> hit_ratios;  // (trace, policy)

constexpr std::size_t kWarmUp = 200'000;  // requests before the entries held are sampled

HitRatio replay_on_this_thread(const Trace& trace, EvictionPolicy policy, double mb) {
  Cache cache(options(mb, policy));
  std::size_t samples = 0, hits = 0;
  double sum = 0, low = 1e300, high = 0;
  for (std::size_t i = 0; i < trace.keys.size(); ++i) {
    const Key key = trace.keys[i];
    if (cache.get(key)) {
      ++hits;
    } else {
      cache.set(key, value_for(key));
    }
    if (i >= kWarmUp && i % 10'000 == 0) {
      const auto held = static_cast<double>(cache.size());
      sum += held;
      low = std::min(low, held);
      high = std::max(high, held);
      ++samples;
    }
  }
  const memlens::CacheStats stats = cache.stats();
  HitRatio result;
  result.ratio = static_cast<double>(hits) / static_cast<double>(trace.keys.size());
  if (std::abs(stats.hit_rate() - result.ratio) > 1e-12) result.ratio = -1;  // caught below
  result.mean_entries = samples ? sum / static_cast<double>(samples) : 0;
  result.min_entries = samples ? low : 0;
  result.max_entries = high;
  result.mb = mb;
  result.stats = stats;
  return result;
}

/// One replay of `trace` through a cache of `mb` MiB, on a thread of its own: the caches order
/// accesses by a per-thread Lamport clock, which TinyLFU's occasional random admission reads, so
/// a fresh thread makes the result independent of whatever ran before.
HitRatio replay_once(const Trace& trace, EvictionPolicy policy, double mb) {
  HitRatio result;
  std::thread([&] { result = replay_on_this_thread(trace, policy, mb); }).join();
  return result;
}

/// The policy's hit ratio on `trace` at the calibrated limit; if the entries it held while
/// replaying were on average off kCapacity by more than 0.5% (LFU's frequency buckets cost
/// bytes of their own as they multiply), again with the limit scaled by kCapacity / mean held.
HitRatio replay(const Trace& trace, EvictionPolicy policy) {
  const Calibration calibration = calibrate(policy);
  const auto off = [](const HitRatio& r) {
    return std::abs(r.mean_entries - static_cast<double>(kCapacity));
  };
  HitRatio best;
  double mb = calibration.mb;
  for (int round = 1; round <= 4; ++round) {
    const HitRatio result = replay_once(trace, policy, mb);
    if (result.ratio < 0 || result.mean_entries == 0) return result;
    if (round == 1 || off(result) < off(best)) best = result;
    best.replays = round;
    if (off(result) <= 0.005 * kCapacity) break;
    mb *= static_cast<double>(kCapacity) / result.mean_entries;
  }
  best.calibrated_entries = calibration.entries;
  return best;
}

/// Belady's MIN: on a miss with the cache full, evict whichever key (the newcomer included:
/// it may be left out) is next requested farthest in the future.
double belady(const Trace& trace, std::size_t capacity) {
  const std::vector<Key>& keys = trace.keys;
  const std::size_t n = keys.size();
  // next[i]: when keys[i] is requested again; never: n + i (unique, later than any request).
  std::vector<std::size_t> next(n);
  {
    std::unordered_map<Key, std::size_t> later;
    later.reserve(trace.distinct);
    for (std::size_t i = n; i-- > 0;) {
      const auto [it, fresh] = later.try_emplace(keys[i], n + i);
      next[i] = fresh ? n + i : it->second;
      it->second = i;
    }
  }
  std::unordered_map<Key, std::size_t> held;  // key -> its next request
  held.reserve(capacity * 2);
  std::priority_queue<std::pair<std::size_t, Key>> farthest;  // stale entries skipped lazily
  std::size_t hits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Key key = keys[i];
    if (const auto it = held.find(key); it != held.end()) {
      ++hits;
      it->second = next[i];
      farthest.emplace(next[i], key);
      continue;
    }
    if (held.size() == capacity) {
      for (;;) {
        const auto [when, candidate] = farthest.top();
        const auto it = held.find(candidate);
        if (it != held.end() && it->second == when) break;
        farthest.pop();
      }
      if (farthest.top().first < next[i]) continue;  // the newcomer is needed last: not kept
      held.erase(farthest.top().second);
      farthest.pop();
    }
    held.emplace(key, next[i]);
    farthest.emplace(next[i], key);
  }
  return static_cast<double>(hits) / static_cast<double>(n);
}

void hit_ratio(benchmark::State& state, std::size_t trace_index, int policy_index) {
  const Trace& trace = kTraces[trace_index]();  // generated once, before the timed loop
  for (auto _ : state) {
    HitRatio result;
    std::string policy_name;
    if (policy_index < 0) {
      policy_name = "Belady";
      result.ratio = belady(trace, kCapacity);
    } else {
      const auto& [policy, name] = kPolicies[static_cast<std::size_t>(policy_index)];
      policy_name = name;
      result = replay(trace, policy);
      if (result.ratio < 0) {
        state.SkipWithError("the cache's stats() disagree with the hits counted");
        return;
      }
      state.counters["entries"] = result.mean_entries;
    }
    state.counters["hit%"] = 100 * result.ratio;
    hit_ratios[{trace.name, policy_name}] = result;
  }
}

// ---------------------------------------------------------------------------------------------
// Registration and the summary.

void register_benchmarks() {
  for (const std::size_t keys : kHitKeys) {
    for (const auto& [contender, name] : kContenders) {
      benchmark::RegisterBenchmark(
          hits_name(name, keys).c_str(),
          [contender = contender, keys](benchmark::State& state) { hits(state, contender, keys); })
          ->Threads(1)
          ->Threads(2)
          ->UseRealTime()
          ->Repetitions(3)
          ->ReportAggregatesOnly(true);
    }
  }
  for (const auto& [policy, name] : kPolicies) {
    benchmark::RegisterBenchmark(
        fmt::format("bytes_per_entry/memlens_{}", name).c_str(),
        [policy = policy](benchmark::State& state) { bytes_memlens(state, policy); })
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("bytes_per_entry/list_LRU", bytes_typical)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  for (std::size_t t = 0; t < kTraces.size(); ++t) {
    for (int p = -1; p < static_cast<int>(kPolicies.size()); ++p) {
      const char* policy = p < 0 ? "Belady" : kPolicies[static_cast<std::size_t>(p)].second;
      benchmark::RegisterBenchmark(fmt::format("hit_ratio/{}/{}", kTraceNames[t], policy).c_str(),
                                   [t, p](benchmark::State& state) { hit_ratio(state, t, p); })
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
  }
}

/// The console output, plus each run's counters (the median of repetitions) for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  SummaryReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      if (run.run_type == Run::RT_Iteration && run.repetitions > 1) continue;
      auto& counters = counters_[{run.run_name.function_name, run.threads}];
      for (const auto& [name, counter] : run.counters) counters[name] = counter.value;
    }
  }

  /// A counter of a benchmark at a thread count, if it ran.
  std::optional<double> counter(const std::string& name, const std::string& counter_name,
                                std::int64_t threads = 1) const {
    const auto it = counters_.find({name, threads});
    if (it == counters_.end()) return std::nullopt;
    const auto c = it->second.find(counter_name);
    if (c == it->second.end()) return std::nullopt;
    return c->second;
  }

 private:
  std::map<std::pair<std::string, std::int64_t>, std::map<std::string, double>> counters_;
};

std::string verdict(bool met) { return met ? "goal met" : "goal NOT met"; }

std::string fixed(std::optional<double> x, int digits, std::string_view suffix = "") {
  return x ? fmt::format("{:.{}f}{}", *x, digits, suffix) : std::string("n/a");
}

std::optional<double> ratio(std::optional<double> a, std::optional<double> b) {
  if (!a || !b || *b == 0) return std::nullopt;
  return *a / *b;
}

void print_hits(const SummaryReporter& results) {
  fmt::print(
      "\nHits per second (M/s, the median of 3 repetitions; 2 threads: both together), every "
      "key present\n");
  fmt::print("  {:<30} {:>8} {:>9} {:>9} {:>8} {:>12} {:>12}\n", "", "1 thread", "ns/hit",
             "2 threads", "2T / 1T", "/ list, 1T", "/ list, 2T");
  std::vector<std::string> verdicts;
  for (const std::size_t keys : kHitKeys) {
    const auto rate = [&](const char* contender, std::int64_t threads) -> std::optional<double> {
      const auto r = results.counter(hits_name(contender, keys), "items_per_second", threads);
      if (!r) return std::nullopt;
      return *r / 1e6;
    };
    const auto list_1 = rate("list_LRU", 1), list_2 = rate("list_LRU", 2);
    for (const auto& [contender, name] : kContenders) {
      const auto one = rate(name, 1), two = rate(name, 2);
      const auto scaling = ratio(two, one);
      const bool memlens =
          contender == Contender::memlens_lru || contender == Contender::memlens_tiny_lfu;
      const auto vs_1 = ratio(one, list_1), vs_2 = ratio(two, list_2);
      fmt::print("  {:<30} {:>8} {:>9} {:>9} {:>8} {:>12} {:>12}\n",
                 fmt::format("{} keys, {}", keys, name), fixed(one, 1),
                 one ? fixed(1e3 / *one, 1) : "n/a", fixed(two, 1), fixed(scaling, 2, "x"),
                 memlens ? fixed(vs_1, 2, "x") : "", memlens ? fixed(vs_2, 2, "x") : "");
      if (keys != kHitKeys[0] || !memlens) continue;
      const auto judged = [](std::optional<double> x, double goal, std::string_view what) {
        return fmt::format("{} {} (goal >= {})", what, x ? fmt::format("{:.2f}", *x) : "n/a", goal);
      };
      const bool met = one.value_or(0) >= 20 && scaling.value_or(0) >= 1.6 &&
                       vs_1.value_or(0) >= 2 && vs_2.value_or(0) >= 2;
      verdicts.push_back(fmt::format("    {}: {}; {}; {}; {}: {}", name,
                                     judged(one, 20, "M hits/s"), judged(scaling, 1.6, "2T/1T"),
                                     judged(vs_1, 2, "/ list 1T"), judged(vs_2, 2, "/ list 2T"),
                                     verdict(met)));
    }
  }
  fmt::print("  Goals, on {} keys:\n", kHitKeys[0]);
  for (const std::string& line : verdicts) fmt::print("{}\n", line);
  fmt::print(
      "  map_find: a bare unordered_map::find (no lock, nothing recorded), not a cache: what the "
      "lookup's\n  own cache misses cost on this machine. Its 2T / 1T is what this machine gave "
      "2 threads that\n  share nothing{}\n",
      [&] {
        const auto one = results.counter(hits_name("map_find", kHitKeys[0]), "items_per_second", 1);
        const auto two = results.counter(hits_name("map_find", kHitKeys[0]), "items_per_second", 2);
        const auto scaling = ratio(two, one);
        if (!scaling) return std::string();
        return fmt::format(" ({:.2f}x on {} keys{})", *scaling, kHitKeys[0],
                           *scaling < 1.8 ? fmt::format("; another process took CPU time from "
                                                        "them, on {} CPUs: 2-thread figures are "
                                                        "not judged fairly",
                                                        std::thread::hardware_concurrency())
                                          : "");
      }());
}

void print_bytes(const SummaryReporter& results) {
  fmt::print("\nBytes per entry beyond the key and value (16 bytes), {} uint64 -> uint64 entries\n",
             kFillEntries);
  fmt::print("  {:<20} {:>10} {:>10}\n", "", "counted", "malloc");
  std::vector<std::string> names;
  for (const auto& [policy, name] : kPolicies) names.push_back(fmt::format("memlens_{}", name));
  names.emplace_back("list_LRU");
  for (const std::string& name : names) {
    const std::string bench = "bytes_per_entry/" + name;
    fmt::print("  {:<20} {:>10} {:>10}\n", name,
               fixed(results.counter(bench, "counted_B/entry"), 1),
               fixed(results.counter(bench, "malloc_B/entry"), 1));
  }
  fmt::print(
      "  counted: the bytes the containers ask their allocator for (memlens: "
      "current_memory_usage(),\n  which counts so; list: a counting allocator). malloc: the "
      "heap's in-use bytes (mallinfo2 uordblks +\n  hblkhd) before and after, chunk headers and "
      "rounding included.\n");
}

void print_hit_ratios() {
  fmt::print(
      "\nHit ratios (%) at {} entries; held: the entries the cache held while replaying, mean "
      "[min, max]\n(sampled every 10000 requests after the first {})\n",
      kCapacity, kWarmUp);
  for (std::size_t t = 0; t < kTraces.size(); ++t) {
    const Trace& trace = kTraces[t]();
    fmt::print("  {}: {} requests, {} distinct keys, checksum {:016x}\n", trace.name,
               trace.keys.size(), trace.distinct, checksum(trace.keys));
  }
  const auto cell = [](std::string_view trace, std::string_view policy) -> std::optional<HitRatio> {
    const auto it = hit_ratios.find({std::string(trace), std::string(policy)});
    if (it == hit_ratios.end()) return std::nullopt;
    return it->second;
  };
  const auto percent = [&](std::string_view trace, std::string_view policy) {
    const auto r = cell(trace, policy);
    return r ? std::optional<double>(100 * r->ratio) : std::nullopt;
  };
  const auto held = [&](std::string_view trace, std::string_view policy) {
    const auto r = cell(trace, policy);
    if (!r) return std::string("n/a");
    if (policy == "Belady") return fmt::format("{} (exactly)", kCapacity);
    return fmt::format("{:.0f} [{:.0f}, {:.0f}]", r->mean_entries, r->min_entries, r->max_entries);
  };
  fmt::print("\n  {:<9} {:>10} {:>10}   {:<22} {}\n", "", "zipf_scan", "recency",
             "held on zipf_scan", "held on recency");
  std::vector<std::string> rows;
  for (const auto& [policy, name] : kPolicies) rows.emplace_back(name);
  rows.emplace_back("Belady");
  for (const std::string& row : rows) {
    fmt::print("  {:<9} {:>10} {:>10}   {:<22} {}\n", row, fixed(percent("zipf_scan", row), 2),
               fixed(percent("recency", row), 2), held("zipf_scan", row), held("recency", row));
  }

  // Belady bounds every policy: a policy above it means a bug in the replay, or a cache that
  // held more than the capacity.
  for (const auto& trace : kTraceNames) {
    const auto optimum = percent(trace, "Belady");
    for (const auto& [policy, name] : kPolicies) {
      const auto r = percent(trace, name);
      if (optimum && r && *r > *optimum + 0.05) {
        fmt::print("  CHECK FAILED: {} beats Belady on {} ({:.2f} > {:.2f})\n", name, trace, *r,
                   *optimum);
      }
    }
  }
  const auto lru_z = percent("zipf_scan", "LRU"), tiny_z = percent("zipf_scan", "TinyLFU");
  const auto lru_r = percent("recency", "LRU"), tiny_r = percent("recency", "TinyLFU");
  if (lru_z && tiny_z) {
    fmt::print("  TinyLFU - LRU on zipf_scan: {:+.2f} points (goal >= +5): {}\n", *tiny_z - *lru_z,
               verdict(*tiny_z - *lru_z >= 5));
  }
  if (lru_r && tiny_r) {
    fmt::print("  TinyLFU - LRU on recency:   {:+.2f} points (goal >= -2): {}\n", *tiny_r - *lru_r,
               verdict(*tiny_r - *lru_r >= -2));
  }

  fmt::print(
      "\n  The limits: a fill with {} distinct keys held (entries at MiB), then the limit each "
      "trace was\n  replayed at (scaled again when the mean held was off by more than 0.5%)\n",
      3 * kCapacity);
  for (const auto& [policy, name] : kPolicies) {
    std::string line;
    for (const auto& trace : kTraceNames) {
      const auto r = cell(trace, name);
      if (!r) continue;
      if (line.empty()) {
        line = fmt::format("{} at {:.4f}", r->calibrated_entries, calibrate(policy).mb);
      }
      line += fmt::format("; {} {:.4f}{}", trace, r->mb,
                          r->replays > 1 ? fmt::format(" ({} replays)", r->replays) : "");
    }
    if (!line.empty()) fmt::print("    {:<8} {}\n", name, line);
  }
  for (const auto& trace : kTraceNames) {
    const auto r = cell(trace, "TinyLFU");
    if (!r) continue;
    const memlens::CacheStats& st = r->stats;
    const auto share = [&](std::size_t bytes) {
      return 100.0 * static_cast<double>(bytes) / static_cast<double>(st.max_memory_bytes);
    };
    fmt::print(
        "  TinyLFU at the end of {}: window {:.1f}% of the limit (target {:.1f}%); admissions {}, "
        "rejections {}, promotions {}\n",
        trace, share(st.window_bytes), share(st.window_target_bytes), st.admissions,
        st.admission_rejections, st.promotions);
  }
}

/// Writes the traces for caches_cpython.py (`--traces DIR`).
bool dump_traces(const std::filesystem::path& directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  for (std::size_t t = 0; t < kTraces.size(); ++t) {
    const Trace& trace = kTraces[t]();
    const auto path = directory / fmt::format("{}.u64", trace.name);
    std::ofstream out(path, std::ios::binary);
    static_assert(std::endian::native == std::endian::little, "the files are little-endian");
    out.write(reinterpret_cast<const char*>(trace.keys.data()),
              static_cast<std::streamsize>(trace.keys.size() * sizeof(Key)));
    if (!out) {
      fmt::print(stderr, "caches: could not write {}\n", path.string());
      return false;
    }
    fmt::print("Wrote {} ({} keys, checksum {:016x})\n", path.string(), trace.keys.size(),
               checksum(trace.keys));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // `--dump-traces=DIR` is this program's own; Google Benchmark sees the rest.
  std::vector<char*> args(argv, argv + argc);
  std::optional<std::filesystem::path> dump;
  for (auto it = args.begin() + 1; it != args.end();) {
    const std::string_view arg = *it;
    if (arg.starts_with("--dump-traces=")) {
      dump = std::string(arg.substr(std::string_view("--dump-traces=").size()));
      it = args.erase(it);
    } else {
      ++it;
    }
  }
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  if (dump && !dump_traces(*dump)) return 1;
  fmt::print("{}", load_note());
  register_benchmarks();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  fmt::print("\nSummary of this run\n{}", load_note());
  print_hits(reporter);
  print_bytes(reporter);
  print_hit_ratios();
  return 0;
}
