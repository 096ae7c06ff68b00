// memlens internals: the object header, Ref<T>, and what happens when a count reaches zero.
// Public names defined here are re-exported by memlens/object.hpp; include that instead.
#pragma once

#include <bit>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/config.hpp"
#include "memlens/detail/pool.hpp"
#include "memlens/fwd.hpp"

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define MEMLENS_HAVE_CXXABI 1
#endif

namespace memlens {

namespace detail {
struct Access;
struct WeakLink;
class BoxBase;
template <class T>
class Box;

/// Links of a tracked object in its generation list. It sits in the 16 bytes just before the
/// object's allocation start, so objects that hold no references never pay for it (CPython's
/// PyGC_Head does the same). Links name objects, not heads, so the collector never has to map
/// a head back to its object.
struct GcHead {
  Object* next;
  union {
    Object* prev;
    std::uintptr_t refs;  // during a collection: the count not explained by the collected set
  };
};

/// Bits of Object::flags_. The layout is fixed by `make` after construction.
namespace flag {
inline constexpr std::uint32_t heap = 1u << 0;           // made by make(): owned by its count
inline constexpr std::uint32_t tracked = 1u << 1;        // has a GcHead, is in a collector list
inline constexpr std::uint32_t has_weakrefs = 1u << 2;   // has an entry in the weak registry
inline constexpr std::uint32_t finalized = 1u << 3;      // finalize() already ran (PEP 442)
inline constexpr std::uint32_t has_finalizer = 1u << 4;  // the type overrides finalize()
inline constexpr std::uint32_t collecting = 1u << 5;     // in the set a collection examines
inline constexpr std::uint32_t unreachable = 1u << 6;    // in that collection's unreachable list
inline constexpr std::uint32_t pooled = 1u << 7;         // allocated by detail::pool
// 2 bits: the generation list a tracked object is in (0-2, or permanent_generation), so that a
// collection knows its set from the flags it reads anyway, without a pass to mark it.
inline constexpr int generation_shift = 8;
inline constexpr std::uint32_t generation_mask = 3u << generation_shift;
inline constexpr std::uint32_t permanent_generation = 3;
inline constexpr int align_shift = 10;                    // 5 bits: log2(alignof(most derived))
inline constexpr std::uint32_t align_mask = 31u << align_shift;
inline constexpr int offset_shift = 15;  // 17 bits: offset of the Object base in the allocation
inline constexpr std::uint32_t max_offset = (1u << (32 - offset_shift)) - 1;
}  // namespace flag

struct adopt_t {
  explicit adopt_t() = default;
};
inline constexpr adopt_t adopt{};
}  // namespace detail

/**
 * Base of every reference-counted object: the counterpart of CPython's PyObject header.
 *
 * The header is 16 bytes (vtable pointer, 32-bit strong count, 32-bit flags). Objects whose type
 * overrides `traverse` are tracked by the cycle collector and carry 16 more bytes of links in
 * front of them, 32 in all, as in CPython (16 + 16). Weak references live in a side table, so
 * objects nobody refers to weakly pay nothing for them.
 *
 * ```cpp
 * struct Node : memlens::Object {
 *   memlens::Ref<Node> next;
 *   void traverse(memlens::Visitor& visit) override { visit(next); }
 * };
 * auto a = memlens::make<Node>();
 * ```
 */
class Object {
 public:
  // The initial count of 1 belongs to `make`, which hands it to the Ref it returns. An object
  // built any other way keeps it forever, so Refs to it can never free it.
  Object() noexcept = default;
  /// A copy is a new object with a fresh header: counts and weak references are not copied.
  Object(const Object&) noexcept {}
  /// Assignment copies values, never identity: the header stays as it is.
  Object& operator=(const Object&) noexcept { return *this; }
  virtual ~Object() = default;

  /// Lists the strong references this object holds: `visit(member, ...)`. Python's tp_traverse.
  /// A type that overrides it is tracked by the cycle collector.
  virtual void traverse(Visitor& visit) { static_cast<void>(visit); }

