// memlens: ObjectPool, a thread-safe pool of reusable objects with health checks, growth and
// shrinking, retirement of old objects, and detection of leases nobody gave back (exercise 10).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "memlens/config.hpp"
#include "memlens/errors.hpp"
#include "memlens/tracemalloc.hpp"

namespace memlens {

/// The clock an ObjectPool measures idle time, lifetimes and lease durations with.
using PoolClock = std::chrono::steady_clock;

/// A lease held longer than PoolOptions::leak_threshold, found by a maintenance pass.
struct LeaseLeak {
  std::chrono::milliseconds held{};  ///< how long the lease had been held when it was found
  /// Where it was acquired, most recent call first (memlens' own frames left out); empty when
  /// the stack could not be symbolized.
  std::vector<tracemalloc::Frame> acquired_at;

  /// "ObjectPool: a lease has been held for 1500 ms and not released; acquired at:" and the
  /// frames, one per line.
  std::string to_string() const {
    std::string text = "ObjectPool: a lease has been held for " + std::to_string(held.count()) +
                       " ms and not released; acquired at:\n";
    if (acquired_at.empty()) text += "  <no stack>\n";
    for (const auto& f : acquired_at) {
      text += "  " + f.filename + ":" + std::to_string(f.lineno) + " in " + f.function + "\n";
    }
    return text;
  }
};

/// How an ObjectPool checks, ages and watches its objects. Every field has a usable default.
template <class T>
struct PoolOptions {
  /// Whether an object is still usable; none means every object is.
  std::function<bool(const T&)> health_check;
  /// Check an idle object before handing it out (a new one too: one that fails throws).
  bool validate_on_acquire = true;
  /// Check an object when its lease ends.
  bool validate_on_release = false;
  /// Idle objects beyond `min_size` are destroyed once idle this long (none: never).
  std::optional<std::chrono::milliseconds> idle_timeout = std::chrono::seconds(60);
  /// Objects older than this are destroyed when next idle, and replaced up to `min_size`.
  std::optional<std::chrono::milliseconds> max_lifetime;
  /// Runs maintain() on a thread of its own at this interval; joined when the pool dies.
  std::optional<std::chrono::milliseconds> evict_interval;
  /// A lease held longer than this is reported once, with the stack that acquired it.
  std::optional<std::chrono::milliseconds> leak_threshold;
  /// Receives leak reports; none prints LeaseLeak::to_string() to stderr.
  std::function<void(const LeaseLeak&)> leak_sink;
  /// What ages are measured against, if not PoolClock::now (a test's manual clock). Timeouts of
  /// acquire() always use the real clock.
  std::function<PoolClock::time_point()> clock;
};

/// A pool's counts at one moment. `acquires` counts leases handed out, `waits` the acquires that
/// had to wait, `timeouts` those that gave up.
struct PoolStats {
  std::size_t size = 0;    ///< objects that exist (idle + in use + being created or checked)
  std::size_t idle = 0;    ///< objects ready to hand out
  std::size_t in_use = 0;  ///< objects out on lease
  std::uint64_t created = 0, destroyed = 0, acquires = 0, waits = 0, timeouts = 0,
                failed_health_checks = 0, leaks_reported = 0;
};

template <class T>
class ObjectPool;

namespace detail::object_pool {

enum State : std::uint32_t {
  empty,          // no object
  idle,           // an object ready to hand out
  in_use,         // on lease
  retiring,       // on lease, and to be destroyed when it comes back (max_lifetime)
  busy,           // being created, checked or destroyed by whoever set this
};

/// One place for an object. Places are never freed while the pool lives, so a thread may keep a
/// pointer to one (its cache below) without any lock: a stale pointer only fails its CAS.
template <class T>
struct alignas(64) Slot {
  std::atomic<std::uint32_t> state{empty};
  std::unique_ptr<T> object;              // owned by whoever moved `state` away from idle/empty
  std::atomic<std::uint64_t> uses{0};     // leases handed out; bumped by the slot's holder only
  bool broken = false;                    // Lease::invalidate(); the holder's
  // Set by a release from its first step to its last: a pool being destroyed waits for it.
  std::atomic<bool> releasing{false};
  // Under the pool's mutex:
  std::uint64_t seen_uses = 0;            // `uses` when a pass first saw the object idle
  bool noted = false;                     // idle_since is valid
  PoolClock::time_point idle_since{}, created{}, acquired_at{};
  std::vector<std::uintptr_t> acquired_stack;  // leak_threshold only
  bool tracked = false, leak_reported = false;
};

/// Each thread remembers, per pool (by an id never reused), the place it last gave back: the
/// next acquire on that thread takes it with one CAS, touching no shared line.
struct CachedSlot {
  std::uint64_t pool = 0;
  void* slot = nullptr;
};
inline constexpr std::size_t cache_ways = 4;
MEMLENS_SHARED inline thread_local CachedSlot thread_cache[cache_ways]{};
MEMLENS_SHARED inline std::atomic<std::uint64_t> next_pool_id{1};

inline constexpr std::uint32_t closed_bit = 1u << 31;

// What a pool owns: it outlives the ObjectPool while leases are out.
template <class T>
struct Core {
  using Slot = object_pool::Slot<T>;
  using Factory = std::function<std::unique_ptr<T>()>;

