// memlens: the parts of AdvancedCache that know nothing of keys and values (internal): the
// clock that orders accesses across shards, its lock, intrusive lists, an allocator that counts
// what a shard's containers hold, and W-TinyLFU's frequency sketch.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "memlens/config.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace memlens::detail::cache {

/// This thread's Lamport clock (see `Clock`).
MEMLENS_SHARED inline thread_local std::uint64_t thread_clock = 0;

/**
 * Orders accesses across shards (a shard's own order is its lists'), as a Lamport clock: an
 * access is stamped after everything its thread did before and everything its shard saw
 * before. One thread's accesses are therefore in program order whichever shards they touch,
 * so LRU, LFU and FIFO evict exactly as an unsharded cache would; accesses on different threads
 * that did not wait for each other are ordered arbitrarily, as they were concurrent. It costs a
 * thread-local load and store: no shared counter bounces between cores, and no clock is read.
 */
struct Clock {
  std::uint64_t last = 0;  // the shard's latest stamp; changed under the shard's lock

  std::uint64_t tick() noexcept {
    const std::uint64_t t = (thread_clock > last ? thread_clock : last) + 1;
    thread_clock = last = t;
    return t;
  }
};

/// A lock for critical sections of a few dozen instructions: it spins briefly, then yields, so
/// a holder that was preempted costs the waiters a time slice, not a burned core. Half the cost
/// of std::mutex uncontended, which is most of a cache hit's cost.
class SpinLock {
 public:
  void lock() noexcept {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      for (unsigned spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < 64) {
          pause();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }
  std::atomic<bool> locked_{false};
};

/// A 64-bit finalizer (splitmix64's): std::hash of an integer is the integer itself, whose low
/// bits alone would pick shards and sketch counters badly.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// A node's place in one intrusive list.
struct Links {
  Links* prev = nullptr;
  Links* next = nullptr;
};

/// An intrusive circular list with a sentinel, front most recent. It allocates nothing, so a
/// shard's lists cost no memory beyond the links inside its nodes.
class List {
 public:
  List() noexcept { head_.prev = head_.next = &head_; }
  List(const List&) = delete;
  List& operator=(const List&) = delete;

  bool empty() const noexcept { return head_.next == &head_; }
  std::size_t size() const noexcept { return size_; }
  Links* front() const noexcept { return empty() ? nullptr : head_.next; }
  Links* back() const noexcept { return empty() ? nullptr : head_.prev; }
  /// The node after `l` going from the back towards the front, or null at the front.
  Links* toward_front(const Links* l) const noexcept { return l->prev == &head_ ? nullptr : l->prev; }

  void push_front(Links* l) noexcept {
    l->prev = &head_;
    l->next = head_.next;
    head_.next->prev = l;
    head_.next = l;
    ++size_;
  }
  void remove(Links* l) noexcept {
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = nullptr;
    --size_;
  }
  void move_to_front(Links* l) noexcept {
    if (head_.next == l) return;
    remove(l);
    push_front(l);
  }
  void reset() noexcept {
    head_.prev = head_.next = &head_;
    size_ = 0;
  }

 private:
  mutable Links head_;
  std::size_t size_ = 0;
};

/// A std::allocator that adds what it hands out to a counter and subtracts what comes back:
/// a shard's containers report their exact bytes (nodes, bucket arrays) whatever the standard
/// library, which is what makes the cache's accounting match what a tracer sees.
template <class T>
struct Counting {
  using value_type = T;
  std::size_t* bytes;

  explicit Counting(std::size_t* counter) noexcept : bytes(counter) {}
  template <class U>
  Counting(const Counting<U>& other) noexcept : bytes(other.bytes) {}  // NOLINT: rebinding