  /// Python's `__del__` (PEP 442): runs at most once, before the object's weak references are
  /// cleared when its count reaches zero, and while its whole cycle is intact when the collector
  /// frees it. It may resurrect the object by storing a new Ref to it.
  virtual void finalize() {}

  /// Python's `__repr__`: how reports, fmt and error messages show the object. The default is
  /// `<Type object at 0x...>`, as Python's.
  virtual std::string repr() const;

 private:
  friend struct detail::Access;
  mutable std::uint32_t refcnt_ = 1;
  mutable std::uint32_t flags_ = 0;
};

static_assert(sizeof(Object) == 16, "memlens::Object header must stay 16 bytes");

namespace sys {
/// What the unraisable hook receives: an exception thrown where nobody can catch it (a
/// finalizer, a weak reference callback), as Python's sys.unraisablehook.
struct UnraisableInfo {
  std::exception_ptr exception;  ///< the exception thrown
  std::string_view err_msg;      ///< where it was thrown, e.g. "Exception ignored in finalizer"
  const Object* object;          ///< the object involved, or nullptr
};
/// Receives unraisable exceptions; the default prints them to stderr.
using UnraisableHook = std::function<void(const UnraisableInfo&)>;
}  // namespace sys

namespace detail {

/// The private parts of Object, for memlens' own code.
struct Access {
  static std::uint32_t& refcnt(const Object* o) noexcept { return o->refcnt_; }
  static std::uint32_t& flags(const Object* o) noexcept { return o->flags_; }
  static void finalize(Object* o) { o->finalize(); }
};

inline std::uint32_t object_offset(std::uint32_t flags) noexcept {
  return flags >> flag::offset_shift;
}
inline std::size_t object_align(std::uint32_t flags) noexcept {
  return std::size_t{1} << ((flags & flag::align_mask) >> flag::align_shift);
}
/// Bytes in front of the most derived object: the GcHead, padded to the object's alignment.
inline std::size_t prefix_size(std::uint32_t flags) noexcept {
  if (!(flags & flag::tracked)) return 0;
  const std::size_t align = object_align(flags);
  return align > sizeof(GcHead) ? align : sizeof(GcHead);
}
/// The block make() allocated for the object: what operator new or the pool returned.
inline const void* allocation_start(const Object* o) noexcept {
  const std::uint32_t f = Access::flags(o);
  return reinterpret_cast<const char*>(o) - object_offset(f) - prefix_size(f);
}
inline void* allocation_start(Object* o) noexcept {
  return const_cast<void*>(allocation_start(static_cast<const Object*>(o)));
}

inline GcHead* gc_head(const Object* o) noexcept {
  // The branch lets the CPU load the head before the flags arrive when the Object base starts
  // the allocation (nearly always); the arithmetic alone would wait for them on every hop. The
  // empty asm keeps compilers from making it a conditional move, which waits for the flags as
  // well: a list walk measured 3.4 ns per hop with one, 2.2 without.
  auto* head = reinterpret_cast<GcHead*>(const_cast<Object*>(o)) - 1;
  const std::uint32_t offset = object_offset(Access::flags(o));
  if (offset == 0) [[likely]] {
    MEMLENS_KEEP_BRANCH();
    return head;
  }
  return reinterpret_cast<GcHead*>(reinterpret_cast<char*>(head) - offset);
}

/// The head of a circular list of tracked objects: a GcHead followed by an Object, laid out as a
/// tracked object whose Object base is at offset 0, so list code needs no special case for it.
struct GcList {
  GcHead head;
  Object anchor;
  constexpr GcList() noexcept : head{&anchor, {&anchor}} {}
  GcList(const GcList&) = delete;
  GcList& operator=(const GcList&) = delete;