  Core(Factory f, std::size_t min, std::size_t max, PoolOptions<T> o)
      : factory(std::move(f)), options(std::move(o)), min_size(min), max_size(max),
        id(detail::object_pool::next_pool_id.fetch_add(1, std::memory_order_relaxed)),
        cache_way(id % detail::object_pool::cache_ways),
        validate_acquire(options.validate_on_acquire && options.health_check),
        validate_release(options.validate_on_release && options.health_check),
        tracking(options.leak_threshold.has_value()) {}

  Factory factory;
  PoolOptions<T> options;
  const std::size_t min_size, max_size;
  const std::uint64_t id;
  const std::size_t cache_way;
  const bool validate_acquire, validate_release, tracking;

  // Read by every release: nonzero while acquires wait or once the pool is closed, which
  // sends releases to the slow path. Written rarely, so it stays in every core's cache.
  alignas(64) std::atomic<std::uint32_t> attention{0};

  alignas(64) mutable std::mutex mutex;
  std::condition_variable available;  // an object came back, or there is room to create one
  std::deque<Slot> slots;             // grows only: references stay valid
  std::size_t size = 0;               // non-empty slots
  std::size_t cursor = 0;             // where the next scan starts
  bool closed = false;
  bool swept = false;                 // closed, and no release of before is still running
  std::size_t outstanding = 0;        // leases out when the pool closed
  std::uint64_t created = 0, destroyed = 0, waits = 0, timeouts = 0, failed_checks = 0,
                leaks = 0;
  std::thread evictor;
  bool stopping = false;
  std::condition_variable stop;

  PoolClock::time_point now() const { return options.clock ? options.clock() : PoolClock::now(); }

  bool healthy(const T& object) const {
    return !options.health_check || options.health_check(object);
  }