  T* allocate(std::size_t n) {
    T* p = std::allocator<T>{}.allocate(n);
    *bytes += n * sizeof(T);
    return p;
  }
  void deallocate(T* p, std::size_t n) noexcept {
    *bytes -= n * sizeof(T);
    std::allocator<T>{}.deallocate(p, n);
  }
  template <class U>
  friend bool operator==(const Counting& a, const Counting<U>& b) noexcept {
    return a.bytes == b.bytes;
  }
};

/**
 * A shard's index: open addressing with linear probing over one array of 8-byte slots, each a
 * node's address with 16 bits of its hash above it. A lookup reads one slot line and then the
 * node only when the bits agree; std::unordered_set reads a bucket, the node before the one
 * sought (its buckets point there) and the node, and divides by a prime. Erasing leaves a
 * tombstone (no hash is recomputed then); the array is rebuilt, twice as large when over 3/8
 * full of entries, when entries and tombstones fill 3/4 of it. Its array is allocated through
 * `Counting`, so the cache counts it.
 */
template <class Node>
class Index {
  static constexpr std::uint64_t empty_slot = 0, tombstone = 1;
  static constexpr unsigned pointer_bits = 48;
  static constexpr std::uint64_t pointer_mask = (std::uint64_t{1} << pointer_bits) - 1;
  static_assert(sizeof(void*) == 8, "memlens::AdvancedCache: needs 64-bit pointers");

 public:
  explicit Index(std::size_t* counter) : slots_(Counting<std::uint64_t>(counter)) {}

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// The node hashed to `h` for which `match(node)` holds, or null.
  template <class Match>
  Node* find(std::uint64_t h, Match&& match) const {
    if (size_ == 0) return nullptr;
    const std::uint64_t tag = tag_of(h);
    for (std::size_t i = home(h);; i = (i + 1) & mask_) {
      const std::uint64_t slot = slots_[i];
      if (slot == empty_slot) return nullptr;
      if ((slot & ~pointer_mask) == tag && slot != tombstone) {
        Node* n = reinterpret_cast<Node*>(slot & pointer_mask);
        if (match(*n)) return n;
      }
    }
  }

  /// Adds `n` (not present), hashed to `h`; `hash_of(node)` gives any node's hash for a rebuild.
  /// Strong guarantee: if the rebuild cannot allocate, nothing changed.
  template <class HashOf>
  void insert(Node* n, std::uint64_t h, HashOf&& hash_of) {
    const auto address = reinterpret_cast<std::uintptr_t>(n);
    if ((address & ~pointer_mask) != 0) throw std::bad_alloc();  // beyond 48-bit addresses
    if ((size_ + used_tombstones_ + 1) * 4 > slots_.size() * 3) {
      const std::size_t wanted = (size_ + 1) * 8 > slots_.size() * 3 ? slots_.size() * 2 : slots_.size();
      rebuild(std::max<std::size_t>(wanted, 8), hash_of);
    }
    for (std::size_t i = home(h);; i = (i + 1) & mask_) {
      if (slots_[i] == empty_slot || slots_[i] == tombstone) {
        if (slots_[i] == tombstone) --used_tombstones_;
        slots_[i] = tag_of(h) | address;
        ++size_;
        return;
      }
    }
  }

  /// Removes `n`, which is present and hashed to `h`.
  void erase(const Node* n, std::uint64_t h) noexcept {
    const std::uint64_t slot_value = tag_of(h) | reinterpret_cast<std::uintptr_t>(n);
    for (std::size_t i = home(h);; i = (i + 1) & mask_) {
      if (slots_[i] == slot_value) {
        slots_[i] = tombstone;
        ++used_tombstones_;
        --size_;
        return;
      }
    }
  }

  /// Calls `f(node)` for every node; `f` must not change the index.
  template <class F>
  void for_each(F&& f) const {
    for (const std::uint64_t slot : slots_) {
      if (slot != empty_slot && slot != tombstone) f(reinterpret_cast<Node*>(slot & pointer_mask));
    }
  }

  /// Gives the array back (the index must be empty).
  void release() noexcept {
    std::vector<std::uint64_t, Counting<std::uint64_t>> none(slots_.get_allocator());
    slots_.swap(none);
    mask_ = 0;
    shift_ = 64;
    used_tombstones_ = 0;
  }

