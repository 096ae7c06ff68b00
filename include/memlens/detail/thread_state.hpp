// memlens internals: what memlens keeps per thread, and the check of the heap-lock rule.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include "memlens/config.hpp"

/// MEMLENS_CHECK_THREADS: whether memlens checks the heap-lock rule (docs/design.md, "Threads"):
/// once a second thread has used memlens objects, a reference count change, a make or a weak
/// reference operation without memlens::HeapLock held aborts with a message naming the rule.
/// On in debug builds; define it to 1 to check a release build too, or to 0 to turn it off.
#ifndef MEMLENS_CHECK_THREADS
#ifdef NDEBUG
#define MEMLENS_CHECK_THREADS 0
#else
#define MEMLENS_CHECK_THREADS 1
#endif
#endif

namespace memlens {
class Object;
}

namespace memlens::detail {

/// The objects the trashcan queued on this thread. Its buffer comes from malloc and goes back
/// when the outermost release has drained it.
struct DeferredQueue {
  Object** items = nullptr;
  std::size_t size = 0;
  std::size_t capacity = 0;
};

/// The block this thread's make is constructing: Ref<T>(this) is legitimate there before make
/// sets the object's heap flag.
struct Construction {
  const char* begin = nullptr;
  const char* end = nullptr;
};

/// Everything memlens keeps per thread, in one trivially destructible object: it outlives every
/// object of its thread (a thread_local Ref released at thread exit, a global one released during
/// static destruction still find it), and a shared library reaches it with one TLS lookup.
struct ThreadState {
  int dealloc_depth = 0;       // nesting of releases (the trashcan's)
  DeferredQueue deferred;      // releases the trashcan queued
  Construction constructing;   // what make is constructing
  int heap_lock_depth = 0;     // how many times this thread holds HeapLock
  bool counted = false;        // counted in ThreadCheck::live_threads
  bool exited = false;         // its thread is exiting: no longer counted
};
MEMLENS_SHARED inline constinit thread_local ThreadState thread_state{};

/// The threads that have used memlens objects and have not exited.
struct ThreadCheck {
  std::atomic<int> live_threads{0};
};
MEMLENS_SHARED inline constinit ThreadCheck thread_check{};

/// Takes the thread out of the count when it exits.
struct ThreadExit {
  ThreadExit() = default;
  ThreadExit(const ThreadExit&) = delete;
  ThreadExit& operator=(const ThreadExit&) = delete;
  ~ThreadExit() {
    ThreadState& t = thread_state;
    if (!t.counted) return;
    t.counted = false;
    t.exited = true;
    thread_check.live_threads.fetch_sub(1, std::memory_order_relaxed);
  }
};

/// A forked child has one thread, the one that forked.
inline void count_after_fork_in_child() noexcept {
  thread_check.live_threads.store(thread_state.counted ? 1 : 0, std::memory_order_relaxed);
}

MEMLENS_SHARED MEMLENS_NOINLINE inline void count_this_thread() noexcept {
  static const bool fork_handled =
      (pthread_atfork(nullptr, nullptr, &count_after_fork_in_child), true);
  static_cast<void>(fork_handled);
  thread_local ThreadExit on_exit;  // constructed now: destroyed at this thread's exit
  static_cast<void>(on_exit);
  thread_state.counted = true;
  thread_check.live_threads.fetch_add(1, std::memory_order_relaxed);
}

[[noreturn]] MEMLENS_NOINLINE inline void heap_lock_violation(const char* operation) noexcept {
  std::fprintf(stderr,
               "memlens: %s without memlens::HeapLock held, while another thread uses memlens "
               "objects. Once objects are used from several threads, every use (copying or "
               "dropping a Ref, make, weak references) must hold HeapLock; see docs/design.md, "
               "\"Threads\" (memlens::with_heap_lock runs a thread's callable, and destroys what "
               "it captured, under the lock)\n",
               operation);
  std::fflush(stderr);
  std::abort();
}

/// The heap-lock rule's check, at every count change, make and weak-reference operation.
inline void check_heap_lock(const char* operation) noexcept {
  if constexpr (MEMLENS_CHECK_THREADS) {
    ThreadState& t = thread_state;
    if (!t.counted && !t.exited) [[unlikely]] count_this_thread();
    if (t.heap_lock_depth != 0) return;
    const int others =
        thread_check.live_threads.load(std::memory_order_relaxed) - (t.counted ? 1 : 0);
    if (others > 0) [[unlikely]] heap_lock_violation(operation);
  } else {
    static_cast<void>(operation);
  }
}

}  // namespace memlens::detail