  // The fast path: this thread's last slot, if it is still idle.
  // Skipped while acquires wait, so that the object this thread just gave back goes to them.
  Slot* take_cached() noexcept {
    auto& cached = detail::object_pool::thread_cache[cache_way];
    if (cached.pool != id || attention.load(std::memory_order_relaxed) != 0) return nullptr;
    auto* slot = static_cast<Slot*>(cached.slot);
    std::uint32_t expected = detail::object_pool::idle;
    if (!slot->state.compare_exchange_strong(expected, detail::object_pool::in_use,
                                             std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
      return nullptr;
    }
    return slot;
  }

  // A slot just moved to in_use: counts the lease, validates and tracks it. False (the
  // object destroyed) if it failed its check; a check that throws destroys it and throws.
  // (An acquire runs while the pool lives, so its discard is never the last lease's.)
  bool accept(Slot* slot, bool fresh) {
    slot->broken = false;
    if (validate_acquire) {
      bool ok = false;
      try {
        ok = healthy(*slot->object);
      } catch (...) {
        (void)discard(slot, true);
        throw;
      }
      if (!ok) {
        (void)discard(slot, true);
        if (fresh) {
          throw Error("ObjectPool: a newly created object failed its health check");
        }
        return false;
      }
    }
    slot->uses.store(slot->uses.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (tracking) track(slot);
    return true;
  }

  // Records when and where a lease began. Never throws: a lease it cannot record (no memory
  // for the stack, a clock that throws) is handed out untracked.
  void track(Slot* slot) noexcept {
    std::uintptr_t pcs[64];
    std::uint16_t total = 0;
    const int n = detail::trace::unwind_frames(pcs, 64, &total);
    try {
      const auto at = now();
      std::lock_guard lock(mutex);
      slot->acquired_stack.assign(pcs, pcs + n);
      slot->acquired_at = at;
      slot->tracked = true;
      slot->leak_reported = false;
    } catch (...) {
      std::lock_guard lock(mutex);
      slot->tracked = false;
    }
  }

  // Destroys the object of a slot its caller holds (in_use or busy) and frees the slot.
  // Returns whether the caller must delete this state: the pool is gone and this was its
  // last lease (see close()).
  [[nodiscard]] bool discard(Slot* slot, bool failed_check) noexcept {
    std::unique_ptr<T> doomed;
    bool last = false;
    {
      std::lock_guard lock(mutex);
      doomed = std::move(slot->object);
      slot->tracked = false;
      slot->noted = false;
      if (failed_check) ++failed_checks;
      ++destroyed;
      --size;
      if (closed) last = --outstanding == 0 && swept;
      slot->state.store(detail::object_pool::empty, std::memory_order_release);
      available.notify_one();  // room to create one
    }
    return last;
  }

  // A lease ends. The slot is marked `releasing` from the first step to the last, so that a
  // pool destroyed meanwhile on another thread waits before freeing this state.
  void release(Slot* slot) noexcept {
    slot->releasing.store(true, std::memory_order_relaxed);
    bool last = false;
    if (slot->broken) {
      last = discard(slot, false);
    } else if (validate_release && !healthy_on_release(*slot)) {
      last = discard(slot, true);
    } else {
      if (tracking) {
        std::lock_guard lock(mutex);
        slot->tracked = false;
      }
      auto& cached = detail::object_pool::thread_cache[cache_way];
      cached.pool = id;
      cached.slot = slot;
      // seq_cst on both: a waiter increments `attention` then scans, so either it sees this
      // slot idle or this release sees it waiting.
      std::uint32_t expected = detail::object_pool::in_use;
      if (!slot->state.compare_exchange_strong(expected, detail::object_pool::idle))
          [[unlikely]] {
        // Retiring (past max_lifetime): destroyed, never idle for anyone to take.
        slot->state.store(detail::object_pool::busy, std::memory_order_relaxed);
        last = discard(slot, false);
      } else if (attention.load() != 0) [[unlikely]] {
        last = release_slow(slot);
      }
    }
    slot->releasing.store(false, std::memory_order_release);
    if (last) delete this;
  }

  bool healthy_on_release(const Slot& slot) noexcept {
    if ((attention.load(std::memory_order_relaxed) & detail::object_pool::closed_bit) != 0) {
      return true;  // the pool is gone: the object is destroyed anyway
    }
    try {
      return healthy(*slot.object);
    } catch (...) {
      detail::report_unraisable("Exception ignored in ObjectPool health check on release",
                                std::current_exception(), nullptr);
      return false;
    }
  }

  // After a release that found someone waiting, or the pool closed.
  [[nodiscard]] bool release_slow(Slot* slot) noexcept {
    std::unique_lock lock(mutex);
    if (!closed) {
      available.notify_one();
      return false;
    }
    std::uint32_t expected = detail::object_pool::idle;
    if (!slot->state.compare_exchange_strong(expected, detail::object_pool::busy)) {
      return false;  // close() took it, seeing it idle: it was not counted as out
    }
    lock.unlock();
    return discard(slot, false);
  }

  // An idle slot, taken (in_use), or nullptr; with the mutex held.
  Slot* scan() noexcept {
    const std::size_t n = slots.size();
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t at = (cursor + i) % n;
      std::uint32_t expected = detail::object_pool::idle;
      if (slots[at].state.compare_exchange_strong(expected, detail::object_pool::in_use,
                                                  std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
        cursor = at + 1;
        return &slots[at];
      }
    }
    return nullptr;
  }

  // An empty slot, marked busy, counted in `size`; with the mutex held and size < max_size.
  Slot* reserve() {
    for (auto& slot : slots) {
      if (slot.state.load(std::memory_order_relaxed) == detail::object_pool::empty) {
        slot.state.store(detail::object_pool::busy, std::memory_order_relaxed);
        ++size;
        return &slot;
      }
    }
    slots.emplace_back().state.store(detail::object_pool::busy, std::memory_order_relaxed);
    ++size;
    return &slots.back();
  }

  // Calls the factory for a reserved slot, the mutex released, and gives the slot `state`
  // under the mutex (so that a waiter's scan sees it or is woken); on failure frees the slot.
  void create(Slot* slot, std::uint32_t state) {
    std::unique_ptr<T> object;
    PoolClock::time_point at{};
    try {
      object = factory();
      if (!object) throw Error("ObjectPool: the factory returned a null pointer");
      at = now();
    } catch (...) {
      std::lock_guard lock(mutex);
      slot->state.store(detail::object_pool::empty, std::memory_order_relaxed);
      --size;
      available.notify_one();  // a waiter may create one instead
      throw;
    }
    std::lock_guard lock(mutex);
    slot->object = std::move(object);
    slot->created = at;
    slot->noted = false;
    ++created;
    slot->state.store(state, std::memory_order_release);
    if (state == detail::object_pool::idle) available.notify_one();
  }

  Slot* acquire_slow(bool wait, std::optional<std::chrono::milliseconds> timeout) {
    std::optional<PoolClock::time_point> deadline;
    if (timeout) deadline = PoolClock::now() + *timeout;
    bool counted_wait = false;
    std::unique_lock lock(mutex);
    for (;;) {
      if (Slot* slot = scan()) {
        lock.unlock();
        if (accept(slot, false)) return slot;
        lock.lock();
        continue;
      }
      if (size < max_size) {
        Slot* slot = reserve();
        lock.unlock();
        create(slot, detail::object_pool::in_use);  // throws with the slot freed
        if (accept(slot, true)) return slot;
        lock.lock();
        continue;
      }
      if (!wait) return nullptr;
      if (!counted_wait) {
        ++waits;
        counted_wait = true;
      }
      // Announced before the last scan: a release after it sees us and notifies.
      attention.fetch_add(1);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      Slot* slot = scan();
      if (slot == nullptr) {
        if (deadline) {
          available.wait_until(lock, *deadline);
        } else {
          available.wait(lock);
        }
      }
      attention.fetch_sub(1);
      if (slot != nullptr) {
        lock.unlock();
        if (accept(slot, false)) return slot;
        lock.lock();
        continue;
      }
      if (deadline && PoolClock::now() >= *deadline) {
        if (Slot* last = scan()) {
          lock.unlock();
          if (accept(last, false)) return last;
          lock.lock();
        }
        ++timeouts;
        throw TimeoutError("ObjectPool: no object came free within " +
                           std::to_string(timeout->count()) + " ms (all " +
                           std::to_string(size) + " in use, max_size " +
                           std::to_string(max_size) + ")");
      }
    }
  }

  // Creates objects up to min_size; a factory that throws stops it (and is thrown).
  void refill() {
    for (;;) {
      Slot* slot = nullptr;
      {
        std::lock_guard lock(mutex);
        if (size >= min_size || closed) return;
        slot = reserve();
      }
      create(slot, detail::object_pool::idle);
    }
  }

  // A pass's removal of an object it holds busy, with the mutex held and room reserved in
  // `doomed` (the object is destroyed there, after the lock is released).
  void bury(Slot& slot, std::vector<std::unique_ptr<T>>& doomed) noexcept {
    doomed.push_back(std::move(slot.object));
    slot.noted = false;
    slot.state.store(detail::object_pool::empty, std::memory_order_release);
    ++destroyed;
    --size;
  }

  std::size_t pass(bool full) {
    const auto at = now();
    std::vector<std::unique_ptr<T>> doomed;
    std::vector<Slot*> to_check;
    std::vector<std::pair<std::chrono::milliseconds, std::vector<std::uintptr_t>>> leaked;
    {
      std::lock_guard lock(mutex);
      // Room for every slot first: nothing below may fail once slots are marked busy.
      doomed.reserve(slots.size());
      to_check.reserve(slots.size());
      leaked.reserve(slots.size());
      std::size_t alive = size;
      auto doom = [&](Slot& slot) {
        bury(slot, doomed);
        --alive;
      };
      for (auto& slot : slots) {
        std::uint32_t state = slot.state.load(std::memory_order_acquire);
        if (state == detail::object_pool::in_use || state == detail::object_pool::retiring) {
          if (!full) continue;
          if (options.max_lifetime && at - slot.created >= *options.max_lifetime) {
            slot.state.compare_exchange_strong(state, detail::object_pool::retiring);
          }
          if (slot.tracked && !slot.leak_reported &&
              at - slot.acquired_at >= *options.leak_threshold) {
            try {
              leaked.emplace_back(
                  std::chrono::duration_cast<std::chrono::milliseconds>(at - slot.acquired_at),
                  slot.acquired_stack);
              slot.leak_reported = true;
              ++leaks;
            } catch (...) {
              // No memory for the report now: the next pass tries again.
            }
          }
          continue;
        }
        if (state != detail::object_pool::idle ||
            !slot.state.compare_exchange_strong(state, detail::object_pool::busy,
                                                std::memory_order_acquire)) {
          continue;
        }
        const std::uint64_t uses = slot.uses.load(std::memory_order_relaxed);
        if (!slot.noted || uses != slot.seen_uses) {
          slot.noted = true;
          slot.seen_uses = uses;
          slot.idle_since = at;
        }
        if (full && options.max_lifetime && at - slot.created >= *options.max_lifetime) {
          doom(slot);
        } else if (options.idle_timeout && alive > min_size &&
                   at - slot.idle_since >= *options.idle_timeout) {
          doom(slot);
        } else if (full && options.health_check) {
          to_check.push_back(&slot);  // stays busy: checked below, without the lock
        } else {
          slot.state.store(detail::object_pool::idle, std::memory_order_release);
        }
      }
    }
    for (Slot* slot : to_check) {
      bool ok = false;
      try {
        ok = healthy(*slot->object);
      } catch (...) {
        detail::report_unraisable("Exception ignored in ObjectPool health check",
                                  std::current_exception(), nullptr);
      }
      std::lock_guard lock(mutex);
      if (ok) {
        slot->state.store(detail::object_pool::idle, std::memory_order_release);
      } else {
        bury(*slot, doomed);
        ++failed_checks;
      }
    }
    if (!to_check.empty() || !doomed.empty()) available.notify_all();
    const std::size_t count = doomed.size();
    doomed.clear();
    for (auto& [held, stack] : leaked) report_leak(held, stack);
    if (full) refill();
    return count;
  }

  void report_leak(std::chrono::milliseconds held, const std::vector<std::uintptr_t>& stack) {
    LeaseLeak leak{held, {}};
    try {
      const detail::trace::SymbolTable symbols(stack);
      std::size_t visible = 0;
      for (const auto* f : symbols.visible_frames(stack.data(), stack.size(), true, 32, &visible)) {
        leak.acquired_at.push_back(tracemalloc::Frame{f->filename, f->lineno, f->function});
      }
    } catch (...) {
      // A stack that cannot be symbolized is still a leak worth reporting.
    }
    try {
      if (options.leak_sink) {
        options.leak_sink(leak);
      } else {
        std::fputs(leak.to_string().c_str(), stderr);
      }
    } catch (...) {
      detail::report_unraisable("Exception ignored in ObjectPool leak sink",
                                std::current_exception(), nullptr);
    }
  }

  PoolStats stats() const {
    std::lock_guard lock(mutex);
    PoolStats s;
    s.size = size;
    for (const auto& slot : slots) {
      const std::uint32_t state = slot.state.load(std::memory_order_relaxed);
      if (state == detail::object_pool::idle) ++s.idle;
      if (state == detail::object_pool::in_use || state == detail::object_pool::retiring) {
        ++s.in_use;
      }
      s.acquires += slot.uses.load(std::memory_order_relaxed);
    }
    s.created = created;
    s.destroyed = destroyed;
    s.waits = waits;
    s.timeouts = timeouts;
    s.failed_health_checks = failed_checks;
    s.leaks_reported = leaks;
    return s;
  }

  void run_evictor() noexcept {
    std::unique_lock lock(mutex);
    while (!stopping) {
      if (stop.wait_for(lock, *options.evict_interval, [this] { return stopping; })) break;
      lock.unlock();
      try {
        pass(true);
      } catch (...) {
        detail::report_unraisable("Exception ignored in ObjectPool evictor",
                                  std::current_exception(), nullptr);
      }
      lock.lock();
    }
  }

  // The ObjectPool is being destroyed: idle objects go now, the rest as their leases end, and
  // the last of those deletes the state. Releases already under way on other threads are
  // waited for first: until `swept`, no lease deletes the state.
  void close() noexcept {
    if (evictor.joinable()) {
      {
        std::lock_guard lock(mutex);
        stopping = true;
      }
      stop.notify_all();
      evictor.join();
    }
    std::vector<std::unique_ptr<T>> doomed;
    {
      std::lock_guard lock(mutex);
      doomed.reserve(slots.size());
      closed = true;
      attention.fetch_or(detail::object_pool::closed_bit);
      for (auto& slot : slots) {
        std::uint32_t expected = detail::object_pool::idle;
        if (slot.state.compare_exchange_strong(expected, detail::object_pool::busy)) {
          doomed.push_back(std::move(slot.object));
          slot.state.store(detail::object_pool::empty, std::memory_order_relaxed);
          --size;
        } else if (expected != detail::object_pool::empty) {
          ++outstanding;
        }
      }
    }
    doomed.clear();
    bool last = false;
    for (;;) {
      {
        std::lock_guard lock(mutex);
        const bool releasing = std::any_of(slots.begin(), slots.end(), [](const Slot& slot) {
          return slot.releasing.load(std::memory_order_acquire);
        });
        if (!releasing) {
          swept = true;
          last = outstanding == 0;
          break;
        }
      }
      std::this_thread::yield();  // a release on another thread is finishing
    }
    if (last) delete this;
  }
};


}  // namespace detail::object_pool

/**
 * A pool's object on loan: move-only; its destruction gives the object back (or destroys it,
 * after invalidate()). A default-constructed or moved-from Lease holds nothing.
 */
template <class T>
class Lease {
 public:
  Lease() noexcept = default;
  Lease(Lease&& other) noexcept
      : core_(std::exchange(other.core_, nullptr)), slot_(std::exchange(other.slot_, nullptr)) {}
  Lease& operator=(Lease&& other) noexcept {
    if (this != &other) {
      give_back();
      core_ = std::exchange(other.core_, nullptr);
      slot_ = std::exchange(other.slot_, nullptr);
    }
    return *this;
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { give_back(); }

  T& operator*() const noexcept { return *slot_->object; }
  T* operator->() const noexcept { return slot_->object.get(); }
  /// The object, or nullptr when the lease holds nothing.
  T* get() const noexcept { return slot_ != nullptr ? slot_->object.get() : nullptr; }
  explicit operator bool() const noexcept { return slot_ != nullptr; }

  /// Marks the object broken: when the lease ends it is destroyed, not reused.
  void invalidate() noexcept {
    if (slot_ != nullptr) slot_->broken = true;
  }

 private:
  friend class ObjectPool<T>;
  using Core = detail::object_pool::Core<T>;
  Lease(Core* core, detail::object_pool::Slot<T>* slot) noexcept : core_(core), slot_(slot) {}
  void give_back() noexcept;

  Core* core_ = nullptr;
  detail::object_pool::Slot<T>* slot_ = nullptr;
};

/**
 * A thread-safe pool of objects made by a factory (Python's exercise 10, with HikariCP's and
 * commons-pool's lessons): it grows up to `max_size` when every object is out, then makes
 * acquire() wait; idle objects beyond `min_size` are destroyed after `idle_timeout`; objects are
 * checked before reuse; a lease held too long is reported with the stack that took it.
 *
 * ```cpp
 * memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 3, 10);
 * {
 *   auto conn = pool.acquire();  // a Lease<Connection>
 *   conn->query("select 1");
 * }                              // back in the pool
 * ```
 *
 * The fast path (a thread taking back the object it gave back last, validation off) is one CAS
 * each way and touches no line another thread writes. Maintenance (idle time, lifetimes, health
 * of idle objects, leaks) happens in passes: maintain(), shrink() and the optional evictor
 * thread. An object's idle time starts when a pass first sees it idle, so releasing reads no
 * clock: an object is destroyed after at least `idle_timeout` idle, at most one pass later.
 *
 * Destroying the pool destroys its idle objects at once; objects out on lease stay valid and
 * are destroyed when their leases end (the pool's state lives until the last one does).
 */
template <class T>
class ObjectPool {
 public:
  using Factory = std::function<std::unique_ptr<T>()>;

