// memlens: the heap lock, memlens' counterpart of CPython's GIL.
#pragma once

#include <mutex>

namespace memlens {

/// The mutex that guards every memlens object and memlens' global state (collector lists, weak
/// reference table, intern table). Recursive, so code holding it may call code that takes it.
inline std::recursive_mutex& heap_mutex() {
  static auto* mutex = new std::recursive_mutex();  // immortal: objects may die at exit
  return *mutex;
}

/**
 * Holds the heap lock for its scope. Reference counts are plain integers, so a program whose
 * objects are used from more than one thread must hold it around every use: copying or dropping
 * a Ref, `make`, weak references, `sys` and `gc` calls. Single-threaded programs never need it.
 * See docs/design.md, "Threads".
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

}  // namespace memlens
