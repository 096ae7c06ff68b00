// memlens: the tracer behind memlens::tracemalloc (internal). State, the two tables (live traces
// keyed by address, interned tracebacks) and stack capture. Everything on the allocation path
// lives here and allocates only with malloc, never with operator new, so the tracer never sees
// its own allocations. See docs/design.md, "tracemalloc".
#pragma once

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unwind.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "memlens/config.hpp"

namespace memlens::detail::trace {

/// The largest traceback limit start() accepts.
inline constexpr int max_nframe = 256;
/// Frames captured beyond the limit, so that the frames inside memlens and the standard library
/// that symbolization drops still leave `nframe` frames of user code.
inline constexpr int extra_frames = 16;

/// A test-and-test-and-set lock: constant-initialized, never destroyed, never allocates.
class SpinLock {
 public:
  void lock() noexcept {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      int spins = 0;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        } else {
          sched_yield();
          spins = 0;
        }
      }
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

/// A count written by one thread at a time (under a lock) and read by any without it: relaxed
/// atomics, which compile to plain loads and stores.
class RelaxedCount {
 public:
  std::size_t get() const noexcept { return value_.load(std::memory_order_relaxed); }
  void set(std::size_t v) noexcept { value_.store(v, std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> value_{0};
};

/// One live traced allocation in domain 0 of less than 4 GiB, which is nearly every one: 16
/// bytes (the goal is at most 24 per live allocation, table slack included).
struct CompactEntry {
  std::uintptr_t ptr;
  std::uint32_t size;
  std::uint32_t traceback;
  static constexpr std::size_t max_size = 0xffffffffU;
  bool matches(std::uintptr_t p, std::uint32_t) const noexcept { return ptr == p; }
  std::uint32_t domain() const noexcept { return 0; }
  void set(std::uintptr_t p, std::uint32_t) noexcept { ptr = p; }
};
static_assert(sizeof(CompactEntry) == 16);

/// Any other live traced allocation (another domain, or 4 GiB and more): 24 bytes.
struct WideEntry {
  std::uintptr_t ptr;
  std::size_t size;
  std::uint32_t traceback;
  std::uint32_t domain_;
  bool matches(std::uintptr_t p, std::uint32_t d) const noexcept {
    return ptr == p && domain_ == d;
  }
  std::uint32_t domain() const noexcept { return domain_; }
  void set(std::uintptr_t p, std::uint32_t d) noexcept {
    ptr = p;
    domain_ = d;
  }
};
static_assert(sizeof(WideEntry) == 24);

/// An interned traceback: `count` return addresses at `frames + offset`, most recent first,
/// captured from a stack of `total` frames (saturated at max_total_frames). 16 bytes: `count` is
/// at most max_nframe + extra_frames + unwinder_extra_frames.
struct TracebackRecord {
  std::uint64_t hash;
  std::uint32_t offset;
  std::uint16_t count;
  std::uint16_t total;
};
static_assert(sizeof(TracebackRecord) == 16);

inline std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

/**
 * Open addressing with Robin Hood linear probing, filled up to 90 % and grown by a quarter, so
 * that 16-byte entries cost 17.8 to 22.2 bytes per live allocation. Entries lie in hash order,
 * and the home slot of a key is its hash scaled to the capacity (hash * capacity / 2^64), which
 * is monotonic in the hash: a lookup stops at the first entry of a greater hash, and growing is
 * one sequential merge rather than a rehash into random slots. The slots end with `slack` spare
 * ones instead of wrapping around. ptr 0 is empty.
 */
template <class Entry>
struct TraceTable {
  Entry* slots = nullptr;
  std::size_t capacity = 0;  // home slots; the array has capacity + slack
  std::size_t count = 0;

  static constexpr std::size_t slack = 256;
  static constexpr std::size_t initial_capacity = 1024;

  /// A random hash: the locality of addresses (neighbouring blocks in neighbouring slots) made
  /// clusters that lookups and deletions had to walk, which cost more than it saved.
  static std::uint64_t hash(std::uintptr_t ptr, std::uint32_t domain) noexcept {
    std::uint64_t x = (std::uint64_t{ptr} >> 4) ^ (std::uint64_t{domain} * 0x9e3779b97f4a7c15ULL);
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 32;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x;
  }
  static std::size_t home_in(std::uint64_t h, std::size_t cap) noexcept {
    __extension__ using wide = unsigned __int128;  // g++ and clang++ both have it on 64 bits
    return static_cast<std::size_t>((static_cast<wide>(h) * cap) >> 64);
  }
  std::size_t home(const Entry& e) const noexcept {
    return home_in(hash(e.ptr, e.domain()), capacity);
  }
  Entry* find(std::uintptr_t ptr, std::uint32_t domain) const noexcept {
    if (count == 0) return nullptr;
    const std::uint64_t key = hash(ptr, domain);
    for (std::size_t i = home_in(key, capacity); i < capacity + slack; ++i) {
      Entry& e = slots[i];
      if (e.ptr == 0) return nullptr;
      if (e.matches(ptr, domain)) return &e;
      if (hash(e.ptr, e.domain()) > key) return nullptr;  // the key would have been before e
    }
    return nullptr;
  }
  /// Moves every entry into a table of `new_capacity`, in order; false when out of memory (the
  /// table is then unchanged) or when the entries do not fit (they always do when it grows).
  bool rebuild(std::size_t new_capacity) noexcept {
    auto* fresh = static_cast<Entry*>(std::calloc(new_capacity + slack, sizeof(Entry)));
    if (!fresh) return false;
    std::size_t next = 0;  // the first free slot: homes only grow along the old array
    for (std::size_t i = 0; i < capacity + slack && slots; ++i) {
      if (slots[i].ptr == 0) continue;
      std::size_t j = home_in(hash(slots[i].ptr, slots[i].domain()), new_capacity);
      if (j < next) j = next;
      if (j >= new_capacity + slack) {
        std::free(fresh);
        return false;
      }
      fresh[j] = slots[i];
      next = j + 1;
    }
    std::free(slots);
    slots = fresh;
    capacity = new_capacity;
    return true;
  }
  bool grow() noexcept { return rebuild(capacity ? capacity + capacity / 4 : initial_capacity); }
  /// Inserts or finds; returns the slot, or nullptr when out of memory. `*replaced` gets the
  /// size of an entry with the same key that was still there (a free the tracer missed).
  Entry* insert(std::uintptr_t ptr, std::uint32_t domain, std::size_t* replaced) noexcept {
    *replaced = 0;
    if ((count + 1) * 10 > capacity * 9 && !grow()) return nullptr;
    for (;;) {
      const std::uint64_t key = hash(ptr, domain);
      std::size_t i = home_in(key, capacity);
      for (; i < capacity + slack && slots[i].ptr != 0; ++i) {
        if (slots[i].matches(ptr, domain)) {
          *replaced = slots[i].size;
          return &slots[i];
        }
        if (hash(slots[i].ptr, slots[i].domain()) > key) break;  // the key goes before it
      }
      // Robin Hood: the run from i up to the next empty slot moves one slot on.
      std::size_t end = i;
      while (end < capacity + slack && slots[end].ptr != 0) ++end;
      if (end == capacity + slack) {
        if (!grow()) return nullptr;
        continue;
      }
      std::memmove(static_cast<void*>(slots + i + 1), slots + i, (end - i) * sizeof(Entry));
      ++count;
      slots[i] = Entry{};
      slots[i].set(ptr, domain);
      return &slots[i];
    }
  }
  void erase(Entry* e) noexcept {
    // Backward shift: the entries after e that sit past their home move one slot back.
    const std::size_t i = static_cast<std::size_t>(e - slots);
    std::size_t end = i + 1;
    while (end < capacity + slack && slots[end].ptr != 0 && home(slots[end]) < end) ++end;
    std::memmove(static_cast<void*>(slots + i), slots + i + 1, (end - i - 1) * sizeof(Entry));
    slots[end - 1] = Entry{};
    --count;
  }
  /// Removes the entry of (ptr, domain) if there is one; returns its size, or 0.
  std::size_t remove(std::uintptr_t ptr, std::uint32_t domain) noexcept {
    Entry* e = find(ptr, domain);
    if (e == nullptr) return 0;
    const std::size_t size = e->size;
    erase(e);
    return size;
  }
  void clear() noexcept {
    std::free(slots);
    *this = TraceTable{};
  }
  std::size_t memory() const noexcept { return slots ? (capacity + slack) * sizeof(Entry) : 0; }
  template <class F>
  void for_each(F f) const {
    for (std::size_t i = 0; slots && i < capacity + slack; ++i) {
      if (slots[i].ptr != 0) f(slots[i]);
    }
  }
};

/// Every live trace: compact entries for the common case, wide ones for the rest. A key lives in
/// one table at a time.
struct Traces {
  TraceTable<CompactEntry> compact;
  TraceTable<WideEntry> wide;

  std::size_t count() const noexcept { return compact.count + wide.count; }
  /// Records (ptr, domain) with `size` and `traceback`; returns false when out of memory.
  /// `*replaced` gets the size of a trace of the same key the tracer still had.
  bool insert(std::uintptr_t ptr, std::uint32_t domain, std::size_t size, std::uint32_t traceback,
              std::size_t* replaced) noexcept {
    if (domain == 0 && size < CompactEntry::max_size) {
      CompactEntry* e = compact.insert(ptr, 0, replaced);
      if (e == nullptr) return false;
      if (wide.count != 0) *replaced += wide.remove(ptr, 0);
      e->size = static_cast<std::uint32_t>(size);
      e->traceback = traceback;
      return true;
    }
    WideEntry* e = wide.insert(ptr, domain, replaced);
    if (e == nullptr) return false;
    if (domain == 0 && compact.count != 0) *replaced += compact.remove(ptr, 0);
    e->size = size;
    e->traceback = traceback;
    return true;
  }
  /// Forgets (ptr, domain); returns the size it had, or 0 when it was not traced.
  std::size_t remove(std::uintptr_t ptr, std::uint32_t domain) noexcept {
    if (domain == 0) {
      if (CompactEntry* e = compact.find(ptr, 0)) {
        const std::size_t size = e->size;
        compact.erase(e);
        return size;
      }
    }
    return wide.count != 0 ? wide.remove(ptr, domain) : 0;
  }
  /// The traceback id of (ptr, domain), or `none`.
  std::uint32_t traceback_of(std::uintptr_t ptr, std::uint32_t domain) const noexcept {
    if (domain == 0) {
      if (const CompactEntry* e = compact.find(ptr, 0)) return e->traceback;
    }
    const WideEntry* e = wide.find(ptr, domain);
    return e ? e->traceback : 0xffffffffU;
  }
  /// Calls f(size, traceback, domain) for every trace.
  template <class F>
  void for_each(F f) const {
    compact.for_each([&](const CompactEntry& e) { f(std::size_t{e.size}, e.traceback, 0u); });
    wide.for_each([&](const WideEntry& e) { f(e.size, e.traceback, e.domain_); });
  }
  void clear() noexcept {
    compact.clear();
    wide.clear();
  }
  std::size_t memory() const noexcept { return compact.memory() + wide.memory(); }
};

/// Interns frame sequences: each distinct sequence gets one id, stored once. The stack's total
/// depth is part of the key, as in CPython: the same frames captured from stacks of different
/// depths are different tracebacks.
struct TracebackTable {
  TracebackRecord* records = nullptr;
  std::uint32_t nrecords = 0, records_capacity = 0;
  std::uintptr_t* frames = nullptr;
  std::size_t nframes = 0, frames_capacity = 0;
  std::uint32_t* index = nullptr;  // id + 1, 0 is empty
  std::size_t index_capacity = 0;

  static constexpr std::uint32_t none = 0xffffffffU;

  /// Each frame is multiplied on its own and rotated by its position, so the multiplications do
  /// not wait for each other: a chain of one mix per frame cost 40 ns for 17 frames.
  static std::uint64_t hash_of(const std::uintptr_t* pcs, int n, std::uint16_t total) noexcept {
    std::uint64_t h = static_cast<std::uint64_t>(n) | (std::uint64_t{total} << 32);
    for (int i = 0; i < n; ++i) {
      const std::uint64_t x = std::uint64_t{pcs[i]} * 0x9e3779b97f4a7c15ULL;
      h ^= (x << (i & 63)) | (x >> ((64 - i) & 63));
    }
    return mix(h);
  }
  bool same(const TracebackRecord& r, const std::uintptr_t* pcs, int n,
            std::uint16_t total) const noexcept {
    return r.count == static_cast<std::uint16_t>(n) && r.total == total &&
           (n == 0 || std::memcmp(frames + r.offset, pcs,
                                  sizeof(std::uintptr_t) * static_cast<std::size_t>(n)) == 0);
  }
  bool grow_index() noexcept {
    std::size_t cap = index_capacity ? index_capacity * 2 : 256;
    auto* fresh = static_cast<std::uint32_t*>(std::calloc(cap, sizeof(std::uint32_t)));
    if (!fresh) return false;
    for (std::uint32_t id = 0; id < nrecords; ++id) {
      std::size_t j = records[id].hash & (cap - 1);
      while (fresh[j] != 0) j = (j + 1) & (cap - 1);
      fresh[j] = id + 1;
    }
    std::free(index);
    index = fresh;
    index_capacity = cap;
    return true;
  }
  template <class T>
  static bool reserve(T*& array, std::size_t& capacity, std::size_t needed) noexcept {
    if (needed <= capacity) return true;
    std::size_t cap = capacity ? capacity : 256;
    while (cap < needed) cap *= 2;
    auto* fresh = static_cast<T*>(std::realloc(array, cap * sizeof(T)));
    if (!fresh) return false;
    array = fresh;
    capacity = cap;
    return true;
  }
  /// The id of the sequence `pcs[0, n)` from a stack of `total` frames, adding it when new;
  /// `none` when out of memory.
  std::uint32_t intern(const std::uintptr_t* pcs, int n, std::uint16_t total) noexcept {
    std::uint64_t h = hash_of(pcs, n, total);
    if (index_capacity) {
      for (std::size_t j = h & (index_capacity - 1); index[j] != 0;
           j = (j + 1) & (index_capacity - 1)) {
        const TracebackRecord& r = records[index[j] - 1];
        if (r.hash == h && same(r, pcs, n, total)) return index[j] - 1;
      }
    }
    if ((std::size_t{nrecords} + 1) * 2 > index_capacity && !grow_index()) return none;
    std::size_t rc = records_capacity;
    if (!reserve(records, rc, std::size_t{nrecords} + 1)) return none;
    records_capacity = static_cast<std::uint32_t>(rc);
    if (nframes + static_cast<std::size_t>(n) > 0xffffffffU) return none;
    if (!reserve(frames, frames_capacity, nframes + static_cast<std::size_t>(n))) return none;
    if (n > 0)
      std::memcpy(frames + nframes, pcs, sizeof(std::uintptr_t) * static_cast<std::size_t>(n));
    std::uint32_t id = nrecords++;
    records[id] = TracebackRecord{h, static_cast<std::uint32_t>(nframes),
                                  static_cast<std::uint16_t>(n), total};
    nframes += static_cast<std::size_t>(n);
    std::size_t j = h & (index_capacity - 1);
    while (index[j] != 0) j = (j + 1) & (index_capacity - 1);
    index[j] = id + 1;
    return id;
  }
  void clear() noexcept {
    std::free(records);
    std::free(frames);
    std::free(index);
    *this = TracebackTable{};
  }
  std::size_t memory() const noexcept {
    return records_capacity * sizeof(TracebackRecord) + frames_capacity * sizeof(std::uintptr_t) +
           index_capacity * sizeof(std::uint32_t);
  }
};

/// The largest mean TraceOptions::sample_bytes accepts: 1 TiB keeps every draw of the countdown
/// (at most 37 means) and every estimate far inside 64 bits.
inline constexpr std::size_t max_sample_bytes = std::size_t{1} << 40;

/// The probability that an allocation of `size` bytes is sampled at mean `mean` (> 0): the
/// chance that a Poisson process of one point per `mean` bytes puts a point in its bytes.
inline double sample_probability(std::size_t size, std::size_t mean) noexcept {
  return -std::expm1(-static_cast<double>(size) / static_cast<double>(mean));
}

/// What a traced block adds to current and peak: its size when every allocation is traced, and
/// size / p(size) bytes, rounded, when sampling at `mean` (its free subtracts exactly the same).
inline std::size_t estimated_bytes(std::size_t size, std::size_t mean) noexcept {
  if (mean == 0 || size == 0) return size;
  return static_cast<std::size_t>(
      std::llround(static_cast<double>(size) / sample_probability(size, mean)));
}

/**
 * While sampling, a lock-free "maybe traced" test for frees, which are then nearly all of
 * untraced blocks: a counter per hash of the address, of the live traced blocks that hash
 * there. Updated with the lock held, read without it: a block's trace is counted before its
 * allocation returns, so a free (which comes after, in whatever thread) sees it. A counter that
 * saturates stays so until the traces are cleared (it only costs frees a lookup). 8 KiB, so that
 * the test stays in the L1 cache.
 */
struct SampledFilter {
  static constexpr int bits = 12;
  static constexpr std::uint16_t saturated = 0xffff;
  std::atomic<std::uint16_t> counts[std::size_t{1} << bits] = {};

  static std::size_t slot(std::uintptr_t ptr) noexcept {
    return static_cast<std::size_t>(((std::uint64_t{ptr} >> 4) * 0x9e3779b97f4a7c15ULL) >>
                                    (64 - bits));
  }
  bool may_contain(std::uintptr_t ptr) const noexcept {
    return counts[slot(ptr)].load(std::memory_order_relaxed) != 0;
  }
  /// With the lock held.
  void add(std::uintptr_t ptr) noexcept {
    auto& c = counts[slot(ptr)];
    const std::uint16_t n = c.load(std::memory_order_relaxed);
    if (n != saturated) c.store(static_cast<std::uint16_t>(n + 1), std::memory_order_relaxed);
  }
  /// With the lock held.
  void remove(std::uintptr_t ptr) noexcept {
    auto& c = counts[slot(ptr)];
    const std::uint16_t n = c.load(std::memory_order_relaxed);
    if (n != saturated && n != 0) {
      c.store(static_cast<std::uint16_t>(n - 1), std::memory_order_relaxed);
    }
  }
  /// With the lock held.
  void clear() noexcept {
    for (auto& c : counts) c.store(0, std::memory_order_relaxed);
  }
};

/// The tracer's state: constant-initialized and never destroyed, so the hook works before main
/// and after exit. `tracing` is written only with `lock` held; the hook reads it relaxed first
/// (the idle cost) and again under the lock.
struct State {
  std::atomic<bool> tracing{false};
  std::atomic<int> nframe{1};
  // TraceOptions::sample_bytes of the session: 0 traces every allocation. Written with `lock`
  // held, and only while not tracing (the tables are then empty).
  std::atomic<std::size_t> sample_bytes{0};
  SpinLock lock;
  Traces traces;
  TracebackTable tracebacks;
  // Traced bytes; estimates (the sum of estimated_bytes) when sampling. Written with the lock
  // held; read without it by a sampler that must never make the program wait (a thread
  // preempted while holding a spin lock stalls every allocation: the profiler's timeline
  // sampler cost 8 % that way).
  RelaxedCount current;
  RelaxedCount peak;
  SampledFilter sampled;  // maintained only while sampling
  // Whether the global operator new reaches the tracer, as the last probe found: -1 before any
  // probe, 0 no, 1 yes (tracemalloc::is_hooked).
  std::atomic<int> new_hooked{-1};
  std::atomic<bool> told_unhooked{false};  // start() said so on stderr, once per process
  // When set, only the thread whose `in_tracer` lives at this address is traced
  // (memlens::testing's current_thread_only).
  std::atomic<const void*> only_thread{nullptr};
};

MEMLENS_SHARED inline constinit State state{};

/// Forgets every trace and traceback, current and peak; with the lock held.
inline void clear_locked() noexcept {
  state.traces.clear();
  state.tracebacks.clear();
  state.current.set(0);
  state.peak.set(0);
  state.sampled.clear();
}

/// Set while this thread runs tracer code that may allocate, so that those allocations are
/// neither traced nor able to take the lock this thread already holds.
MEMLENS_SHARED inline thread_local constinit bool in_tracer = false;

class TracerScope {
 public:
  TracerScope() noexcept : previous_(in_tracer) { in_tracer = true; }
  ~TracerScope() { in_tracer = previous_; }
  TracerScope(const TracerScope&) = delete;
  TracerScope& operator=(const TracerScope&) = delete;

 private:
  bool previous_;
};

/// Seeds apart the samplers of threads that start at the same moment.
MEMLENS_SHARED inline constinit std::atomic<std::uint64_t> sampler_seeds{0};

/**
 * A thread's Poisson sampling of the bytes it allocates (as tcmalloc's and jemalloc's heap
 * profilers sample): `countdown` is the number of bytes before the next sampling point, drawn
 * from an exponential distribution of mean `mean`; an allocation of `size` bytes is sampled when
 * `size >= countdown`, which happens with probability 1 - exp(-size / mean). Otherwise the
 * countdown only goes down by `size`; after a sample a fresh one is drawn (the distribution is
 * memoryless, so this is the same process). Kept in whole bytes, rounded up, which for whole
 * sizes decides exactly as the real-valued countdown would.
 */
struct Sampler {
  std::size_t countdown = 0;
  std::size_t mean = 0;      // the mean `countdown` was drawn for; 0: none yet
  std::uint64_t random = 0;  // xorshift64* state; 0: not seeded yet

  /// Whether an allocation of `size` is sampled, on the slow path: the countdown crosses 0, or
  /// was drawn for another mean (or never).
  bool take(std::size_t size, std::size_t new_mean) noexcept {
    if (mean != new_mean) {
      mean = new_mean;
      countdown = draw();
    }
    if (size < countdown) {
      countdown -= size;
      return false;
    }
    countdown = draw();
    return true;
  }

 private:
  std::size_t draw() noexcept {
    if (random == 0) seed();
    random ^= random >> 12;
    random ^= random << 25;
    random ^= random >> 27;
    const std::uint64_t bits = random * 0x2545f4914f6cdd1dULL;
    const double u = static_cast<double>((bits >> 11) + 1) * 0x1p-53;  // in (0, 1]
    const double bytes = std::ceil(-std::log(u) * static_cast<double>(mean));
    return bytes < 1 ? 1 : static_cast<std::size_t>(bytes);
  }
  /// splitmix64 of the time, this thread's address and a process-wide counter: threads started
  /// together still draw apart. Never std::random_device, which may open a file.
  void seed() noexcept {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    std::uint64_t x =
        (static_cast<std::uint64_t>(now.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(now.tv_nsec)) ^
        reinterpret_cast<std::uintptr_t>(this) ^
        (sampler_seeds.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ULL);
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    random = x != 0 ? x : 0x9e3779b97f4a7c15ULL;
  }
};

MEMLENS_SHARED inline thread_local constinit Sampler sampler{};

/// Makes this thread's next allocation sampled, whatever its size (start()'s probe of the
/// hook, of size 0); undo_forced_sample() then makes the one after draw afresh.
inline void force_next_sample() noexcept {
  sampler.mean = state.sample_bytes.load(std::memory_order_relaxed);
  sampler.countdown = 0;
}
inline void undo_forced_sample() noexcept { sampler.mean = 0; }

/// For its scope, only allocations made by the thread that created it are traced (frees are
/// traced from every thread, so no trace outlives its block). One at a time per process.
class ThisThreadOnly {
 public:
  ThisThreadOnly() noexcept : previous_(state.only_thread.exchange(&in_tracer)) {}
  ~ThisThreadOnly() { state.only_thread.store(previous_); }
  ThisThreadOnly(const ThisThreadOnly&) = delete;
  ThisThreadOnly& operator=(const ThisThreadOnly&) = delete;

 private:
  const void* previous_;
};

/// Holds the tracer's lock, inside a TracerScope: whatever this thread allocates or frees
/// meanwhile (table growth, a snapshot's copy; under clang's sanitizers even malloc and free are
/// hooked) stays out of the tracer instead of waiting for the lock this thread holds.
class LockGuard {
 public:
  LockGuard() noexcept { state.lock.lock(); }
  ~LockGuard() { state.lock.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  TracerScope scope_;
};

/// Whether the hook should do anything: the only cost of the hook while tracing is off.
inline bool tracing() noexcept { return state.tracing.load(std::memory_order_relaxed); }

struct StackBounds {
  std::uintptr_t low = 0;
  std::uintptr_t high = 0;
};

MEMLENS_SHARED inline thread_local constinit StackBounds stack_bounds{};

inline const StackBounds& current_stack_bounds() noexcept {
  StackBounds& b = stack_bounds;
  if (b.high == 0) {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      void* addr = nullptr;
      std::size_t size = 0;
      if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
        b.low = reinterpret_cast<std::uintptr_t>(addr);
        b.high = b.low + size;
      }
      pthread_attr_destroy(&attr);
    }
    if (b.high == 0) b.low = b.high = 1;  // unknown: capture nothing rather than crash
  }
  return b;
}

/// Where the count of a stack's frames saturates: it is kept in 16 bits, as CPython keeps it.
inline constexpr int max_total_frames = 0xffff;

/// Whether `fp` can be a frame of this thread's stack holding a saved frame pointer and a
/// return address. Written so that unknown bounds (low == high) reject every address.
inline bool plausible_frame(std::uintptr_t fp, const StackBounds& b) noexcept {
  return fp >= b.low && fp < b.high && b.high - fp >= 2 * sizeof(std::uintptr_t) &&
         fp % sizeof(std::uintptr_t) == 0;
}

/**
 * Return addresses of the frames above `frame` (the frame pointer of a memlens entry point),
 * most recent first, by following the saved frame-pointer chain: at most `max` are stored, and
 * `*total` gets the length of the whole chain, saturated at max_total_frames. Each step is
 * checked: the next frame must be higher on this thread's stack and aligned; the walk stops at
 * the first frame that is not, so code built without frame pointers shortens tracebacks but
 * cannot crash them.
 */
#if defined(__clang__) || defined(__GNUC__)
__attribute__((no_sanitize("address"), noinline))
#endif
inline int
walk_frames(const void* frame, std::uintptr_t* out, int max, std::uint16_t* total) noexcept {
  const StackBounds& b = current_stack_bounds();
  auto fp = reinterpret_cast<std::uintptr_t>(frame);
  // A chain that ends at the max-th frame sets fp to 0, which plausible_frame rejects (b.low is
  // never 0), so nothing more is counted. Branches, not conditional moves, so that the next
  // load need not wait for the comparison (with one, clang's counting loop took 1.4x as long).
  int n = 0;
  while (n < max && plausible_frame(fp, b)) {
    const auto* slots = reinterpret_cast<const std::uintptr_t*>(fp);
    const std::uintptr_t ret = slots[1];
    if (ret == 0) break;
    out[n++] = ret;
    const std::uintptr_t next = slots[0];
    if (next <= fp) {
      MEMLENS_KEEP_BRANCH();
      fp = 0;
      break;
    }
    fp = next;
  }
  // The rest of the chain is only counted: two loads per frame, no store.
  int depth = n;
  if (n == max) {
    while (depth < max_total_frames && plausible_frame(fp, b)) {
      const auto* slots = reinterpret_cast<const std::uintptr_t*>(fp);
      if (slots[1] == 0) break;
      ++depth;
      const std::uintptr_t next = slots[0];
      if (next <= fp) {
        MEMLENS_KEEP_BRANCH();
        break;
      }
      fp = next;
    }
  }
  *total = static_cast<std::uint16_t>(depth);
  return n;
}

/// Frames the unwinder reports beyond those of walk_frames: its own and the hook's, and under
/// clang's sanitizers those of the sanitizer's allocator (all dropped at symbolization).
inline constexpr int unwinder_extra_frames = 32;

struct UnwindState {
  std::uintptr_t* out;
  int n;
  int max;
  int total;
};

inline _Unwind_Reason_Code unwind_one(_Unwind_Context* context, void* arg) noexcept {
  auto* s = static_cast<UnwindState*>(arg);
  auto pc = static_cast<std::uintptr_t>(_Unwind_GetIP(context));
  if (pc == 0) return _URC_END_OF_STACK;
  if (s->n < s->max) s->out[s->n++] = pc;
  return ++s->total < max_total_frames ? _URC_NO_REASON : _URC_END_OF_STACK;
}

/// Return addresses from the DWARF unwinder (.eh_frame): slower than walk_frames, but needs no
/// frame pointers. Used under clang's sanitizers (whose allocator has none) and everywhere when
/// MEMLENS_TRACEMALLOC_UNWIND is defined (consistently, in every translation unit). Stores at
/// most `max`; `*total` gets the number of frames of the stack, saturated at max_total_frames.
inline int unwind_frames(std::uintptr_t* out, int max, std::uint16_t* total) noexcept {
  UnwindState s{out, 0, max, 0};
  _Unwind_Backtrace(unwind_one, &s);
  *total = static_cast<std::uint16_t>(s.total);
  return s.n;
}

/// Records an allocation. `frame` is the frame address of the memlens entry point the user's
/// code called (operator new, Allocator::allocate, track), so the first frame is its caller;
/// nullptr asks for the unwinder.
MEMLENS_NOINLINE inline void on_alloc(std::uintptr_t ptr, std::size_t size, std::uint32_t domain,
                                      const void* frame) noexcept {
  if (ptr == 0 || in_tracer) return;
  if (const void* only = state.only_thread.load(std::memory_order_relaxed);
      only != nullptr && only != &in_tracer) [[unlikely]] {
    return;
  }
  // Sampling: an allocation that is not sampled costs a countdown, no stack walk, no lock.
  const std::size_t mean = state.sample_bytes.load(std::memory_order_relaxed);
  if (mean != 0) {
    Sampler& s = sampler;
    if (s.mean == mean && size < s.countdown) [[likely]] {
      s.countdown -= size;
      return;
    }
    if (!s.take(size, mean)) return;
  }
  TracerScope scope;
  std::uintptr_t pcs[max_nframe + extra_frames + unwinder_extra_frames];
  static_assert(max_nframe + extra_frames + unwinder_extra_frames <= max_total_frames,
                "TracebackRecord::count is 16 bits");
  int limit = state.nframe.load(std::memory_order_relaxed) + extra_frames;
#ifdef MEMLENS_TRACEMALLOC_UNWIND
  frame = nullptr;
#endif
  std::uint16_t total = 0;
  int n = frame ? walk_frames(frame, pcs, limit, &total)
                : unwind_frames(pcs, limit + unwinder_extra_frames, &total);
  LockGuard lock;
  if (!state.tracing.load(std::memory_order_relaxed)) return;
  // Tracing stopped and started again with another rate since the decision: drop it.
  if (state.sample_bytes.load(std::memory_order_relaxed) != mean) return;
  std::uint32_t tb = state.tracebacks.intern(pcs, n, total);
  if (tb == TracebackTable::none) return;
  std::size_t replaced = 0;
  const std::size_t before = state.traces.count();
  if (!state.traces.insert(ptr, domain, size, tb, &replaced)) return;
  if (mean != 0 && state.traces.count() != before) state.sampled.add(ptr);
  const std::size_t now =
      state.current.get() - estimated_bytes(replaced, mean) + estimated_bytes(size, mean);
  state.current.set(now);
  if (now > state.peak.get()) state.peak.set(now);
}

/// Forgets an allocation; nothing happens when it was not traced. While sampling, the free of a
/// block the filter has never seen (nearly every one) takes no lock.
MEMLENS_NOINLINE inline void on_free(std::uintptr_t ptr, std::uint32_t domain) noexcept {
  if (ptr == 0 || in_tracer) return;
  if (state.sample_bytes.load(std::memory_order_relaxed) != 0 && !state.sampled.may_contain(ptr)) {
    return;
  }
  TracerScope scope;
  LockGuard lock;
  const std::size_t before = state.traces.count();
  const std::size_t size = state.traces.remove(ptr, domain);
  if (state.traces.count() == before) return;
  const std::size_t mean = state.sample_bytes.load(std::memory_order_relaxed);
  if (mean != 0) state.sampled.remove(ptr);
  state.current.set(state.current.get() - estimated_bytes(size, mean));
}

/// raw_allocate for Allocator and malloc_resource, which trace by themselves: hidden from the
/// malloc hooks used under clang's sanitizers, so that nothing is traced twice.
inline void* untraced_allocate(std::size_t size, std::size_t alignment) noexcept;
/// free, hidden from those hooks too.
inline void untraced_free(void* p) noexcept {
  TracerScope scope;
  std::free(p);
}

/// malloc for an alignment, with operator new's meaning of size 0 (a unique pointer).
inline void* raw_allocate(std::size_t size, std::size_t alignment) noexcept {
  if (size == 0) size = 1;
  if (alignment <= alignof(std::max_align_t)) return std::malloc(size);
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  void* p = nullptr;
  return posix_memalign(&p, alignment, size) == 0 ? p : nullptr;
}

inline void* untraced_allocate(std::size_t size, std::size_t alignment) noexcept {
  TracerScope scope;
  return raw_allocate(size, alignment);
}

}  // namespace memlens::detail::trace