  /// Creates `min_size` objects now. An empty factory, `max_size` 0 or `min_size > max_size`
  /// throws ValueError; a factory that throws here makes the constructor throw.
  explicit ObjectPool(Factory factory, std::size_t min_size = 5, std::size_t max_size = 20,
                      PoolOptions<T> options = {})
      : core_(new Core(std::move(factory), min_size, max_size, std::move(options))) {
    std::unique_ptr<Core> guard(core_);
    if (!core_->factory) throw ValueError("ObjectPool: the factory is empty");
    if (max_size == 0) throw ValueError("ObjectPool: max_size must be at least 1, got 0");
    if (min_size > max_size) {
      throw ValueError("ObjectPool: min_size (" + std::to_string(min_size) +
                       ") is larger than max_size (" + std::to_string(max_size) + ")");
    }
    for (auto* d : {&core_->options.idle_timeout, &core_->options.max_lifetime,
                    &core_->options.evict_interval, &core_->options.leak_threshold}) {
      if (*d && d->value().count() <= 0) {
        throw ValueError("ObjectPool: durations must be positive, got " +
                         std::to_string(d->value().count()) + " ms");
      }
    }
    core_->refill();
    if (core_->options.evict_interval) {
      core_->evictor = std::thread([core = core_] { core->run_evictor(); });
    }
    guard.release();
  }

