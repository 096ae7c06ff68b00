// memlens: configuration macros shared by every header.
#pragma once

#include <cstdio>
#include <cstdlib>

/// MEMLENS_ASSERT(cond, message): checks a precondition that only a programming error can
/// break (an object made outside `make`, a reference count overflow). Active unless NDEBUG is
/// defined; define MEMLENS_ASSERT before including memlens to route it elsewhere.
#ifndef MEMLENS_ASSERT
#ifdef NDEBUG
#define MEMLENS_ASSERT(cond, message) static_cast<void>(0)
#else
#define MEMLENS_ASSERT(cond, message)                                                 \
  ((cond) ? static_cast<void>(0)                                                       \
          : (std::fprintf(stderr, "%s:%d: memlens assertion failed: %s (%s)\n", __FILE__, \
                          __LINE__, message, #cond),                                   \
             std::abort()))
#endif
#endif

/// MEMLENS_TYPE_STATS: 1 (the default) keeps a live count per type, which `make` and the
/// destruction of an object update (sys::type_stats, MemoryLeakDetector, memlens::testing);
/// 0 removes those two counter updates, and type_stats() then reports no objects. Every
/// translation unit of a program must agree on it.
#ifndef MEMLENS_TYPE_STATS
#define MEMLENS_TYPE_STATS 1
#endif

/// MEMLENS_SHARED: marks every piece of memlens' process-wide state (namespace-scope inline
/// variables, thread_locals, and the inline functions that hold a function-local static), so that
/// a process has exactly one of each even when modules are built with -fvisibility=hidden: with
/// default visibility the variables are exported, as STB_GNU_UNIQUE (g++) or weak (clang++)
/// symbols, and the dynamic linker binds every module to the first definition in lookup order.
/// The explicit attribute wins over -fvisibility=hidden and -fvisibility-inlines-hidden alike.
/// An executable exports such a symbol only when a shared library it is linked with mentions
/// it, or when it is linked with --export-dynamic or a dynamic list: memlens::memlens gives
/// executables cmake/memlens.dynlist (CMakeLists.txt, MEMLENS_EXPORT_STATE).
#ifndef MEMLENS_SHARED
#if defined(__GNUC__) || defined(__clang__)
#define MEMLENS_SHARED __attribute__((visibility("default")))
#else
#define MEMLENS_SHARED
#endif
#endif

// Keeps the rare path (last reference dropped) out of the inlined Ref destructor.
#if defined(__GNUC__) || defined(__clang__)
#define MEMLENS_NOINLINE __attribute__((noinline))
// For the collector's per-reference work in every traverse, which must not become a call.
#define MEMLENS_ALWAYS_INLINE __attribute__((always_inline))
#define MEMLENS_LIKELY(x) __builtin_expect(!!(x), 1)
#define MEMLENS_UNLIKELY(x) __builtin_expect(!!(x), 0)
// In one arm of a predictable branch: stops the compiler from turning the branch into a
// conditional move, which would make the CPU wait for the condition's data.
#define MEMLENS_KEEP_BRANCH() __asm__ volatile("")
#else
#define MEMLENS_NOINLINE
#define MEMLENS_ALWAYS_INLINE
#define MEMLENS_LIKELY(x) (x)
#define MEMLENS_UNLIKELY(x) (x)
#define MEMLENS_KEEP_BRANCH() static_cast<void>(0)
#endif
