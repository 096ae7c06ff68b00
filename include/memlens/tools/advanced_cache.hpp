// memlens: AdvancedCache (seed exercise 14), a thread-safe cache bounded by the bytes its
// entries really occupy, with LRU, LFU, FIFO and W-TinyLFU eviction, TTLs, optional weak
// values, single-flight loading and persistence.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "memlens/detail/cache_core.hpp"
#include "memlens/errors.hpp"
#include "memlens/object.hpp"
#include "memlens/serialize.hpp"
#include "memlens/sys.hpp"
#include "memlens/threads.hpp"
#include "memlens/tools/ttl_weak_cache.hpp"
#include "memlens/weakref.hpp"

namespace memlens {

/// Which entry a full AdvancedCache gives up.
enum class EvictionPolicy {
  LRU,      ///< the least recently used
  LFU,      ///< the least frequently used; ties: the least recently used
  FIFO,     ///< the oldest set
  TinyLFU,  ///< Window TinyLFU, as Caffeine: recency for newcomers, frequency to stay
};

/// What an AdvancedCache did, summed over its shards at one moment.
struct CacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;       ///< entries removed to keep within the memory limit
  std::uint64_t expirations = 0;     ///< entries removed because their TTL passed
  std::size_t entries = 0;
  std::size_t memory_bytes = 0;      ///< current_memory_usage()
  std::size_t max_memory_bytes = 0;
  std::uint64_t collected = 0;       ///< weakly held values found dead (removed)
  std::uint64_t evicted_bytes = 0;   ///< bytes given back by evictions
  std::uint64_t expired_bytes = 0;   ///< bytes given back by expirations
  std::uint64_t rejected = 0;        ///< sets refused: a value larger than the whole limit
  // Policy counters.
  std::uint64_t promotions = 0;      ///< LFU: frequency increases; TinyLFU: probation to protected
  std::uint64_t admissions = 0;      ///< TinyLFU: window candidates that won their duel
  std::uint64_t admission_rejections = 0;  ///< TinyLFU: window candidates that lost it
  std::size_t window_bytes = 0;      ///< TinyLFU: bytes in the admission windows
  std::size_t window_target_bytes = 0;  ///< TinyLFU: what the windows are sized to now

  /// hits / (hits + misses), 0 before any lookup.
  double hit_rate() const noexcept {
    const std::uint64_t lookups = hits + misses;
    return lookups == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(lookups);
  }
};

/// Everything an AdvancedCache can be told at construction.
struct CacheOptions {
  double max_memory_mb = 100;  ///< the limit, in MiB (2^20 bytes)
  EvictionPolicy policy = EvictionPolicy::LRU;
  bool use_weak_refs = false;  ///< hold Ref values weakly (V must be a Ref)
  /// Independent locks (a power of two, at most 64); 0 picks 4 per hardware thread, 4 to 64.
  std::size_t shards = 0;
  /// When set, a thread removes expired (and dead weak) entries this often, so their memory
  /// comes back even when nobody calls the cache. It holds HeapLock meanwhile; with Ref values
  /// it is a thread using memlens objects, so the program's other threads follow the heap-lock
  /// rule from then on.
  std::optional<std::chrono::steady_clock::duration> sweep_interval;
  /// What TTLs are measured against, if not `std::chrono::steady_clock::now` (a test's manual
  /// clock); read only while entries with a TTL exist.
  std::function<std::chrono::steady_clock::time_point()> clock;
};

/**
 * A cache bounded by the memory its entries really occupy (seed exercise 14).
 *
 * An entry costs `sys::deep_sizeof(key) + sys::deep_sizeof(value)` plus the cache's own bytes
 * for it (its node, its slots in the index, its place in the expiry index), all counted
 * as allocated, so `current_memory_usage()` is what a tracer sees the cache holding. When a
 * call returns, the usage is within `max_memory_mb`: a set evicts what it must first, by the
 * policy; a value larger than the whole limit is refused with ValueError.
 *
 * ```cpp
 * memlens::AdvancedCache<std::string, std::string> cache(50, memlens::EvictionPolicy::LRU);
 * cache.set("key1", "value1", std::chrono::minutes(5));
 * cache.get("key1");     // std::optional<std::string>("value1")
 * auto v = cache.get_or_set("key2", [] { return load("key2"); });  // one load per miss
 * cache.save_to_disk("cache.bin");
 * ```
 *
 * Thread-safe: any member may be called from any number of threads at once. Keys hash to one
 * of several shards, each with its own lock, so threads on different keys rarely wait for each
 * other; LRU, LFU and FIFO still evict the globally right entry (shards publish their
 * candidates; recency is ordered across shards by the CPU's time-stamp counter). Values of Ref
 * type follow memlens' heap-lock rule when several threads use them (docs/design.md, "Threads").
 * Values removed by the cache are destroyed after its locks are released, so a destructor may
 * call back into the cache.
 */
template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>>
class AdvancedCache {
  using Duration = std::chrono::steady_clock::duration;
  static constexpr std::int64_t no_deadline = std::numeric_limits<std::int64_t>::max();

  // What a node holds: the value, or for a weak cache of Refs, a weak reference to it.
  template <class T>
  struct SlotOf {
    T value;
    SlotOf(T v, bool) : value(std::move(v)) {}
    std::optional<T> get() const { return value; }
    bool dead() const noexcept { return false; }
    std::size_t extra_bytes() const { return out_of_line(value); }
  };
  template <class X>
  struct SlotOf<Ref<X>> {
    std::variant<Ref<X>, Weak<X>> value;
    // Built holding its alternative, not default-built then emplaced over: emplace's reset of
    // the old alternative made g++ -O2 with ASan see a Weak read uninitialized (a false positive,
    // but -Werror).
    SlotOf(Ref<X> v, bool weak) : value(hold(std::move(v), weak)) {}
    static std::variant<Ref<X>, Weak<X>> hold(Ref<X> v, bool weak) {
      if (weak) return std::variant<Ref<X>, Weak<X>>(std::in_place_type<Weak<X>>, v);
      return std::variant<Ref<X>, Weak<X>>(std::in_place_type<Ref<X>>, std::move(v));
    }
    std::optional<Ref<X>> get() const {
      if (auto* strong = std::get_if<Ref<X>>(&value)) return *strong;
      Ref<X> live = std::get<Weak<X>>(value).lock();
      if (!live) return std::nullopt;
      return live;
    }
    bool dead() const noexcept {
      auto* weak = std::get_if<Weak<X>>(&value);
      return weak != nullptr && weak->expired();
    }
    // A weakly held value is not the cache's memory.
    std::size_t extra_bytes() const {
      auto* strong = std::get_if<Ref<X>>(&value);
      return strong != nullptr ? out_of_line(*strong) : 0;
    }
  };
  using Slot = SlotOf<V>;