  ObjectPool(const ObjectPool&) = delete;
  ObjectPool& operator=(const ObjectPool&) = delete;

  /// Joins the evictor and destroys the idle objects; objects on lease are destroyed when their
  /// leases end.
  ~ObjectPool() { core_->close(); }

  /**
   * An object on lease: this thread's last one if it is idle, else any idle one, else a new
   * one while fewer than `max_size` exist; otherwise waits until one comes back, and throws
   * TimeoutError once `timeout` has passed (no timeout: waits as long as it takes). A factory
   * or health check that throws makes acquire throw it; the pool stays consistent.
   */
  Lease<T> acquire(std::optional<std::chrono::milliseconds> timeout = {}) {
    if (auto* slot = core_->take_cached()) {
      if (core_->accept(slot, false)) return Lease<T>(core_, slot);
    }
    return Lease<T>(core_, core_->acquire_slow(true, timeout));
  }

  /// Like acquire(), but never waits: nothing when every object is out and none can be made.
  std::optional<Lease<T>> try_acquire() {
    if (auto* slot = core_->take_cached()) {
      if (core_->accept(slot, false)) return Lease<T>(core_, slot);
    }
    auto* slot = core_->acquire_slow(false, std::nullopt);
    if (slot == nullptr) return std::nullopt;
    return Lease<T>(core_, slot);
  }

