// memlens: the heap lock, memlens' counterpart of CPython's GIL.
#pragma once

#include <pthread.h>

#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>

#include "memlens/config.hpp"
#include "memlens/detail/thread_state.hpp"

namespace memlens {

/**
 * The mutex behind HeapLock: recursive, so code holding it may call code that takes it, and a
 * Lockable (`std::unique_lock<memlens::HeapMutex>`, `std::condition_variable_any` work with it).
 * It counts how often each thread holds it, which is what the heap-lock rule's check reads.
 *
 * After `fork()` the child gets a fresh one, held as often as the forking thread held it, so a
 * lock another thread held at that moment cannot deadlock the child (CPython re-creates its GIL
 * the same way). Objects that other thread was changing may be inconsistent in the child: a
 * program whose threads use memlens should fork while holding HeapLock.
 */
class HeapMutex {
 public:
  HeapMutex() { ::new (static_cast<void*>(storage_)) std::recursive_mutex(); }
  HeapMutex(const HeapMutex&) = delete;
  HeapMutex& operator=(const HeapMutex&) = delete;
  ~HeapMutex() = delete;  // immortal: objects may die at exit

  void lock() {
    mutex().lock();
    ++detail::thread_state.heap_lock_depth;
  }
  bool try_lock() {
    if (!mutex().try_lock()) return false;
    ++detail::thread_state.heap_lock_depth;
    return true;
  }
  void unlock() {
    --detail::thread_state.heap_lock_depth;
    mutex().unlock();
  }

  /// In a child process just forked: a new mutex, held as the forking thread held the old one.
  void renew_in_child() noexcept {
    ::new (static_cast<void*>(storage_)) std::recursive_mutex();
    for (int i = 0; i < detail::thread_state.heap_lock_depth; ++i) mutex().lock();
  }

 private:
  std::recursive_mutex& mutex() noexcept {
    return *std::launder(reinterpret_cast<std::recursive_mutex*>(storage_));
  }
  alignas(std::recursive_mutex) unsigned char storage_[sizeof(std::recursive_mutex)];
};

namespace detail {
/// The forked child has one thread: this one, with a heap lock of its own.
inline void heap_after_fork_in_child() noexcept;
}  // namespace detail

/// The mutex that guards every memlens object and memlens' global state (collector lists, weak
/// reference table, intern table). Recursive; see HeapMutex.
MEMLENS_SHARED inline HeapMutex& heap_mutex() {
  static HeapMutex* mutex = [] {
    auto* m = new HeapMutex();  // immortal: objects may die at exit
    pthread_atfork(nullptr, nullptr, &detail::heap_after_fork_in_child);
    return m;
  }();
  return *mutex;
}

namespace detail {
inline void heap_after_fork_in_child() noexcept { heap_mutex().renew_in_child(); }
}  // namespace detail

/**
 * Holds the heap lock for its scope. Reference counts are plain integers, so a program whose
 * objects are used from more than one thread must hold it around every use: copying or dropping
 * a Ref, `make`, weak references, `sys` and `gc` calls. Single-threaded programs never need it.
 * Debug builds check the rule (MEMLENS_CHECK_THREADS). See docs/design.md, "Threads".
 *
 * ```cpp
 * std::thread worker([&] {
 *   memlens::HeapLock lock;
 *   auto copy = shared;  // safe: no other thread touches counts meanwhile
 * });
 * ```
 */
class HeapLock {
 public:
  HeapLock() { heap_mutex().lock(); }
  ~HeapLock() { heap_mutex().unlock(); }
  HeapLock(const HeapLock&) = delete;
  HeapLock& operator=(const HeapLock&) = delete;
};

/**
 * A callable that runs `f` under HeapLock and then destroys it, still under the lock: what `f`
 * captured (Refs, weak references) is dropped safely. Made by `with_heap_lock`; runs once.
 *
 * The trap it avoids: `std::thread t([ref] { memlens::HeapLock lock; use(ref); });` drops its
 * copy of `ref` when the thread destroys the lambda, after the body returned and released the
 * lock, racing with every other thread. Destroyed without having run, it also takes the lock.
 */
template <class F>
class HeapLocked {
 public:
  explicit HeapLocked(F f) : f_(std::make_unique<F>(std::move(f))) {}
  HeapLocked(HeapLocked&&) noexcept = default;
  HeapLocked& operator=(HeapLocked&&) = delete;
  HeapLocked(const HeapLocked&) = delete;
  HeapLocked& operator=(const HeapLocked&) = delete;
  ~HeapLocked() {
    if (f_) {
      HeapLock lock;
      f_.reset();
    }
  }

  /// Runs the callable under HeapLock, then destroys it under the lock (also if it throws).
  template <class... Args>
  decltype(auto) operator()(Args&&... args) {
    HeapLock lock;
    const std::unique_ptr<F> f = std::move(f_);  // destroyed before `lock` is released
    return std::invoke(*f, std::forward<Args>(args)...);
  }

 private:
  std::unique_ptr<F> f_;
};

/**
 * Wraps a callable for another thread: it runs under HeapLock and what it captured is destroyed
 * under the lock. Capture in a thread that holds HeapLock (or before other threads use memlens).
 *
 * ```cpp
 * std::thread worker(memlens::with_heap_lock([node] { node->value += 1; }));
 * ```
 */
template <class F>
HeapLocked<std::decay_t<F>> with_heap_lock(F&& f) {
  return HeapLocked<std::decay_t<F>>(std::forward<F>(f));
}

}  // namespace memlens