  // An entry. The bits of `packed`: 0-39 the out-of-line bytes of key and value, 40-63 the
  // policy's tag (LFU: the frequency; TinyLFU: the region).
  struct Node : detail::cache::Links {
    K key;
    Slot slot;
    std::uint64_t stamp = 0;  // last access (LRU, LFU, TinyLFU) or insertion (FIFO)
    std::int64_t deadline = no_deadline;
    std::uint64_t packed = 0;

    Node(K k, Slot s) : key(std::move(k)), slot(std::move(s)) {}
    std::size_t extra() const noexcept { return static_cast<std::size_t>(packed & extra_mask); }
    void set_extra(std::size_t bytes) noexcept { packed = (packed & ~extra_mask) | bytes; }
    std::uint32_t tag() const noexcept { return static_cast<std::uint32_t>(packed >> 40); }
    void set_tag(std::uint32_t t) noexcept {
      packed = (packed & extra_mask) | (static_cast<std::uint64_t>(t) << 40);
    }
  };
  static constexpr std::uint64_t extra_mask = (std::uint64_t{1} << 40) - 1;
  static constexpr std::uint32_t max_frequency = (1u << 24) - 1;

  using Counted = detail::cache::Counting<Node>;
  using Expiry = std::set<std::pair<std::int64_t, Node*>, std::less<>,
                          detail::cache::Counting<std::pair<std::int64_t, Node*>>>;

  // LFU's frequency buckets, chained in increasing frequency through their neighbours' counts.
  struct Bucket {
    detail::cache::List list;
    std::uint32_t lower = 0;   // the next smaller frequency present, 0 if none
    std::uint32_t higher = 0;  // the next larger, 0 if none
  };
  using Buckets = std::unordered_map<std::uint32_t, Bucket, std::hash<std::uint32_t>,
                                     std::equal_to<>,
                                     detail::cache::Counting<std::pair<const std::uint32_t, Bucket>>>;

  // TinyLFU's regions; a candidate is a probation entry just pushed out of the window, which
  // still has to win a duel against the main space's victim.
  enum Region : std::uint32_t { window = 0, probation = 1, protected_region = 2, candidate = 3 };

  // A load in progress (get_or_set): the others asking for the key wait for it.
  struct Flight {
    std::thread::id owner;
    bool done = false;
    std::optional<V> value;
    std::exception_ptr error;
  };

  struct alignas(64) Shard {
    detail::cache::SpinLock mutex;
    std::condition_variable_any loaded;  // a Flight of this shard finished
    detail::cache::Clock clock;
    std::size_t structure = 0;       // what the containers below hold (their allocator counts)
    std::size_t extras = 0;          // out-of-line bytes of the keys and values
    detail::cache::Index<Node> table{&structure};  // the entries, each a node of its own
    detail::cache::List order;  // LRU, FIFO: front newest; TinyLFU: the window
    detail::cache::List probation, protected_list;
    std::size_t window_bytes = 0, protected_bytes = 0;
    Buckets buckets{0, std::hash<std::uint32_t>{}, std::equal_to<>{},
                    typename Buckets::allocator_type(&structure)};
    std::uint32_t min_frequency = 0;
    detail::cache::FrequencySketch sketch{&structure};
    Expiry expiry{std::less<>{}, typename Expiry::allocator_type(&structure)};
    std::unordered_map<K, std::shared_ptr<Flight>, Hash, Eq> flights;
    // Lookups not yet reported to TinyLFU's hill climber.
    std::uint64_t sample_hits = 0, sample_misses = 0;
    // Counters (read by stats()).
    std::uint64_t hits = 0, misses = 0, evictions = 0, expirations = 0, collected = 0;
    std::uint64_t evicted_bytes = 0, expired_bytes = 0, promotions = 0, admissions = 0,
                  admission_rejections = 0;
    // Published under the lock for the choice of a victim without taking every lock.
    std::atomic<std::size_t> published_count{0};
    std::atomic<std::size_t> published_bytes{0};
    std::atomic<std::uint64_t> published_frequency{0};
    std::atomic<std::uint64_t> published_stamp{0};

    std::size_t bytes() const noexcept { return structure + extras; }
  };

  enum class Removal { evicted, expired, collected, erased, replaced };

  // Values removed under a shard's lock, destroyed once it is released.
  using Graveyard = std::vector<Slot>;

 public:
  using key_type = K;
  using mapped_type = V;

  /// The seed's constructor: `max_memory_mb` MiB, the policy, and whether values are held
  /// weakly (`use_weak_refs` needs V = Ref<X>; any other V throws ValueError naming it).
  explicit AdvancedCache(double max_memory_mb = 100, EvictionPolicy policy = EvictionPolicy::LRU,
                         bool use_weak_refs = false)
      : AdvancedCache(CacheOptions{max_memory_mb, policy, use_weak_refs, 0, std::nullopt, {}}) {}

  /// Every option: see CacheOptions. A limit that is not a positive number, or a shard count
  /// that is not a power of two up to 64, throws ValueError.
  explicit AdvancedCache(const CacheOptions& options)
      : policy_(options.policy), weak_(options.use_weak_refs), clock_(options.clock) {
    if (!(options.max_memory_mb > 0) || !std::isfinite(options.max_memory_mb)) {
      throw ValueError("AdvancedCache: max_memory_mb must be a positive number, got " +
                       std::to_string(options.max_memory_mb));
    }
    max_bytes_ = static_cast<std::size_t>(std::llround(options.max_memory_mb * 1048576.0));
    if (max_bytes_ == 0) max_bytes_ = 1;
    if (weak_ && !detail::is_ref<V>::value) {
      throw ValueError("AdvancedCache: use_weak_refs needs Ref values, and " +
                       detail::demangle(typeid(V).name()) +
                       " cannot be weakly referenced");
    }
    std::size_t shards = options.shards;
    if (shards == 0) {
      shards = std::clamp<std::size_t>(std::bit_ceil(4 * std::max(1u, std::thread::hardware_concurrency())),
                                       4, 64);
    }
    if (!std::has_single_bit(shards) || shards > 64) {
      throw ValueError("AdvancedCache: shards must be a power of two up to 64, got " +
                       std::to_string(shards));
    }
    shard_count_ = shards;
    shard_shift_ = static_cast<unsigned>(64 - std::countr_zero(shards));
    shards_ = std::make_unique<Shard[]>(shards);
    // What a shard's first entry adds beyond its node: the index's first array, the sketch's
    // smallest table, LFU's first bucket (measured, as its size is the library's).
    first_overhead_ = 8 * sizeof(std::uint64_t);
    if (policy_ == EvictionPolicy::TinyLFU) first_overhead_ += 8 * sizeof(std::uint64_t);
    if (policy_ == EvictionPolicy::LFU) {
      std::size_t bytes = 0;
      Buckets probe(0, std::hash<std::uint32_t>{}, std::equal_to<>{},
                    typename Buckets::allocator_type(&bytes));
      probe.try_emplace(1);
      first_overhead_ += bytes;
    }
    for (std::size_t i = 0; i < shard_count_; ++i) publish(shards_[i]);
    if (options.sweep_interval) {
      if (options.sweep_interval->count() <= 0) {
        throw ValueError("AdvancedCache: sweep_interval must be positive");
      }
      sweeper_ = std::thread([this, interval = *options.sweep_interval] { sweep_loop(interval); });
    }
  }

