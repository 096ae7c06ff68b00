// memlens: replaces every form of the global operator new and delete (plain, array, nothrow,
// aligned, sized) with versions that feed memlens::tracemalloc. Include it in exactly ONE .cpp
// file of a program (the definitions are not inline, as the standard requires of replacements).
//
// While tracemalloc is not tracing, each call costs one relaxed atomic load and a branch on top
// of malloc/free. Tracebacks are captured by walking frame pointers: build with
// -fno-omit-frame-pointer (Debug builds at -O0 have them anyway); see docs/design.md.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

#include "memlens/config.hpp"
#include "memlens/detail/trace_core.hpp"
#include "memlens/tracemalloc.hpp"

namespace memlens::detail::trace {

/// operator new's contract: retry through the new handler; nullptr only when there is none.
inline void* allocate_for_new(std::size_t size, std::size_t alignment) {
  for (;;) {
    if (void* p = raw_allocate(size, alignment)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) return nullptr;
    handler();
  }
}

inline void* allocate_or_throw(std::size_t size, std::size_t alignment, const void* frame) {
  void* p = allocate_for_new(size, alignment);
  if (p == nullptr) throw std::bad_alloc();
  if (tracing()) on_alloc(reinterpret_cast<std::uintptr_t>(p), size, 0, frame);
  return p;
}

inline void* allocate_or_null(std::size_t size, std::size_t alignment, const void* frame) noexcept {
  void* p = nullptr;
  try {
    p = allocate_for_new(size, alignment);
  } catch (const std::bad_alloc&) {  // a new handler gave up: nothrow new reports it as nullptr
    return nullptr;
  }
  if (p != nullptr && tracing()) on_alloc(reinterpret_cast<std::uintptr_t>(p), size, 0, frame);
  return p;
}

inline void release(void* p) noexcept {
  if (p != nullptr && tracing()) on_free(reinterpret_cast<std::uintptr_t>(p), 0);
  std::free(p);
}

}  // namespace memlens::detail::trace

// clang links its sanitizer runtimes (ASan, TSan, MSan) statically, and they define operator
// new themselves: a second definition would not link. There the tracer hooks in through the
// sanitizer's malloc/free hooks instead, which see operator new and malloc alike (so malloc'd
// memory is traced too). GCC links its sanitizer runtimes dynamically: ours wins, as usual.
#if defined(__clang__) && defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define MEMLENS_TRACK_NEW_SANITIZER_HOOKS 1
#endif
#endif

#ifdef MEMLENS_TRACK_NEW_SANITIZER_HOOKS

extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             std::size_t),
                                                         void (*free_hook)(const volatile void*));

namespace memlens::detail::trace {

inline void sanitizer_malloc_hook(const volatile void* p, std::size_t size) {
  // The sanitizer's allocator has no frame pointers: walk with the unwinder (nullptr).
  if (tracing()) on_alloc(reinterpret_cast<std::uintptr_t>(p), size, 0, nullptr);
}

inline void sanitizer_free_hook(const volatile void* p) {
  if (tracing()) on_free(reinterpret_cast<std::uintptr_t>(p), 0);
}

}  // namespace memlens::detail::trace

__attribute__((constructor(101))) static void memlens_install_sanitizer_hooks() {
  __sanitizer_install_malloc_and_free_hooks(memlens::detail::trace::sanitizer_malloc_hook,
                                            memlens::detail::trace::sanitizer_free_hook);
}

#undef MEMLENS_TRACK_NEW_SANITIZER_HOOKS
#else  // replace operator new and delete

// Never inlined, operator delete included: g++ -O2 would otherwise see the malloc and the free
// inside them, in the translation unit that includes this header, and warn that memory from
// operator new reaches free (-Wmismatched-new-delete) wherever that unit deletes something.
#define MEMLENS_TRACK_NEW_ATTRS __attribute__((noinline))
#define MEMLENS_DEFAULT_ALIGN alignof(std::max_align_t)
#define MEMLENS_FRAME __builtin_frame_address(0)

MEMLENS_TRACK_NEW_ATTRS void* operator new(std::size_t size) {
  return memlens::detail::trace::allocate_or_throw(size, MEMLENS_DEFAULT_ALIGN, MEMLENS_FRAME);
}
MEMLENS_TRACK_NEW_ATTRS void* operator new[](std::size_t size) {
  return memlens::detail::trace::allocate_or_throw(size, MEMLENS_DEFAULT_ALIGN, MEMLENS_FRAME);
}
MEMLENS_TRACK_NEW_ATTRS void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return memlens::detail::trace::allocate_or_null(size, MEMLENS_DEFAULT_ALIGN, MEMLENS_FRAME);
}
MEMLENS_TRACK_NEW_ATTRS void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return memlens::detail::trace::allocate_or_null(size, MEMLENS_DEFAULT_ALIGN, MEMLENS_FRAME);
}
MEMLENS_TRACK_NEW_ATTRS void* operator new(std::size_t size, std::align_val_t al) {
  return memlens::detail::trace::allocate_or_throw(size, static_cast<std::size_t>(al),
                                                   MEMLENS_FRAME);
}
MEMLENS_TRACK_NEW_ATTRS void* operator new[](std::size_t size, std::align_val_t al) {
  return memlens::detail::trace::allocate_or_throw(size, static_cast<std::size_t>(al),
                                                   MEMLENS_FRAME);
}
MEMLENS_TRACK_NEW_ATTRS void* operator new(std::size_t size, std::align_val_t al,
                                           const std::nothrow_t&) noexcept {
  return memlens::detail::trace::allocate_or_null(size, static_cast<std::size_t>(al),
                                                  MEMLENS_FRAME);
}
MEMLENS_TRACK_NEW_ATTRS void* operator new[](std::size_t size, std::align_val_t al,
                                             const std::nothrow_t&) noexcept {
  return memlens::detail::trace::allocate_or_null(size, static_cast<std::size_t>(al),
                                                  MEMLENS_FRAME);
}

MEMLENS_TRACK_NEW_ATTRS void operator delete(void* p) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete[](void* p) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete(void* p, std::size_t) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete[](void* p, std::size_t) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete(void* p, std::align_val_t) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete[](void* p, std::align_val_t) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete(void* p, const std::nothrow_t&) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete[](void* p, const std::nothrow_t&) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete(void* p, std::align_val_t,
                                             const std::nothrow_t&) noexcept {
  memlens::detail::trace::release(p);
}
MEMLENS_TRACK_NEW_ATTRS void operator delete[](void* p, std::align_val_t,
                                               const std::nothrow_t&) noexcept {
  memlens::detail::trace::release(p);
}

#undef MEMLENS_TRACK_NEW_ATTRS
#undef MEMLENS_DEFAULT_ALIGN
#undef MEMLENS_FRAME

#endif  // MEMLENS_TRACK_NEW_SANITIZER_HOOKS