  /// Ends a lease now (as its destruction would). A lease of another pool, or an empty one,
  /// throws ValueError.
  void release(Lease<T>&& lease) {
    if (lease.core_ != core_) {
      throw ValueError(lease.core_ == nullptr ? "ObjectPool: release of an empty lease"
                                              : "ObjectPool: release of another pool's lease");
    }
    Lease<T> ending = std::move(lease);
  }

  /// Whether `object` passes the configured health check (true when there is none).
  bool health_check(const T& object) const { return core_->healthy(object); }

  /// Destroys the idle objects beyond `min_size` that have been idle for `idle_timeout`;
  /// returns how many. Also notes which objects are idle, since when (see the class comment).
  std::size_t shrink() { return core_->pass(false); }

  /**
   * One maintenance pass, the evictor's: shrink(), then destroys idle objects past
   * `max_lifetime` or failing their health check, reports leases held past `leak_threshold`,
   * and creates objects up to `min_size`. Returns the objects destroyed.
   */
  std::size_t maintain() { return core_->pass(true); }

  PoolStats stats() const { return core_->stats(); }

 private:
  using Core = detail::object_pool::Core<T>;

  Core* core_;
};

template <class T>
void Lease<T>::give_back() noexcept {
  if (slot_ == nullptr) return;
  core_->release(std::exchange(slot_, nullptr));
  core_ = nullptr;
}

}  // namespace memlens
