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