 private:
  static std::uint64_t tag_of(std::uint64_t h) noexcept {
    return ((h >> 16) & 0xFFFF) << pointer_bits;
  }
  std::size_t home(std::uint64_t h) const noexcept {
    return shift_ >= 64 ? 0 : static_cast<std::size_t>(h >> shift_);
  }
  template <class HashOf>
  void rebuild(std::size_t capacity, HashOf& hash_of) {
    std::vector<std::uint64_t, Counting<std::uint64_t>> old(capacity, empty_slot,
                                                            slots_.get_allocator());
    old.swap(slots_);
    mask_ = capacity - 1;
    shift_ = static_cast<unsigned>(64 - std::countr_zero(capacity));
    used_tombstones_ = 0;
    for (const std::uint64_t slot : old) {
      if (slot == empty_slot || slot == tombstone) continue;
      const std::uint64_t h = hash_of(*reinterpret_cast<const Node*>(slot & pointer_mask));
      std::size_t i = home(h);
      while (slots_[i] != empty_slot) i = (i + 1) & mask_;
      slots_[i] = slot;
    }
  }

  std::vector<std::uint64_t, Counting<std::uint64_t>> slots_;
  std::size_t size_ = 0;
  std::size_t used_tombstones_ = 0;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
};

/**
 * A count-min sketch of 4-bit counters, 16 to a word, four counters per key: W-TinyLFU's
 * estimate of how often a key was asked for, in about 8 bytes per entry. When the increments
 * reach ten times the table's capacity every counter is halved, so old popularity fades
 * (TinyLFU's reset, Einziger et al. 2017).
 */
class FrequencySketch {
 public:
  explicit FrequencySketch(std::size_t* counter) : table_(Counting<std::uint64_t>(counter)) {}

  /// Grows the table to about one counter per `entries` (a power of two of words, at least 8);
  /// the counts restart when it grows, as they would have faded anyway.
  void ensure_capacity(std::size_t entries) {
    const std::size_t words = std::bit_ceil(std::max<std::size_t>(entries, 128)) / 16;
    if (words <= table_.size()) return;
    std::vector<std::uint64_t, Counting<std::uint64_t>> grown(words, 0, table_.get_allocator());
    table_.swap(grown);
    additions_ = 0;
    sample_size_ = 10 * words * 16 / 4;
  }

  /// The estimated number of recent accesses of the key hashed to `hash` (0 to 15).
  unsigned frequency(std::uint64_t hash) const noexcept {
    if (table_.empty()) return 0;
    unsigned least = 15;
    for (unsigned i = 0; i < 4; ++i) {
      const auto [word, shift] = slot(hash, i);
      const auto count = static_cast<unsigned>((table_[word] >> shift) & 0xF);
      least = count < least ? count : least;
    }
    return least;
  }

  void increment(std::uint64_t hash) noexcept {
    if (table_.empty()) return;
    bool added = false;
    for (unsigned i = 0; i < 4; ++i) {
      const auto [word, shift] = slot(hash, i);
      if (((table_[word] >> shift) & 0xF) != 0xF) {
        table_[word] += std::uint64_t{1} << shift;
        added = true;
      }
    }
    if (added && ++additions_ >= sample_size_) age();
  }

  /// Forgets everything (the shard emptied), giving its memory back.
  void clear() noexcept {
    std::vector<std::uint64_t, Counting<std::uint64_t>> none(table_.get_allocator());
    table_.swap(none);
    additions_ = sample_size_ = 0;
  }

  std::size_t sample_size() const noexcept { return sample_size_; }

 private:
  struct Slot {
    std::size_t word;
    unsigned shift;
  };
  Slot slot(std::uint64_t hash, unsigned i) const noexcept {
    static constexpr std::uint64_t seeds[4] = {0x97cb3127c4ed2f0dULL, 0xc2b2ae3d27d4eb4fULL,
                                              0x165667b19e3779f9ULL, 0x85ebca77c2b2ae63ULL};
    const std::uint64_t h = mix(hash + seeds[i]);
    const std::size_t counters = table_.size() * 16;
    const auto index = static_cast<std::size_t>(h & (counters - 1));
    return {index >> 4, static_cast<unsigned>((index & 15) * 4)};
  }
  void age() noexcept {
    for (auto& word : table_) word = (word >> 1) & 0x7777777777777777ULL;
    additions_ /= 2;
  }

  std::vector<std::uint64_t, Counting<std::uint64_t>> table_;
  std::size_t additions_ = 0;
  std::size_t sample_size_ = 0;
};

}  // namespace memlens::detail::cache
