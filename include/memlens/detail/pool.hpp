// memlens internals: the small-object allocator behind make(), CPython's pymalloc in spirit.
//
// Why: a general-purpose malloc costs more than the rest of make() and destroy() together, and
// once the heap has churned it hands out blocks in an order unrelated to allocation order, so
// walking the collector's lists (which follow allocation order) turns into random memory access
// (a 1M-object collection measured 10x slower after a few build/collect rounds). Blocks of one
// size class come from 16 KiB pages carved out of 1 MiB arenas, so neighbours in the lists are
// mostly neighbours in memory; an arena goes back to the system when its last page empties.
//
// Not thread-safe by itself: it is used under the same rule as every memlens object (one thread,
// or HeapLock held; see docs/design.md, "Threads"). Pages come from malloc directly, so a
// replaced global operator new never sees them; while tracemalloc traces, each block is traced
// by itself instead. Sanitizer builds bypass the pool, so that
// AddressSanitizer checks every object as a heap block of its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

#include "memlens/config.hpp"
#include "memlens/detail/trace_core.hpp"

#if defined(MEMLENS_NO_POOL) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MEMLENS_POOL_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define MEMLENS_POOL_DISABLED 1
#endif
#endif

namespace memlens::detail::pool {

inline constexpr std::size_t page_size = 16 * 1024;
inline constexpr std::size_t arena_size = 1024 * 1024;  // its first page holds its header
inline constexpr std::size_t granularity = 16;
inline constexpr std::size_t max_block = 512;  // larger objects go to operator new
inline constexpr std::size_t classes = max_block / granularity;

#ifdef MEMLENS_POOL_DISABLED
inline constexpr bool enabled = false;
#else
inline constexpr bool enabled = true;
#endif

struct FreeBlock {
  FreeBlock* next;
};

/// The start of every page; its blocks follow, from `first_block` on.
struct Page {
  Page* prev;  // in its class's list of pages with free blocks
  Page* next;
  FreeBlock* free;    // blocks freed and not reused yet
  char* untouched;    // blocks never handed out start here...
  char* end;          // ...and stop before this
  std::uint32_t used;
  std::uint32_t size_class;
  bool listed;  // in its class's list (has a free block)
};
inline constexpr std::size_t first_block = (sizeof(Page) + granularity - 1) / granularity * granularity;

struct Arena {
  Arena* prev;  // in the list of arenas that have a free page
  Arena* next;
  Page* free_pages;  // pages given back, linked through Page::next
  char* untouched;   // pages never used start here
  std::uint32_t used_pages;
  bool listed;
};

struct SizeClass {
  Page* pages = nullptr;  // pages with at least one free block; allocation takes the first
  Page* spare = nullptr;  // one empty page kept back, so an alloc/free loop does not churn pages
};

struct State {
  SizeClass classes[pool::classes];
  Arena* arenas = nullptr;  // arenas with a free page; new pages come from the first
  Arena* spare_arena = nullptr;
};
MEMLENS_SHARED inline constinit State state{};

inline std::size_t class_of(std::size_t size) noexcept { return (size + granularity - 1) / granularity - 1; }

inline Page* page_of(const void* block) noexcept {
  return reinterpret_cast<Page*>(reinterpret_cast<std::uintptr_t>(block) & ~(page_size - 1));
}

inline void unlink(SizeClass& c, Page* p) noexcept {
  if (p->prev) {
    p->prev->next = p->next;
  } else {
    c.pages = p->next;
  }
  if (p->next) p->next->prev = p->prev;
  p->prev = p->next = nullptr;
  p->listed = false;
}

inline void push_front(SizeClass& c, Page* p) noexcept {
  p->prev = nullptr;
  p->next = c.pages;
  if (c.pages) c.pages->prev = p;
  c.pages = p;
  p->listed = true;
}

inline Arena* arena_of(const Page* p) noexcept {
  return reinterpret_cast<Arena*>(reinterpret_cast<std::uintptr_t>(p) & ~(arena_size - 1));
}

inline void unlink_arena(Arena* a) noexcept {
  if (a->prev) {
    a->prev->next = a->next;
  } else {
    state.arenas = a->next;
  }
  if (a->next) a->next->prev = a->prev;
  a->prev = a->next = nullptr;
  a->listed = false;
}

inline void push_front_arena(Arena* a) noexcept {
  a->prev = nullptr;
  a->next = state.arenas;
  if (state.arenas) state.arenas->prev = a;
  state.arenas = a;
  a->listed = true;
}

inline Arena* new_arena() {
  Arena* a = std::exchange(state.spare_arena, nullptr);
  if (!a) {
    void* memory = std::aligned_alloc(arena_size, arena_size);
    if (!memory) throw std::bad_alloc();
    a = static_cast<Arena*>(memory);
  }
  a->free_pages = nullptr;
  a->untouched = reinterpret_cast<char*>(a) + page_size;
  a->used_pages = 0;
  push_front_arena(a);
  return a;
}

/// A page for `size_class`: the class's spare, a page given back to an arena, or a new one.
MEMLENS_NOINLINE inline Page* new_page(std::size_t size_class) {
  SizeClass& c = state.classes[size_class];
  Page* p = std::exchange(c.spare, nullptr);
  if (!p) {
    Arena* a = state.arenas ? state.arenas : new_arena();
    if (a->free_pages) {
      p = a->free_pages;
      a->free_pages = p->next;
    } else {
      p = reinterpret_cast<Page*>(a->untouched);
      a->untouched += page_size;
    }
    ++a->used_pages;
    if (!a->free_pages && a->untouched == reinterpret_cast<char*>(a) + arena_size) unlink_arena(a);
  }
  const std::size_t block = (size_class + 1) * granularity;
  p->free = nullptr;
  p->untouched = reinterpret_cast<char*>(p) + first_block;
  p->end = p->untouched + (page_size - first_block) / block * block;
  p->used = 0;
  p->size_class = static_cast<std::uint32_t>(size_class);
  push_front(c, p);
  return p;
}

/// Tells tracemalloc about a block, as pymalloc does: one trace per object, whose first frame is
/// the caller of this function (make(), inlined into the user's code).
MEMLENS_NOINLINE inline void trace_allocation(void* block, std::size_t size) noexcept {
  trace::on_alloc(reinterpret_cast<std::uintptr_t>(block), size, 0, __builtin_frame_address(0));
  // Not a tail call: a jump to on_alloc would hand it the address of a frame already popped,
  // which only works while on_alloc happens to push the same frame pointer at the same place.
  asm volatile("" ::: "memory");
}

/// A block of at least `size` bytes (at most max_block), aligned to 16.
inline void* allocate(std::size_t size) {
  const std::size_t k = class_of(size);
  SizeClass& c = state.classes[k];
  Page* p = c.pages ? c.pages : new_page(k);
  void* block;
  if (p->free) {
    block = p->free;
    p->free = p->free->next;
  } else {
    block = p->untouched;
    p->untouched += (k + 1) * granularity;
  }
  ++p->used;
  if (!p->free && p->untouched == p->end) unlink(c, p);  // full
  if (MEMLENS_UNLIKELY(trace::tracing())) trace_allocation(block, size);
  return block;
}

/// Gives an empty page back: kept as its class's spare, or returned to its arena, which goes
/// back to the system (or becomes the spare arena) once all its pages are back.
MEMLENS_NOINLINE inline void release_page(SizeClass& c, Page* p) noexcept {
  unlink(c, p);
  if (!c.spare) {
    c.spare = p;
    return;
  }
  Arena* a = arena_of(p);
  p->next = a->free_pages;
  a->free_pages = p;
  if (!a->listed) push_front_arena(a);
  if (--a->used_pages == 0) {
    unlink_arena(a);
    if (!state.spare_arena) {
      state.spare_arena = a;
    } else {
      std::free(a);
    }
  }
}

/// Returns a block from allocate().
inline void deallocate(void* block) noexcept {
  if (MEMLENS_UNLIKELY(trace::tracing())) trace::on_free(reinterpret_cast<std::uintptr_t>(block), 0);
  Page* p = page_of(block);
  SizeClass& c = state.classes[p->size_class];
  auto* f = static_cast<FreeBlock*>(block);
  f->next = p->free;
  p->free = f;
  if (!p->listed) push_front(c, p);  // was full
  if (--p->used == 0 && c.pages != p) release_page(c, p);  // empty, and not the page in use
}

}  // namespace memlens::detail::pool