  AdvancedCache(const AdvancedCache&) = delete;
  AdvancedCache& operator=(const AdvancedCache&) = delete;

  /// Stops the sweeper (if any) and destroys every entry.
  ~AdvancedCache() {
    if (sweeper_.joinable()) {
      {
        std::lock_guard lock(sweep_mutex_);
        stopping_ = true;
      }
      sweep_wake_.notify_all();
      sweeper_.join();
    }
    // The index does not own the nodes: each goes back to the allocator it came from.
    for (std::size_t i = 0; i < shard_count_; ++i) {
      Counted alloc(&shards_[i].structure);
      shards_[i].table.for_each([&](Node* n) {
        std::allocator_traits<Counted>::destroy(alloc, n);
        std::allocator_traits<Counted>::deallocate(alloc, n, 1);
      });
    }
  }

  /// Maps `key` to `value`, replacing any previous value, for `ttl` if given (no expiry
  /// otherwise). Evicts by the policy until it fits; never the entry being set. Throws
  /// ValueError for a ttl that is not positive, a null Ref in a weak cache, or an entry larger
  /// than the whole limit; the cache is then unchanged.
  void set(const K& key, const V& value, std::optional<Duration> ttl = {}) {
    insert(key, value, ttl, 0);
  }

  /// The value for `key`, or nothing when it is absent, expired or (weak cache) dead. Counts a
  /// hit or a miss; an expired or dead entry found is removed.
  std::optional<V> get(const K& key) {
    expire_if_due();
    const std::size_t hash = hash_(key);
    Shard& s = shard_for(hash);
    std::optional<V> value;
    {
      Graveyard graveyard;
      std::lock_guard lock(s.mutex);
      value = lookup(s, key, hash, graveyard);
    }
    if (policy_ == EvictionPolicy::LFU) fit();
    return value;
  }

  /// Removes `key`; whether it was there (an expired or dead entry counts as absent).
  bool erase(const K& key) {
    expire_if_due();
    const std::size_t hash = hash_(key);
    Shard& s = shard_for(hash);
    Graveyard graveyard;
    std::lock_guard lock(s.mutex);
    Node* n = find(s, key, hash);
    if (n == nullptr) return false;
    const bool live = !is_expired(*n, now()) && !n->slot.dead();
    remove(s, n, Removal::erased, graveyard);
    publish(s);
    return live;
  }

  /// Removes every entry (the statistics stay).
  void clear() {
    for (std::size_t i = 0; i < shard_count_; ++i) {
      Shard& s = shards_[i];
      Graveyard graveyard;
      std::lock_guard lock(s.mutex);
      std::vector<Node*> nodes;
      nodes.reserve(s.table.size());
      s.table.for_each([&](Node* n) { nodes.push_back(n); });
      graveyard.reserve(nodes.size());
      for (Node* n : nodes) remove(s, n, Removal::erased, graveyard);
      publish(s);
    }
  }

  /// The bytes the cache holds now: its entries' costs and its tables (expired entries are
  /// removed first).
  std::size_t current_memory_usage() const {
    expire_if_due();
    return used_.load(std::memory_order_relaxed);
  }
  /// The limit, in bytes.
  std::size_t max_memory_bytes() const noexcept { return max_bytes_; }
  /// The number of entries: expired ones are removed first; dead weak ones not yet found
  /// are included.
  std::size_t size() const {
    expire_if_due();
    return size_unpurged();
  }
  EvictionPolicy policy() const noexcept { return policy_; }

  /// Removes every expired and (weak cache) dead entry, then evicts until within the limit;
  /// returns the number of entries removed.
  std::size_t evict_if_needed() {
    std::size_t removed = purge(now(), /*all=*/true);
    while (used_.load(std::memory_order_relaxed) > max_bytes_ && evict_one(nullptr, 0)) ++removed;
    return removed;
  }