  Object* first() const noexcept { return head.next; }
  const Object* end() const noexcept { return &anchor; }
  bool empty() const noexcept { return head.next == &anchor; }
};
static_assert(sizeof(GcList) == 2 * sizeof(GcHead), "GcList::anchor must follow its head");

/// Per generation, as CPython's gc.get_stats().
struct GcGenerationStats {
  std::size_t collections = 0;
  std::size_t collected = 0;
  std::size_t uncollectable = 0;
};

/// The collector's state. Constant-initialized (no guard, no static-init-order problem) and
/// never destroyed, so objects dying during static destruction still find their lists.
struct GcState {
  GcList generations[3];
  GcList permanent;  // gc.freeze()
  std::size_t counts[3] = {};  // gen 0: allocations minus deallocations; 1, 2: collections below
  std::size_t thresholds[3] = {700, 10, 10};
  std::size_t long_lived_total = 0;    // objects left in gen 2 by the last full collection
  std::size_t long_lived_pending = 0;  // objects moved to gen 2 since
  GcGenerationStats stats[3];
  int debug = 0;
  bool enabled = true;
  bool collecting = false;
};
template <class T>
union Immortal {
  T value;
  constexpr Immortal() : value() {}
  ~Immortal() {}
};
inline constinit Immortal<GcState> gc_runtime{};
inline GcState& gc_state() noexcept { return gc_runtime.value; }

/// Appends o to the end of list.
inline void gc_list_append(Object* o, GcList& list) noexcept {
  GcHead* h = gc_head(o);
  Object* last = list.head.prev;
  h->prev = last;
  h->next = &list.anchor;
  gc_head(last)->next = o;
  list.head.prev = o;
}

inline void gc_list_remove(Object* o) noexcept {
  GcHead* h = gc_head(o);
  gc_head(h->prev)->next = h->next;
  gc_head(h->next)->prev = h->prev;
  h->next = h->prev = nullptr;
}

inline void gc_list_move(Object* o, GcList& to) noexcept {
  gc_list_remove(o);
  gc_list_append(o, to);
}

/// Appends all of `from` to `to`; `from` is empty afterwards.
inline void gc_list_merge(GcList& from, GcList& to) noexcept {
  if (from.empty()) return;
  Object* to_last = to.head.prev;
  gc_head(to_last)->next = from.head.next;
  gc_head(from.head.next)->prev = to_last;
  to.head.prev = from.head.prev;
  gc_head(from.head.prev)->next = &to.anchor;
  from.head.next = from.head.prev = &from.anchor;
}

inline std::size_t gc_list_size(const GcList& list) noexcept {
  std::size_t n = 0;
  for (const Object* o = list.first(); o != list.end(); o = gc_head(o)->next) ++n;
  return n;
}

inline std::uint32_t gc_generation(std::uint32_t flags) noexcept {
  return (flags & flag::generation_mask) >> flag::generation_shift;
}
inline void gc_set_generation(std::uint32_t& flags, std::uint32_t generation) noexcept {
  flags = (flags & ~flag::generation_mask) | (generation << flag::generation_shift);
}
/// Records `generation` in every object of `list` (which is about to join it).
inline void gc_list_set_generation(const GcList& list, std::uint32_t generation) noexcept {
  for (Object* o = list.first(); o != list.end(); o = gc_head(o)->next) {
    gc_set_generation(Access::flags(o), generation);
  }
}

inline std::uintptr_t& gc_refs(Object* o) noexcept { return gc_head(o)->refs; }

/// Makes o a candidate of the running collection the first time the collection meets it: flags
/// it and starts its gc_refs at its count. An object whose count is zero is being destroyed by
/// an outer release (the trashcan queue): it stays out, so it counts as outside the set.
MEMLENS_ALWAYS_INLINE inline bool gc_enter(Object* o, std::uint32_t& flags) noexcept {
  if (flags & flag::collecting) return true;
  const std::uint32_t count = Access::refcnt(o);
  if (count == 0) return false;
  flags = (flags | flag::collecting) & ~flag::unreachable;
  gc_refs(o) = count;
  return true;
}

/// What a collector's Visitor does with each reference. The collector's passes run these inline
/// from every traverse, where a virtual visit_edge per reference would cost them a third of
/// their time; every other visitor is `generic`.
enum class GcVisit : std::uint8_t {
  generic,              // Visitor::visit_edge
  subtract,             // gc_refs - 1 for targets flagged `collecting`
  subtract_generation,  // the same for targets in generations up to `generation`, entering them
  move_reachable,       // CPython's visit_reachable
  find,                 // note whether a reference to `wanted` is there (gc.get_referrers)
  detach,               // null the reference (CPython's tp_clear; see gc_detached)
};

struct GcVisitState {
  GcVisit kind = GcVisit::generic;
  std::uint32_t generation = 0;        // subtract_generation
  GcList* scanned = nullptr;           // move_reachable: the list being scanned
  std::size_t* unreachable = nullptr;  // move_reachable: objects tentatively unreachable
  std::vector<Ref<Object>>* kept = nullptr;  // detach: references out of the garbage
  const Object* wanted = nullptr;  // find
  bool found = false;              // find
};

/// A reference from an object the partition found reachable, to a candidate it had already
/// moved to the unreachable list: the candidate goes back to the end of the list being scanned.
MEMLENS_NOINLINE inline void gc_move_back(const GcVisitState& s, Object* target) noexcept {
  Access::flags(target) &= ~flag::unreachable;
  gc_list_move(target, *s.scanned);
  gc_refs(target) = 1;
  --*s.unreachable;
}

/// Keeps a detached reference to an object outside the garbage until the garbage is freed. (A
/// template only so that Ref, not complete here, is by the time it is used.)
template <class R = Ref<Object>>
MEMLENS_NOINLINE void gc_keep_detached(const GcVisitState& s, Object* detached) {
  std::vector<R>& kept = *s.kept;
  kept.push_back(R(adopt, detached));
}

/// A reference a `detach` visit took out of its slot: one to another garbage object only lowers
/// that object's count (the collector frees it itself), one to anything else is kept.
MEMLENS_ALWAYS_INLINE inline void gc_detached(const GcVisitState& s, Object* detached) {
  if (Access::flags(detached) & flag::unreachable) {
    --Access::refcnt(detached);
  } else {
    gc_keep_detached(s, detached);
  }
}

/// What a collector's visit does with one reference, inline in every traverse. Returns true
/// when the caller must detach the reference and hand it to gc_detached.
MEMLENS_ALWAYS_INLINE inline bool gc_visit(GcVisitState& s, Object* target) noexcept {
  switch (s.kind) {
    case GcVisit::subtract:
      if (Access::flags(target) & flag::collecting) --gc_refs(target);
      return false;
    case GcVisit::subtract_generation: {
      std::uint32_t& f = Access::flags(target);
      if ((f & flag::tracked) && gc_generation(f) <= s.generation && gc_enter(target, f)) {
        --gc_refs(target);
      }
      return false;
    }
    case GcVisit::move_reachable: {
      // CPython's visit_reachable: a candidate not scanned yet gets gc_refs 1 so that the scan
      // keeps it; one the scan already set aside comes back.
      const std::uint32_t f = Access::flags(target);
      if (!(f & flag::collecting)) return false;  // outside the set, or scanned as reachable
      if (f & flag::unreachable) {
        gc_move_back(s, target);
      } else if (gc_refs(target) == 0) {
        gc_refs(target) = 1;
      }
      return false;
    }
    case GcVisit::detach:
      return true;
    case GcVisit::find:
      s.found |= target == s.wanted;
      return false;
    case GcVisit::generic:
      break;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Type names and reporting

/// The demangled name of a type.
inline std::string demangle(const char* mangled) {
#ifdef MEMLENS_HAVE_CXXABI
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                             std::free);
  if (status == 0 && out) return out.get();
#endif
  return mangled;
}

/// Base of the boxes that hold value types made by make<T>; names the value's type.
class BoxBase : public Object {
 public:
  virtual const std::type_info& value_type() const noexcept = 0;
};

/// The name a report shows for an object: its dynamic type, or the boxed value's type.
inline std::string type_name(const Object& o) {
  if (auto* box = dynamic_cast<const BoxBase*>(&o)) return demangle(box->value_type().name());
  return demangle(typeid(o).name());
}

/// `<Type object at 0x...>`, as Python's default repr.
inline std::string default_repr(const Object& o) {
  char address[2 + 2 * sizeof(void*) + 1];
  std::snprintf(address, sizeof address, "%p", static_cast<const void*>(&o));
  return "<" + type_name(o) + " object at " + address + ">";
}

/// The object's repr(), or "None".
inline std::string repr(const Object* o) { return o ? o->repr() : "None"; }

}  // namespace detail

inline std::string Object::repr() const { return detail::default_repr(*this); }

namespace detail {

inline sys::UnraisableHook& unraisable_hook() {
  static auto* hook = new sys::UnraisableHook();  // immortal: reports may come at exit
  return *hook;
}

/// Reports an exception nobody can catch and carries on, as CPython's PyErr_WriteUnraisable.
inline void report_unraisable(std::string_view where, std::exception_ptr error,
                              const Object* object) noexcept {
  try {
    sys::UnraisableInfo info{error, where, object};
    if (auto& hook = unraisable_hook()) {
      hook(info);
      return;
    }
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = demangle(typeid(e).name()) + ": " + e.what();
    } catch (...) {
    }
    std::string line = std::string(where) + ": " + repr(object) + "\n" + what + "\n";
    std::fputs(line.c_str(), stderr);
  } catch (...) {
    std::fputs("memlens: the unraisable hook threw; an exception was lost\n", stderr);
  }
}

// ---------------------------------------------------------------------------------------------
// Weak references: per object, a circular list of WeakLinks through a sentinel that lives in a
// side table (so the header stays 16 bytes). Newest links sit right after the sentinel, which
// gives CPython's newest-first callback order for free.

/// A callback registered with one weak reference.
struct WeakCallback {
  virtual ~WeakCallback() = default;
  virtual void invoke(WeakLink& link) = 0;
};

struct WeakLink {
  Object* referent = nullptr;  // null once the referent is dying or gone
  WeakLink* prev = nullptr;    // null when not in a list
  WeakLink* next = nullptr;
  WeakCallback* callback = nullptr;  // owned
};

inline std::unordered_map<const Object*, WeakLink>& weak_registry() {
  static auto* registry = new std::unordered_map<const Object*, WeakLink>();  // immortal
  return *registry;
}

// Out of line: it is the slow path (a table insertion), and g++ 12 at -O2 otherwise warns
// (-Wdangling-pointer) when a temporary Weak is attached and then moved, which is correct.
MEMLENS_NOINLINE inline void weak_attach(WeakLink& link, Object* o) {
  auto [it, inserted] = weak_registry().try_emplace(o);
  WeakLink& sentinel = it->second;
  if (inserted) {
    sentinel.prev = sentinel.next = &sentinel;
    sentinel.referent = o;
    Access::flags(o) |= flag::has_weakrefs;
  }
  link.referent = o;
  link.prev = &sentinel;
  link.next = sentinel.next;
  sentinel.next->prev = &link;
  sentinel.next = &link;
}

inline void weak_detach(WeakLink& link) noexcept {
  if (link.prev) {
    link.prev->next = link.next;
    link.next->prev = link.prev;
    link.prev = link.next = nullptr;
  }
  link.referent = nullptr;
}

/// Makes `to` take `from`'s place in its list (and its referent and callback).
inline void weak_move(WeakLink& to, WeakLink& from) noexcept {
  to.referent = std::exchange(from.referent, nullptr);
  to.callback = std::exchange(from.callback, nullptr);
  if (from.prev) {
    to.prev = from.prev;
    to.next = from.next;
    to.prev->next = &to;
    to.next->prev = &to;
    from.prev = from.next = nullptr;
  }
}

/// The sentinel of o's weak references, or nullptr.
inline WeakLink* weak_list(const Object* o) {
  if (!(Access::flags(o) & flag::has_weakrefs)) return nullptr;
  auto it = weak_registry().find(o);
  return it == weak_registry().end() ? nullptr : &it->second;
}

/// Clears every weak reference to o, then runs the callbacks of those still alive at their
/// turn, newest first. Links are first moved to a list on this frame, so a callback that destroys
/// another Weak handle merely unlinks it from there and its callback never runs.
inline void clear_weakrefs(Object* o) noexcept {
  auto& registry = weak_registry();
  auto it = registry.find(o);
  Access::flags(o) &= ~flag::has_weakrefs;
  if (it == registry.end()) return;
  WeakLink pending;
  pending.prev = pending.next = &pending;
  WeakLink& sentinel = it->second;
  if (sentinel.next != &sentinel) {
    pending.next = sentinel.next;
    pending.prev = sentinel.prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
  }
  registry.erase(it);
  for (WeakLink* l = pending.next; l != &pending; l = l->next) l->referent = nullptr;
  while (pending.next != &pending) {
    WeakLink* l = pending.next;
    pending.next = l->next;
    l->next->prev = &pending;
    l->prev = l->next = nullptr;
    if (!l->callback) continue;
    // The callback may destroy the handle that owns it; hold it here until it returns.
    std::unique_ptr<WeakCallback> callback(std::exchange(l->callback, nullptr));
    try {
      callback->invoke(*l);
    } catch (...) {
      report_unraisable("Exception ignored in weakref callback for", std::current_exception(), o);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Deallocation. Dropping the head of a long chain would recurse once per link; like CPython's
// trashcan, releases nested deeper than this are queued and run by the outermost one, so the
// stack stays bounded and everything is still freed before the first release returns.

inline constexpr int trashcan_depth = 64;
inline thread_local int dealloc_depth = 0;
inline thread_local bool deferred_pending = false;  // trivial, so the fast path needs no guard

inline std::vector<Object*>& deferred_deallocs() {
  thread_local std::vector<Object*> deferred;
  return deferred;
}

inline void* allocate(std::size_t size, std::size_t align) {
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) return ::operator new(size, std::align_val_t{align});
  return ::operator new(size);
}

inline void deallocate(void* p, std::size_t align) noexcept {
  if (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
    ::operator delete(p, std::align_val_t{align});
  } else {
    ::operator delete(p);
  }
}

/// Runs the finalizer (PEP 442: once) and clears weak references of an object whose count is
/// zero. Returns false if the finalizer resurrected it.
MEMLENS_NOINLINE inline bool finalize_and_clear_weakrefs(Object* o) noexcept {
  std::uint32_t& flags = Access::flags(o);
  if ((flags & (flag::has_finalizer | flag::finalized)) == flag::has_finalizer) {
    flags |= flag::finalized;
    Access::refcnt(o) = 1;  // the finalizer's own reference, so Ref(this) inside it is safe
    try {
      Access::finalize(o);
    } catch (...) {
      report_unraisable("Exception ignored in finalizer of", std::current_exception(), o);
    }
    if (--Access::refcnt(o) != 0) return false;  // resurrected
  }
  if (flags & flag::has_weakrefs) clear_weakrefs(o);
  return true;
}

/// Finalizes, clears weak references, untracks and frees an object whose count is zero, unless
/// its finalizer resurrected it.
inline void destroy(Object* o) noexcept {
  const std::uint32_t flags = Access::flags(o);
  MEMLENS_ASSERT(flags & flag::heap, "an object not made by make() reached a count of zero");
  if (MEMLENS_UNLIKELY(flags & (flag::has_finalizer | flag::has_weakrefs))) {
    if (!finalize_and_clear_weakrefs(o)) return;
  }
  const std::uint32_t f = Access::flags(o);
  if (f & flag::tracked) {
    gc_list_remove(o);
    if (gc_state().counts[0] > 0) --gc_state().counts[0];  // as CPython's PyObject_GC_Del
  }
  // The usual layout (Object is the first base, the default alignment) needs no decoding: the
  // offset and the alignment's log2 are the top bits, so one comparison tells.
  static_assert(flag::offset_shift == flag::align_shift + 5);
  constexpr auto usual_log2_align = static_cast<std::uint32_t>(
      std::bit_width(std::size_t{__STDCPP_DEFAULT_NEW_ALIGNMENT__}) - 1);
  const bool usual = (f >> flag::align_shift) <= usual_log2_align;
  void* start = usual ? reinterpret_cast<char*>(o) - ((f & flag::tracked) ? sizeof(GcHead) : 0)
                      : allocation_start(o);
  o->~Object();
  if (f & flag::pooled) {
    pool::deallocate(start);
  } else {
    deallocate(start, object_align(f));
  }
}

/// Destroys the releases queued by the trashcan, including those they queue in turn.
MEMLENS_NOINLINE inline void drain_deferred() noexcept {
  auto& deferred = deferred_deallocs();
  ++dealloc_depth;
  while (!deferred.empty()) {
    Object* next = deferred.back();
    deferred.pop_back();
    destroy(next);
  }
  deferred_pending = false;
  --dealloc_depth;
}

MEMLENS_NOINLINE inline void defer_dealloc(Object* o) noexcept {
  try {
    deferred_deallocs().push_back(o);
    deferred_pending = true;
  } catch (...) {  // out of memory for the queue: recurse rather than leak
    ++dealloc_depth;
    destroy(o);
    --dealloc_depth;
  }
}

/// Called when a count drops to zero; out of line so that Ref's destructor stays small.
MEMLENS_NOINLINE inline void release_last(const Object* object) noexcept {
  auto* o = const_cast<Object*>(object);
  if (MEMLENS_UNLIKELY(dealloc_depth >= trashcan_depth)) {
    defer_dealloc(o);
    return;
  }
  ++dealloc_depth;
  destroy(o);
  --dealloc_depth;
  if (MEMLENS_UNLIKELY(deferred_pending) && dealloc_depth == 0) drain_deferred();
}

inline void incref(const Object* o) noexcept {
  MEMLENS_ASSERT(Access::refcnt(o) != UINT32_MAX, "reference count overflow");
  ++Access::refcnt(o);
}

inline void decref(const Object* o) noexcept {
  if (--Access::refcnt(o) == 0) release_last(o);
}

// ---------------------------------------------------------------------------------------------
// What a Ref<T> points at: T itself for Object types, a Box holding T for value types.

template <class T>
inline constexpr bool is_object_type = std::is_base_of_v<Object, std::remove_cv_t<T>>;

template <class T, bool = is_object_type<T>>
struct stored {
  using type = T;
};
template <class T>
struct stored<T, false> {
  using box = Box<std::remove_cv_t<T>>;
  using type = std::conditional_t<std::is_const_v<T>, const box, box>;
};
template <class T>
using stored_t = typename stored<T>::type;

/// Whether a Ref<From> converts to a Ref<To>. Constraints put it after `!is_same_v<U, T>` in
/// a conjunction, so copies of a Ref<T> never need a complete T.
template <class From, class To>
inline constexpr bool ref_convertible = std::is_convertible_v<stored_t<From>*, stored_t<To>*>;

template <class T>
struct is_ref : std::false_type {};
template <class T>
struct is_ref<Ref<T>> : std::true_type {};

}  // namespace detail

/**
 * A nullable strong reference to an object made by `make`: Python's object reference.
 *
 * Copying adds a reference; destroying, `reset()` or `= nullptr` drops one, and the object is
 * destroyed the moment its count reaches zero. `==` compares identity, as every C++ smart pointer
 * does; compare values with `*a == *b`. For a value type T (`make<std::vector<int>>()`) the Ref
 * points into the box that holds the value and behaves as a `T*`.
 *
 * The count is not atomic: see docs/design.md, "Threads", and `memlens::HeapLock`.
 */
template <class T>
class Ref {
 public:
  using element_type = T;

  /// A null reference.
  constexpr Ref() noexcept = default;
  constexpr Ref(std::nullptr_t) noexcept {}

  /// Adds a reference to a live object, so `Ref<Node>(this)` works inside members (as
  /// boost::intrusive_ptr). Only for types derived from Object.
  // Not constrained with `requires`: that would need T complete wherever a Ref<T> is copied.
  explicit Ref(T* object) noexcept : ptr_(const_cast<std::remove_const_t<T>*>(object)) {
    static_assert(detail::is_object_type<T>, "Ref<T>(T*) needs T derived from memlens::Object");
    if (ptr_) detail::incref(ptr_);
  }

  /// Takes over a reference the caller already owns (the count is not changed).
  Ref(detail::adopt_t, Object* object) noexcept : ptr_(object) {}

  Ref(const Ref& other) noexcept : ptr_(other.ptr_) {
    if (ptr_) detail::incref(ptr_);
  }
  Ref(Ref&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}

  /// Ref<Derived> converts to Ref<Base>, Ref<X> to Ref<const X>, any Ref to Ref<Object>.
  template <class U>
    requires(!std::is_same_v<U, T>) && detail::ref_convertible<U, T>
  Ref(const Ref<U>& other) noexcept : ptr_(const_cast<Object*>(other.object())) {
    if (ptr_) detail::incref(ptr_);
  }
  template <class U>
    requires(!std::is_same_v<U, T>) && detail::ref_convertible<U, T>
  Ref(Ref<U>&& other) noexcept : ptr_(other.release()) {}

  ~Ref() {
    if (ptr_) detail::decref(ptr_);
  }

  Ref& operator=(const Ref& other) noexcept {
    Ref(other).swap(*this);
    return *this;
  }
  Ref& operator=(Ref&& other) noexcept {
    Ref(std::move(other)).swap(*this);
    return *this;
  }
  Ref& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }

  /// Drops the reference, if any; the Ref is null afterwards (even if the drop re-enters it).
  void reset() noexcept {
    if (auto* old = std::exchange(ptr_, nullptr)) detail::decref(old);
  }

  void swap(Ref& other) noexcept { std::swap(ptr_, other.ptr_); }

  /// The referenced value, or nullptr.
  T* get() const noexcept {
    if constexpr (detail::is_object_type<T>) {
      return static_cast<T*>(ptr_);
    } else {
      return ptr_ ? &static_cast<detail::Box<std::remove_cv_t<T>>*>(ptr_)->value : nullptr;
    }
  }
  T& operator*() const noexcept {
    MEMLENS_ASSERT(ptr_, "dereferenced a null Ref");
    return *get();
  }
  T* operator->() const noexcept {
    MEMLENS_ASSERT(ptr_, "dereferenced a null Ref");
    return get();
  }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

  /// The object header behind this Ref (the box, for a value type), or nullptr. Every Ref to
  /// one object gives the same address, whatever its static type.
  const Object* object() const noexcept { return ptr_; }
  /// Gives up ownership without dropping the count; the caller must drop it later.
  [[nodiscard]] Object* release() noexcept { return std::exchange(ptr_, nullptr); }

  template <class U>
  friend bool operator==(const Ref& a, const Ref<U>& b) noexcept {
    return a.object() == b.object();
  }
  friend bool operator==(const Ref& a, std::nullptr_t) noexcept { return !a.ptr_; }
  template <class U>
  friend std::strong_ordering operator<=>(const Ref& a, const Ref<U>& b) noexcept {
    return std::compare_three_way{}(a.object(), b.object());
  }

 private:
  // The Object base, not T*: it needs no complete T (Ref<Node> inside Node), identity is one
  // comparison, and conversions never adjust it.
  Object* ptr_ = nullptr;
};

}  // namespace memlens

/// Refs hash by identity, consistently with their `==`.
template <class T>
struct std::hash<memlens::Ref<T>> {
  std::size_t operator()(const memlens::Ref<T>& r) const noexcept {
    return std::hash<const void*>{}(r.object());
  }
};