  /// The counters and sizes, summed over the shards.
  CacheStats stats() const {
    expire_if_due();
    CacheStats out;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      Shard& s = shards_[i];
      std::lock_guard lock(s.mutex);
      out.hits += s.hits;
      out.misses += s.misses;
      out.evictions += s.evictions;
      out.expirations += s.expirations;
      out.collected += s.collected;
      out.evicted_bytes += s.evicted_bytes;
      out.expired_bytes += s.expired_bytes;
      out.promotions += s.promotions;
      out.admissions += s.admissions;
      out.admission_rejections += s.admission_rejections;
      out.entries += s.table.size();
      out.window_bytes += s.window_bytes;
      if (policy_ == EvictionPolicy::TinyLFU) {
        out.window_target_bytes += window_target(s);
      }
    }
    out.rejected = rejected_.load(std::memory_order_relaxed);
    out.memory_bytes = current_memory_usage();
    out.max_memory_bytes = max_bytes_;
    return out;
  }

  /**
   * The value for `key`; on a miss, `factory()`'s, which is then set (with `ttl`). Concurrent
   * misses on one key call `factory` once: the others wait for its value (and count as hits).
   * If it throws, nothing is set and every waiter gets the exception. A factory that asks
   * this cache for the same key through `get_or_set` gets memlens::Error instead of waiting
   * for itself. A caller that may wait must not hold HeapLock if the factory (on another
   * thread) needs it: the factory could never finish.
   */
  template <class F>
    requires std::is_invocable_r_v<V, F&>
  V get_or_set(const K& key, F&& factory, std::optional<Duration> ttl = {}) {
    expire_if_due();
    const std::size_t hash = hash_(key);
    Shard& s = shard_for(hash);
    std::shared_ptr<Flight> flight;
    {
      Graveyard graveyard;
      std::unique_lock lock(s.mutex);
      if (auto found = lookup(s, key, hash, graveyard)) {
        lock.unlock();
        if (policy_ == EvictionPolicy::LFU) fit();
        return *std::move(found);
      }
      if (auto it = s.flights.find(key); it != s.flights.end()) {
        std::shared_ptr<Flight> other = it->second;
        if (other->owner == std::this_thread::get_id()) {
          throw Error(
              "AdvancedCache::get_or_set: the factory for this key asked for the same key "
              "(it would wait for itself)");
        }
        s.loaded.wait(lock, [&] { return other->done; });
        if (other->error) std::rethrow_exception(other->error);
        // The miss lookup() counted was this caller's; it got the loaded value: a hit.
        --s.misses;
        ++s.hits;
        return *other->value;
      }
      flight = std::make_shared<Flight>();
      flight->owner = std::this_thread::get_id();
      s.flights.emplace(key, flight);
    }
    auto finish = [&](std::optional<V> value, std::exception_ptr error) {
      {
        std::lock_guard lock(s.mutex);
        flight->value = std::move(value);
        flight->error = std::move(error);
        flight->done = true;
        s.flights.erase(key);
      }
      s.loaded.notify_all();
    };
    try {
      V value = factory();
      insert(key, value, ttl, 0);
      finish(value, nullptr);
      return value;
    } catch (...) {
      finish(std::nullopt, std::current_exception());
      throw;
    }
  }

  /**
   * Writes every live entry to `path`, atomically (a temporary file, flushed to disk, renamed),
   * as a versioned, checksummed memlens file: keys and values through memlens::serial (so K and
   * V need `save` support), each entry's remaining TTL as an absolute wall-clock deadline, and
   * the order the policy keeps (oldest first), so a cache loaded from it evicts alike.
   */
  void save_to_disk(const std::filesystem::path& path) const {
    const std::int64_t steady_now = now();
    const std::int64_t wall_now = wall_clock_now();
    struct Saved {
      std::uint64_t stamp;
      const Node* node;
    };
    serial::Writer out;
    std::vector<std::unique_lock<detail::cache::SpinLock>> locks;  // one consistent picture of the cache
    locks.reserve(shard_count_);
    std::vector<Saved> nodes;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      locks.emplace_back(shards_[i].mutex);
      shards_[i].table.for_each([&](const Node* n) {
        if (!is_expired(*n, steady_now) && !n->slot.dead()) nodes.push_back({n->stamp, n});
      });
    }
    std::sort(nodes.begin(), nodes.end(),
              [](const Saved& a, const Saved& b) { return a.stamp < b.stamp; });
    out.size(nodes.size());
    for (const Saved& saved : nodes) {
      const Node& n = *saved.node;
      std::optional<V> value = n.slot.get();
      serial::save(out, n.key);
      serial::save(out, *value);
      out.i64(n.deadline == no_deadline ? 0 : wall_now + (n.deadline - steady_now));
      out.u32(policy_ == EvictionPolicy::LFU ? n.tag() : 1);
    }
    locks.clear();
    serial::write_file(path, file_magic, file_version, out.data(), "AdvancedCache");
  }

  /**
   * Replaces the cache's entries with those saved in `path` (by `save_to_disk`), in their
   * saved order, with their remaining TTLs; entries whose deadline passed are skipped. The
   * file is read and checked whole first: a missing, truncated, corrupt or other-version file,
   * or an entry larger than this cache's whole limit, throws memlens::Error and leaves the
   * cache as it was. A weak cache's loaded values have no other owner, so they are collected
   * at once: load into a strong cache.
   */
  void load_from_disk(const std::filesystem::path& path) {
    const std::string payload =
        serial::read_file(path, file_magic, file_version, "AdvancedCache");
    serial::Reader in(payload, "AdvancedCache: cannot load '" + path.string() + "'");
    struct Loaded {
      K key;
      V value;
      std::int64_t deadline;
      std::uint32_t frequency;
    };
    std::vector<Loaded> entries;
    const std::size_t count = in.size(serial::min_bytes<K> + serial::min_bytes<V> + 12);
    entries.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      Loaded e{K{}, V{}, 0, 0};
      serial::load(in, e.key);
      serial::load(in, e.value);
      e.deadline = in.i64();
      e.frequency = in.u32();
      if (e.frequency == 0 || e.frequency > max_frequency) in.fail("bad frequency");
      if (weak_ && !is_present(e.value)) in.fail("a weak cache cannot hold a null value");
      if (entry_estimate(e.key, e.value, e.deadline != 0) > max_bytes_) {
        in.fail("an entry is larger than the cache's whole limit (" +
                std::to_string(max_bytes_) + " bytes)");
      }
      entries.push_back(std::move(e));
    }
    in.finish();
    clear();
    const std::int64_t wall_now = wall_clock_now();
    for (Loaded& e : entries) {
      std::optional<Duration> ttl;
      if (e.deadline != 0) {
        if (e.deadline <= wall_now) continue;
        ttl = std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(e.deadline - wall_now));
        if (ttl->count() <= 0) continue;
      }
      insert(e.key, e.value, ttl, e.frequency);
    }
  }

 private:
  static constexpr char file_magic[] = "memlensC";
  static constexpr std::uint32_t file_version = 1;

  std::int64_t now() const {
    const auto t = clock_ ? clock_() : std::chrono::steady_clock::now();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  static std::int64_t wall_clock_now() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static bool is_expired(const Node& n, std::int64_t at) noexcept {
    return n.deadline != no_deadline && n.deadline <= at;
  }
  static bool is_present(const V& value) {
    if constexpr (detail::is_ref<V>::value) {
      return static_cast<bool>(value);
    } else {
      return true;
    }
  }

  // What a key or value owns beyond its own bytes (which are inside the node).
  template <class T>
  static std::size_t out_of_line(const T& x) {
    return sys::deep_sizeof(x) - sizeof(T);
  }
  // The cache's own bytes for an entry, before it exists: the node, its hash-table link and
  // bucket, and its expiry-index node. (The real figure, counted as allocated, replaces it.)
  static constexpr std::size_t node_estimate(bool has_ttl) noexcept {
    return sizeof(Node) + 2 * sizeof(void*) +
           (has_ttl ? sizeof(std::pair<std::int64_t, Node*>) + 4 * sizeof(void*) : 0);
  }
  std::size_t entry_estimate(const K& key, const V& value, bool has_ttl) const {
    return out_of_line(key) + (weak_ ? 0 : out_of_line(value)) + node_estimate(has_ttl);
  }

  Shard& shard_for(std::size_t hash) const noexcept {
    return shards_[shard_count_ == 1 ? 0 : detail::cache::mix(hash) >> shard_shift_];
  }
  std::size_t shard_index(const Shard& s) const noexcept {
    return static_cast<std::size_t>(&s - shards_.get());
  }

  Node* find(Shard& s, const K& key, std::size_t hash) const {
    return s.table.find(index_hash(hash), [&](const Node& n) { return eq_(n.key, key); });
  }
  // The index's hash: the shard's bits rotated away, as they are the same for all its keys.
  std::uint64_t index_hash(std::size_t hash) const noexcept {
    return std::rotl(detail::cache::mix(hash), static_cast<int>(64 - shard_shift_));
  }
  // Allocates and adds a node (strong guarantee).
  Node* add_node(Shard& s, K key, Slot slot, std::size_t hash) {
    Counted alloc(&s.structure);
    Node* n = std::allocator_traits<Counted>::allocate(alloc, 1);
    try {
      std::allocator_traits<Counted>::construct(alloc, n, std::move(key), std::move(slot));
    } catch (...) {
      std::allocator_traits<Counted>::deallocate(alloc, n, 1);
      throw;
    }
    try {
      s.table.insert(n, index_hash(hash), [&](const Node& m) { return index_hash(hash_(m.key)); });
    } catch (...) {
      std::allocator_traits<Counted>::destroy(alloc, n);
      std::allocator_traits<Counted>::deallocate(alloc, n, 1);
      throw;
    }
    return n;
  }

  // get's body, under the shard's lock.
  std::optional<V> lookup(Shard& s, const K& key, std::size_t hash, Graveyard& graveyard) {
    Node* n = find(s, key, hash);
    if (policy_ == EvictionPolicy::TinyLFU) {
      s.sketch.increment(detail::cache::mix(hash));
      // Reported in batches, so that the climber's counters are not a line every hit writes.
      if (s.sample_hits + s.sample_misses >= std::max<std::size_t>(64, s.table.size())) {
        report_sample(s);
      }
    }
    if (n != nullptr) {
      if (is_expired(*n, n->deadline == no_deadline ? 0 : now())) {
        remove(s, n, Removal::expired, graveyard);
        n = nullptr;
      } else if (std::optional<V> value = n->slot.get()) {
        ++s.hits;
        ++s.sample_hits;
        if (policy_ == EvictionPolicy::LFU) {
          // A new frequency may need a bucket: its bytes count like any other.
          const std::size_t before = s.bytes();
          touch(s, n);
          adjust(static_cast<std::ptrdiff_t>(s.bytes()) - static_cast<std::ptrdiff_t>(before));
          publish(s);
        } else {
          // Only LRU's candidate moves on a hit, and only when it was the one read.
          const bool was_candidate = policy_ == EvictionPolicy::LRU && s.order.back() == n;
          touch(s, n);
          if (was_candidate) publish(s);
        }
        return value;
      } else {
        remove(s, n, Removal::collected, graveyard);
        n = nullptr;
      }
      publish(s);
    }
    ++s.misses;
    ++s.sample_misses;
    return std::nullopt;
  }

  void insert(const K& key, const V& value, std::optional<Duration> ttl, std::uint32_t frequency) {
    std::int64_t deadline = no_deadline;
    if (ttl) {
      if (ttl->count() <= 0) {
        throw ValueError("AdvancedCache: ttl must be positive, got " + detail::duration_text(*ttl));
      }
      // A TTL beyond the clock's range (duration::max()) saturates: such an entry never expires.
      const std::int64_t at = now();
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*ttl).count();
      deadline = ns >= no_deadline - 1 - at ? no_deadline - 1 : at + ns;
    }
    if (weak_ && !is_present(value)) throw ValueError("AdvancedCache: cannot hold a null Ref weakly");
    // The copies the cache keeps are what it measures: a copy's capacity may differ from the
    // caller's (a string grown by += has room to spare; its copy has none).
    K stored_key(key);
    Slot slot(value, weak_);  // before the lock: a Weak registers with its object
    const std::size_t extra = out_of_line(stored_key) + slot.extra_bytes();
    const std::size_t estimate = extra + node_estimate(ttl.has_value());
    if (estimate + first_overhead_ > max_bytes_ || extra > extra_mask) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      throw ValueError("AdvancedCache: an entry of " + std::to_string(estimate) +
                       " bytes is larger than the whole limit of " + std::to_string(max_bytes_) +
                       " bytes");
    }
    expire_if_due();
    const std::size_t hash = hash_(key);
    Shard& s = shard_for(hash);
    // A new value for a present key is an access of it, applied before room is made, so the
    // eviction sees the key as recent; and only the growth over its old cost is claimed.
    std::size_t claim = estimate;
    const Node* touched = nullptr;
    {
      std::lock_guard lock(s.mutex);
      if (Node* old = find(s, key, hash)) {
        const std::size_t old_cost = old->extra() + node_estimate(old->deadline != no_deadline);
        claim = estimate - std::min(estimate, old_cost);
        access_for_set(s, old, /*counted_by_caller=*/false);
        publish(s);
        touched = old;
      }
    }
    reserve(claim, &key, hash);
    Graveyard graveyard;
    try {
      std::lock_guard lock(s.mutex);
      const std::size_t before = s.bytes();
      Node* n = find(s, key, hash);
      const bool replacing = n != nullptr;
      if (replacing) {
        // A new value for a key is an access of it: the policy sees a use (FIFO: a new entry).
        graveyard.push_back(std::move(n->slot));
        n->slot = std::move(slot);
        resize_in_region(s, *n, extra);
        s.extras -= n->extra();
        if (n->deadline != no_deadline) {
          s.expiry.erase({n->deadline, n});
          ttl_entries_.fetch_sub(1, std::memory_order_relaxed);
        }
      } else {
        n = add_node(s, std::move(stored_key), std::move(slot), hash);
      }
      n->set_extra(extra);
      s.extras += extra;
      n->deadline = deadline;
      if (deadline != no_deadline) {
        s.expiry.emplace(deadline, n);
        ttl_entries_.fetch_add(1, std::memory_order_relaxed);
        lower_next_deadline(deadline);
      }
      if (!replacing) {
        link(s, n, frequency == 0 ? 1 : frequency);
      } else if (n != touched) {  // evicted and set again since the access above
        access_for_set(s, n, /*counted_by_caller=*/true);
      }
      publish(s);
      // The claim becomes the real change, under the lock, so that a removal of this entry
      // never subtracts bytes not yet added: usually less (a replaced value's bytes come
      // back), more when the index or a table grew.
      adjust(static_cast<std::ptrdiff_t>(s.bytes()) - static_cast<std::ptrdiff_t>(before) -
             static_cast<std::ptrdiff_t>(claim));
    } catch (...) {
      adjust(-static_cast<std::ptrdiff_t>(claim));
      throw;
    }
    fit(&key, hash);
  }

  // A set's access of a present key: FIFO takes it as a new entry, the others as a use. LFU
  // may make a bucket, whose bytes are counted here unless the caller measures the change.
  void access_for_set(Shard& s, Node* n, bool counted_by_caller) {
    if (policy_ == EvictionPolicy::FIFO) {
      n->stamp = s.clock.tick();
      s.order.move_to_front(n);
    } else if (counted_by_caller) {
      touch(s, n);
    } else {
      const std::size_t before = s.bytes();
      touch(s, n);  // LFU may make a bucket
      adjust(static_cast<std::ptrdiff_t>(s.bytes()) - static_cast<std::ptrdiff_t>(before));
    }
  }

  // Evicts until within the limit (after a change that could not make room first).
  void fit(const K* key = nullptr, std::size_t hash = 0) {
    while (used_.load(std::memory_order_relaxed) > max_bytes_ && evict_one(key, hash)) {
    }
  }

  void adjust(std::ptrdiff_t change) const noexcept {
    if (change >= 0) {
      used_.fetch_add(static_cast<std::size_t>(change), std::memory_order_relaxed);
    } else {
      used_.fetch_sub(static_cast<std::size_t>(-change), std::memory_order_relaxed);
    }
  }

  // Claims `bytes` of the limit, evicting (never `key`'s entry) until they fit. If nothing
  // else is left, the bytes are claimed anyway: what remains is `key`'s old entry, whose
  // replacement gives its bytes back.
  void reserve(std::size_t bytes, const K* key, std::size_t hash) {
    std::size_t current = used_.load(std::memory_order_relaxed);
    for (;;) {
      if (current + bytes <= max_bytes_) {
        if (used_.compare_exchange_weak(current, current + bytes, std::memory_order_relaxed)) return;
        continue;
      }
      if (!evict_one(key, hash)) {
        used_.fetch_add(bytes, std::memory_order_relaxed);
        return;
      }
      current = used_.load(std::memory_order_relaxed);
    }
  }

  // Places a new node in the policy's structures; LFU starts it at `frequency` (1, or what a
  // saved cache recorded).
  void link(Shard& s, Node* n, std::uint32_t frequency) {
    n->stamp = s.clock.tick();
    switch (policy_) {
      case EvictionPolicy::LRU:
      case EvictionPolicy::FIFO:
        s.order.push_front(n);
        break;
      case EvictionPolicy::LFU:
        n->set_tag(frequency);
        bucket_add(s, n, frequency);
        break;
      case EvictionPolicy::TinyLFU:
        // Newcomers enter the admission window; they reach the main space by winning a duel.
        s.sketch.ensure_capacity(s.table.size());
        s.sketch.increment(detail::cache::mix(hash_(n->key)));
        n->set_tag(window);
        s.order.push_front(n);
        s.window_bytes += entry_bytes(*n);
        trim_window(s);
        break;
    }
  }

  // The window's oldest entries beyond its share become candidates for the main space.
  void trim_window(Shard& s) const noexcept {
    const std::size_t target = window_target(s);
    while (s.window_bytes > target && s.order.size() > 1) {
      auto* oldest = static_cast<Node*>(s.order.back());
      s.order.remove(oldest);
      s.window_bytes -= entry_bytes(*oldest);
      oldest->set_tag(candidate);
      s.probation.push_front(oldest);
    }
  }

  // Takes a node out of the policy's structures.
  void unlink(Shard& s, Node* n) const noexcept {
    switch (policy_) {
      case EvictionPolicy::LRU:
      case EvictionPolicy::FIFO:
        s.order.remove(n);
        break;
      case EvictionPolicy::LFU:
        bucket_remove(s, n, n->tag());
        break;
      case EvictionPolicy::TinyLFU:
        switch (n->tag()) {
          case window:
            s.order.remove(n);
            s.window_bytes -= entry_bytes(*n);
            break;
          case probation:
          case candidate:
            s.probation.remove(n);
            break;
          default:
            s.protected_list.remove(n);
            s.protected_bytes -= entry_bytes(*n);
            break;
        }
        break;
    }
  }

  // TinyLFU sizes its regions in bytes: a replaced value changes its region's.
  void resize_in_region(Shard& s, const Node& n, std::size_t new_extra) noexcept {
    if (policy_ != EvictionPolicy::TinyLFU) return;
    std::size_t* region = n.tag() == window             ? &s.window_bytes
                          : n.tag() == protected_region ? &s.protected_bytes
                                                        : nullptr;
    if (region != nullptr) *region = *region - n.extra() + new_extra;
  }

  // A hit.
  void touch(Shard& s, Node* n) {
    switch (policy_) {
      case EvictionPolicy::LRU:
        n->stamp = s.clock.tick();
        s.order.move_to_front(n);
        break;
      case EvictionPolicy::FIFO:
        break;
      case EvictionPolicy::LFU: {
        n->stamp = s.clock.tick();
        const std::uint32_t f = n->tag();
        if (f == max_frequency) {
          s.buckets.find(f)->second.list.move_to_front(n);
          break;
        }
        bucket_promote(s, n, f);
        break;
      }
      case EvictionPolicy::TinyLFU:
        n->stamp = s.clock.tick();
        switch (n->tag()) {
          case window:
            s.order.move_to_front(n);
            break;
          case probation:
          case candidate:
            // A second use: into the protected segment, whose oldest go back to probation
            // when it outgrows its share.
            s.probation.remove(n);
            n->set_tag(protected_region);
            s.protected_list.push_front(n);
            s.protected_bytes += entry_bytes(*n);
            ++s.promotions;
            while (s.protected_bytes > protected_target(s) && s.protected_list.size() > 1) {
              auto* old = static_cast<Node*>(s.protected_list.back());
              s.protected_list.remove(old);
              s.protected_bytes -= entry_bytes(*old);
              old->set_tag(probation);
              s.probation.push_front(old);
            }
            break;
          default:
            s.protected_list.move_to_front(n);
            break;
        }
        break;
    }
  }

  // LFU: moves `n` from frequency f's bucket to f + 1's, creating it next to f's.
  void bucket_promote(Shard& s, Node* n, std::uint32_t f) {
    // References into the map survive its rehashing; iterators do not.
    Bucket* from = &s.buckets.find(f)->second;
    const std::uint32_t g = f + 1;
    if (from->higher != g) {
      Bucket& to = s.buckets.try_emplace(g).first->second;
      to.lower = f;
      to.higher = from->higher;
      if (from->higher != 0) s.buckets.find(from->higher)->second.lower = g;
      from->higher = g;
    }
    Bucket& target = s.buckets.find(g)->second;
    from->list.remove(n);
    target.list.push_front(n);
    n->set_tag(g);
    ++s.promotions;
    if (from->list.empty()) drop_bucket(s, s.buckets.find(f));
  }

  void bucket_add(Shard& s, Node* n, std::uint32_t f) {
    auto it = s.buckets.find(f);
    if (it == s.buckets.end()) {
      // Chains the new bucket between the nearest frequencies present (a walk from the
      // smallest: one step when f is 1, as for every new key).
      std::uint32_t lower = 0, higher = s.min_frequency;
      while (higher != 0 && higher < f) {
        lower = higher;
        higher = s.buckets.find(higher)->second.higher;
      }
      it = s.buckets.try_emplace(f).first;
      it->second.lower = lower;
      it->second.higher = higher;
      if (lower != 0) s.buckets.find(lower)->second.higher = f;
      if (higher != 0) s.buckets.find(higher)->second.lower = f;
      if (lower == 0) s.min_frequency = f;
    }
    it->second.list.push_front(n);
  }

  void bucket_remove(Shard& s, Node* n, std::uint32_t f) const noexcept {
    auto it = s.buckets.find(f);
    it->second.list.remove(n);
    if (it->second.list.empty()) drop_bucket(s, it);
  }

  void drop_bucket(Shard& s, typename Buckets::iterator it) const noexcept {
    const std::uint32_t lower = it->second.lower, higher = it->second.higher;
    if (lower != 0) s.buckets.find(lower)->second.higher = higher;
    if (higher != 0) s.buckets.find(higher)->second.lower = lower;
    if (s.min_frequency == it->first) s.min_frequency = higher;
    s.buckets.erase(it);
  }

  // What an entry counts for in TinyLFU's regions: its node and what its key and value own.
  static std::size_t entry_bytes(const Node& n) noexcept { return sizeof(Node) + n.extra(); }

  // TinyLFU's targets: a shard's fair share of the limit, less what its tables take beyond its
  // entries' nodes (the regions hold entries, counted by entry_bytes), split into window and
  // main, and the main space into 20% probation and 80% protected.
  std::size_t entry_space(const Shard& s) const noexcept {
    const std::size_t entries = s.table.size() * sizeof(Node) + s.extras;
    const std::size_t overhead = s.bytes() > entries ? s.bytes() - entries : 0;
    return share() > overhead ? share() - overhead : 0;
  }
  std::size_t share() const noexcept { return max_bytes_ / shard_count_; }
  std::size_t window_target(const Shard& s) const noexcept {
    const double fraction = window_share_.load(std::memory_order_relaxed);
    return std::max<std::size_t>(
        static_cast<std::size_t>(fraction * static_cast<double>(entry_space(s))), sizeof(Node));
  }
  std::size_t protected_target(const Shard& s) const noexcept {
    const std::size_t space = entry_space(s);
    return (space - std::min(space, window_target(s))) / 5 * 4;
  }

  // TinyLFU's hill climbing, as Caffeine's, once for the whole cache: after each sample of twice
  // as many lookups as the cache holds entries, the window's share moves on the same way if the
  // hit rate rose and turns back if it fell, by a step that decays, and restarts at 6.25 % when
  // the hit rate jumps by 5 points (the workload changed). Every shard sizes its window by it.
  void report_sample(Shard& s) {
    climb_hits_.fetch_add(s.sample_hits, std::memory_order_relaxed);
    const std::uint64_t lookups =
        climb_lookups_.fetch_add(s.sample_hits + s.sample_misses, std::memory_order_relaxed) +
        s.sample_hits + s.sample_misses;
    s.sample_hits = s.sample_misses = 0;
    if (lookups < std::max<std::size_t>(2 * size_unpurged(), 1024)) return;
    std::unique_lock climbing(climb_mutex_, std::try_to_lock);
    if (!climbing) return;
    const std::uint64_t sample = climb_lookups_.exchange(0, std::memory_order_relaxed);
    const std::uint64_t hits = climb_hits_.exchange(0, std::memory_order_relaxed);
    if (sample == 0) return;
    const double rate = static_cast<double>(hits) / static_cast<double>(sample);
    const double change = rate - last_hit_rate_;
    const double amount = change >= 0 ? step_ : -step_;
    step_ = std::abs(change) >= 0.05 ? (amount >= 0 ? 0.0625 : -0.0625) : amount * 0.98;
    const double fraction = window_share_.load(std::memory_order_relaxed);
    window_share_.store(std::clamp(fraction + amount, 0.0, 1.0), std::memory_order_relaxed);
    last_hit_rate_ = rate;
    trim_window(s);
  }

  // size() without the purge (the climber runs inside a lookup).
  std::size_t size_unpurged() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      n += shards_[i].published_count.load(std::memory_order_relaxed);
    }
    return n;
  }

  // Removes a node entirely; its value goes to the graveyard.
  void remove(Shard& s, Node* n, Removal why, Graveyard& graveyard) const {
    graveyard.reserve(graveyard.size() + 1);  // the only allocation: before anything changes
    const std::size_t before = s.bytes();
    unlink(s, n);
    if (n->deadline != no_deadline) {
      s.expiry.erase({n->deadline, n});
      ttl_entries_.fetch_sub(1, std::memory_order_relaxed);
    }
    s.extras -= n->extra();
    graveyard.push_back(std::move(n->slot));
    s.table.erase(n, index_hash(hash_(n->key)));
    Counted alloc(&s.structure);
    std::allocator_traits<Counted>::destroy(alloc, n);
    std::allocator_traits<Counted>::deallocate(alloc, n, 1);
    if (s.table.empty()) release_structures(s);
    const std::size_t freed = before - s.bytes();
    used_.fetch_sub(freed, std::memory_order_relaxed);
    switch (why) {
      case Removal::evicted:
        ++s.evictions;
        s.evicted_bytes += freed;
        break;
      case Removal::expired:
        ++s.expirations;
        s.expired_bytes += freed;
        break;
      case Removal::collected:
        ++s.collected;
        break;
      default:
        break;
    }
  }

  // An empty shard keeps no bucket array, sketch or index: an emptied cache holds nothing.
  void release_structures(Shard& s) const noexcept {
    s.table.release();
    Buckets no_buckets(0, std::hash<std::uint32_t>{}, std::equal_to<>{},
                       typename Buckets::allocator_type(&s.structure));
    s.buckets.swap(no_buckets);
    s.min_frequency = 0;
    s.sketch.clear();
    s.order.reset();
    s.probation.reset();
    s.protected_list.reset();
    s.window_bytes = s.protected_bytes = 0;
  }

  void publish(Shard& s) const noexcept {
    s.published_count.store(s.table.size(), std::memory_order_relaxed);
    s.published_bytes.store(s.bytes(), std::memory_order_relaxed);
    std::uint64_t frequency = 0, stamp = std::numeric_limits<std::uint64_t>::max();
    if (policy_ == EvictionPolicy::LFU) {
      if (s.min_frequency != 0) {
        frequency = s.min_frequency;
        stamp = static_cast<Node*>(s.buckets.find(s.min_frequency)->second.list.back())->stamp;
      }
    } else if (auto* back = s.order.back()) {
      stamp = static_cast<Node*>(back)->stamp;
    }
    s.published_frequency.store(frequency, std::memory_order_relaxed);
    s.published_stamp.store(stamp, std::memory_order_relaxed);
  }

  // The entry the policy gives up in a locked shard, never `exclude`; null if none.
  Node* victim(Shard& s, const Node* exclude) {
    auto first = [&](const detail::cache::List& list) -> Node* {
      for (auto* l = list.back(); l != nullptr; l = list.toward_front(l)) {
        if (l != exclude) return static_cast<Node*>(l);
      }
      return nullptr;
    };
    switch (policy_) {
      case EvictionPolicy::LRU:
      case EvictionPolicy::FIFO:
        return first(s.order);
      case EvictionPolicy::LFU:
        for (std::uint32_t f = s.min_frequency; f != 0; f = s.buckets.find(f)->second.higher) {
          if (Node* n = first(s.buckets.find(f)->second.list)) return n;
        }
        return nullptr;
      case EvictionPolicy::TinyLFU: {
        // The newest candidate pushed out of the window duels the main space's victim (the
        // oldest on probation); the sketch's estimate of their popularity decides who stays.
        Node* victim_node = first(s.probation);
        Node* newcomer = nullptr;
        if (auto* front = static_cast<Node*>(s.probation.front());
            front != nullptr && front->tag() == candidate && front != exclude && front != victim_node) {
          newcomer = front;
        }
        if (victim_node == nullptr) victim_node = first(s.protected_list);
        if (victim_node == nullptr) victim_node = first(s.order);
        if (newcomer == nullptr || victim_node == nullptr) return victim_node;
        const unsigned fc = s.sketch.frequency(detail::cache::mix(hash_(newcomer->key)));
        const unsigned fv = s.sketch.frequency(detail::cache::mix(hash_(victim_node->key)));
        // A popular-looking newcomer that still loses is admitted now and then, so that an
        // attacker's collisions cannot keep the main space closed (Caffeine does the same).
        const bool admit = fc > fv || (fc > 5 && (detail::cache::mix(s.clock.last) & 127) == 0);
        if (!admit) {
          ++s.admission_rejections;
          return newcomer;
        }
        ++s.admissions;
        newcomer->set_tag(probation);
        return victim_node;
      }
    }
    return nullptr;
  }

  // Evicts one entry by the policy, from whichever shard holds the right one; false if there
  // is nothing to evict but `key`'s own entry.
  bool evict_one(const K* key, std::size_t hash) {
    const Shard* own = key != nullptr ? &shard_for(hash) : nullptr;
    std::uint64_t tried = 0;  // bit i: shard i had nothing to give
    for (;;) {
      Shard* best = nullptr;
      std::uint64_t best_frequency = 0, best_stamp = 0;
      std::size_t best_bytes = 0;
      for (std::size_t i = 0; i < shard_count_; ++i) {
        Shard& s = shards_[i];
        if ((tried >> i) & 1) continue;
        const std::size_t count = s.published_count.load(std::memory_order_relaxed);
        if (count == 0) continue;
        if (policy_ == EvictionPolicy::TinyLFU) {
          const std::size_t bytes = s.published_bytes.load(std::memory_order_relaxed);
          if (best == nullptr || bytes > best_bytes) {
            best = &s;
            best_bytes = bytes;
          }
          continue;
        }
        const std::uint64_t f = s.published_frequency.load(std::memory_order_relaxed);
        const std::uint64_t t = s.published_stamp.load(std::memory_order_relaxed);
        if (best == nullptr || f < best_frequency || (f == best_frequency && t < best_stamp)) {
          best = &s;
          best_frequency = f;
          best_stamp = t;
        }
      }
      if (best == nullptr) return false;
      Graveyard graveyard;
      {
        std::lock_guard lock(best->mutex);
        const Node* exclude = best == own ? find(*best, *key, hash) : nullptr;
        if (Node* n = victim(*best, exclude)) {
          remove(*best, n, Removal::evicted, graveyard);
          publish(*best);
          return true;
        }
        publish(*best);
      }
      tried |= std::uint64_t{1} << shard_index(*best);
    }
  }

  // TTLs: expired entries are removed on any call once the earliest deadline has passed.
  void lower_next_deadline(std::int64_t deadline) const noexcept {
    std::int64_t current = next_deadline_.load(std::memory_order_relaxed);
    while (deadline < current &&
           !next_deadline_.compare_exchange_weak(current, deadline, std::memory_order_relaxed)) {
    }
  }
  void expire_if_due() const {
    if (ttl_entries_.load(std::memory_order_relaxed) == 0) return;
    const std::int64_t at = now();
    if (at >= next_deadline_.load(std::memory_order_relaxed)) purge(at, /*all=*/false);
  }

  // Removes expired entries from every shard (and, with `all`, dead weak ones); returns how
  // many.
  std::size_t purge(std::int64_t at, bool all) const {
    std::size_t removed = 0;
    // Taken down while the shards are scanned: a set meanwhile lowers it again, and what the
    // scan finds is lowered into it at the end, so no deadline is ever lost.
    const std::int64_t observed = next_deadline_.exchange(no_deadline, std::memory_order_relaxed);
    std::int64_t earliest = no_deadline;
    std::int64_t restore_to = observed;  // if the scan throws
    struct Restore {
      const AdvancedCache* cache;
      const std::int64_t* deadline;
      ~Restore() { cache->lower_next_deadline(*deadline); }
    } restore{this, &restore_to};
    for (std::size_t i = 0; i < shard_count_; ++i) {
      Shard& s = shards_[i];
      Graveyard graveyard;
      std::lock_guard lock(s.mutex);
      while (!s.expiry.empty() && s.expiry.begin()->first <= at) {
        remove(s, s.expiry.begin()->second, Removal::expired, graveyard);
        ++removed;
      }
      if (all && weak_) {
        std::vector<Node*> dead;
        s.table.for_each([&](Node* n) {
          if (n->slot.dead()) dead.push_back(n);
        });
        for (Node* n : dead) remove(s, n, Removal::collected, graveyard);
        removed += dead.size();
      }
      if (!s.expiry.empty()) earliest = std::min(earliest, s.expiry.begin()->first);
      publish(s);
    }
    restore_to = earliest;
    return removed;
  }

  void sweep_loop(Duration interval) {
    std::unique_lock lock(sweep_mutex_);
    while (!sweep_wake_.wait_for(lock, interval, [&] { return stopping_; })) {
      lock.unlock();
      {
        // The values it drops may be memlens objects: their counts change under the heap lock,
        // taken before any shard's, as by every thread that follows the heap-lock rule.
        HeapLock heap;
        try {
          purge(now(), /*all=*/true);
        } catch (...) {
          // Out of memory, or the user's clock threw: the next round tries again; every call
          // purges too.
        }
      }
      lock.lock();
    }
  }

  EvictionPolicy policy_;
  bool weak_;
  std::function<std::chrono::steady_clock::time_point()> clock_;
  std::size_t max_bytes_ = 0;
  std::size_t first_overhead_ = 0;  // see the constructor
  std::size_t shard_count_ = 1;
  unsigned shard_shift_ = 64;
  [[no_unique_address]] Hash hash_;
  [[no_unique_address]] Eq eq_;
  std::unique_ptr<Shard[]> shards_;
  // Changed by the purges that const members run too (expired entries go on any call).
  mutable std::atomic<std::size_t> used_{0};
  std::atomic<std::uint64_t> rejected_{0};
  mutable std::atomic<std::size_t> ttl_entries_{0};
  mutable std::atomic<std::int64_t> next_deadline_{no_deadline};
  // TinyLFU's hill climber (report_sample).
  std::atomic<double> window_share_{0.01};
  std::atomic<std::uint64_t> climb_hits_{0}, climb_lookups_{0};
  detail::cache::SpinLock climb_mutex_;
  double step_ = 0.0625;  // under climb_mutex_
  double last_hit_rate_ = 0.0;
  std::mutex sweep_mutex_;
  std::condition_variable sweep_wake_;
  bool stopping_ = false;
  std::thread sweeper_;
};

}  // namespace memlens
