// memlens internals: the object header, Ref<T>, and what happens when a count reaches zero.
// Public names defined here are re-exported by memlens/object.hpp; include that instead.
#pragma once

#include <bit>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/config.hpp"
#include "memlens/detail/pool.hpp"
#include "memlens/detail/thread_state.hpp"
#include "memlens/errors.hpp"
#include "memlens/fwd.hpp"

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define MEMLENS_HAVE_CXXABI 1
#endif

namespace memlens {

namespace sys {
class SizeVisitor;
}

namespace detail {
struct Access;
struct WeakLink;
class BoxBase;
void clear_weakrefs(Object* o) noexcept;
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
// Layouts other than the usual one (Object the first base, the default alignment), whose
// details are in the object's type record; the flags alone tell the usual one.
inline constexpr std::uint32_t inner_base = 1u << 10;    // the Object base is not at offset 0
inline constexpr std::uint32_t over_aligned = 1u << 11;  // aligned beyond operator new's default
inline constexpr std::uint32_t unusual_layout = inner_base | over_aligned;
// 16 bits: the index of the object's TypeRecord (0 for objects make did not create).
inline constexpr int type_shift = 16;
inline constexpr std::uint32_t max_type_id = 0xffffu;
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
  // built any other way keeps it forever, and no Ref can be made to it (Ref<T>(T*) throws).
  Object() noexcept = default;
  /// A copy is a new object with a fresh header: counts and weak references are not copied.
  Object(const Object&) noexcept {}
  /// Assignment copies values, never identity: the header stays as it is.
  Object& operator=(const Object&) noexcept { return *this; }
  /// Whatever way the object dies (its count reaching zero, a constructor that throws inside
  /// make, the end of a scope or of its owner), its weak references are cleared.
  virtual ~Object() {
    if (flags_ & detail::flag::has_weakrefs) detail::clear_weakrefs(this);
    // Its own reference: make's (kept for it while it is destroyed) or the initial one.
    MEMLENS_ASSERT(refcnt_ == 1,
                   "an object died while Refs to it were alive (a Ref made in its constructor "
                   "or destructor and kept)");
  }

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

// ---------------------------------------------------------------------------------------------
// Type records: what make<T> knows about each type it makes (a part of CPython's type object),
// registered once per type and found from an object through the index in its flags. Sizes and
// layouts come from here, so they never depend on which types some code happened to name.

/// Measures an object whose most derived type the function knows (see memlens/sys.hpp).
using ObjectSizer = void (*)(sys::SizeVisitor&, const Object&);

struct TypeRecord {
  const std::type_info* type = nullptr;  // the most derived type (a Box, for a value type)
  const std::type_info* shown = nullptr;  // the type reports name: the boxed value's, for a Box
  ObjectSizer sizer = nullptr;           // measures an object of this type
  std::size_t size = 0;                  // the block make requests: prefix + sizeof
  std::size_t prefix = 0;                // the GcHead in front, padded to the alignment
  std::size_t align = 0;                 // alignof the type
  std::size_t offset = 0;                // of the Object base inside the type
  std::uint32_t id = 0;                  // its index in the registry
};

/// How many objects of a type make created and how many died, in all and in a collection (the
/// objects the cycle collector freed). Kept apart from the records, in an array indexed by the
/// type's index, so make and destroy update them without loading the record.
struct TypeCounts {
  std::uint64_t created;
  std::uint64_t freed;
  std::uint64_t collected;
};

/// Every type record, by index. Constant-initialized and never destroyed, as the collector's
/// state, so objects dying during static destruction still find their records. The arrays cost
/// address space only: the pages of indexes no type uses are never touched.
struct TypeRegistry {
  TypeRecord* records[flag::max_type_id + 1];
  TypeCounts counts[flag::max_type_id + 1];
  std::uint32_t count;  // the highest index in use; 0 is no type
};
MEMLENS_SHARED inline constinit TypeRegistry type_registry{};

/// make created an object of the type with this index.
MEMLENS_ALWAYS_INLINE inline void count_created(std::uint32_t type_id) noexcept {
#if MEMLENS_TYPE_STATS
  ++type_registry.counts[type_id].created;
#else
  static_cast<void>(type_id);
#endif
}
/// The cycle collector is about to destroy an object with these flags.
inline void count_collected(std::uint32_t flags) noexcept {
#if MEMLENS_TYPE_STATS
  ++type_registry.counts[flags >> flag::type_shift].collected;
#else
  static_cast<void>(flags);
#endif
}
/// An object with these flags, which make created, is being destroyed.
MEMLENS_ALWAYS_INLINE inline void count_freed(std::uint32_t flags) noexcept {
#if MEMLENS_TYPE_STATS
  ++type_registry.counts[flags >> flag::type_shift].freed;
#else
  static_cast<void>(flags);
#endif
}

inline const TypeRecord& type_record(std::uint32_t flags) noexcept {
  return *type_registry.records[flags >> flag::type_shift];
}
/// The record of an object made by make(), or nullptr.
inline const TypeRecord* type_record_of(const Object* o) noexcept {
  const std::uint32_t id = Access::flags(o) >> flag::type_shift;
  return id ? type_registry.records[id] : nullptr;
}

/// Bytes in front of the most derived object: the GcHead, padded to the object's alignment.
inline std::size_t prefix_size(const Object* o) noexcept {
  const std::uint32_t f = Access::flags(o);
  if (!(f & flag::tracked)) return 0;
  return (f & flag::over_aligned) ? type_record(f).prefix : sizeof(GcHead);
}
/// The block make() allocated for the object: what operator new or the pool returned.
inline const void* allocation_start(const Object* o) noexcept {
  const std::uint32_t f = Access::flags(o);
  const char* p = reinterpret_cast<const char*>(o);
  if (!(f & flag::unusual_layout)) return p - ((f & flag::tracked) ? sizeof(GcHead) : 0);
  const TypeRecord& type = type_record(f);
  return p - type.offset - type.prefix;
}
inline void* allocation_start(Object* o) noexcept {
  return const_cast<void*>(allocation_start(static_cast<const Object*>(o)));
}

MEMLENS_ALWAYS_INLINE inline GcHead* gc_head(const Object* o) noexcept {
  // The branch lets the CPU load the head before the flags arrive when the Object base starts
  // the allocation (nearly always); the arithmetic alone would wait for them on every hop. The
  // empty asm keeps compilers from making it a conditional move, which waits for the flags as
  // well: a list walk measured 3.4 ns per hop with one, 2.2 without.
  // The other arm stays inline: a call here would make every traverse that inlines the
  // collector's visits save registers around it.
  auto* head = reinterpret_cast<GcHead*>(const_cast<Object*>(o)) - 1;
  const std::uint32_t flags = Access::flags(o);
  if (!(flags & flag::inner_base)) [[likely]] {
    MEMLENS_KEEP_BRANCH();
    return head;
  }
  return reinterpret_cast<GcHead*>(reinterpret_cast<char*>(head) - type_record(flags).offset);
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
MEMLENS_SHARED inline constinit Immortal<GcState> gc_runtime{};
inline GcState& gc_state() noexcept { return gc_runtime.value; }

/// Appends o to the end of list.
MEMLENS_ALWAYS_INLINE inline void gc_list_append(Object* o, GcList& list) noexcept {
  GcHead* h = gc_head(o);
  Object* last = list.head.prev;
  h->prev = last;
  h->next = &list.anchor;
  gc_head(last)->next = o;
  list.head.prev = o;
}

MEMLENS_ALWAYS_INLINE inline void gc_list_remove(Object* o) noexcept {
  GcHead* h = gc_head(o);
  gc_head(h->prev)->next = h->next;
  gc_head(h->next)->prev = h->prev;
  h->next = h->prev = nullptr;
}

MEMLENS_ALWAYS_INLINE inline void gc_list_move(Object* o, GcList& to) noexcept {
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

MEMLENS_ALWAYS_INLINE inline std::uintptr_t& gc_refs(Object* o) noexcept { return gc_head(o)->refs; }

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

/// Something the collector set aside while it detached the garbage's references, to be
/// destroyed only once the garbage is freed (the nodes it took out of sets and maps).
struct GcAside {
  virtual ~GcAside() = default;
};

/// A reference a subtract visit counted: checked for slots reported twice (see gc_check_slots).
struct GcSlot {
  const void* slot;
  Object* target;
};

struct GcVisitState {
  GcVisit kind = GcVisit::generic;
  std::uint32_t generation = 0;        // subtract_generation
  GcList* scanned = nullptr;           // move_reachable: the list being scanned
  std::size_t* unreachable = nullptr;  // move_reachable: objects tentatively unreachable
  std::vector<Ref<Object>>* kept = nullptr;  // detach: references out of the garbage
  std::vector<std::unique_ptr<GcAside>>* aside = nullptr;  // detach: emptied containers' nodes
  std::vector<GcSlot>* slots = nullptr;  // subtract: the references counted, when checked
  const Object* wanted = nullptr;  // find
  bool found = false;              // find
};

/// Whether the collector checks that each traverse reports every reference slot once: a slot
/// reported twice would be subtracted twice, and an object referenced from outside could look
/// unreachable. On in debug builds; MEMLENS_CHECK_TRAVERSE=1 turns it on anywhere.
#ifndef MEMLENS_CHECK_TRAVERSE
#ifdef NDEBUG
#define MEMLENS_CHECK_TRAVERSE 0
#else
#define MEMLENS_CHECK_TRAVERSE 1
#endif
#endif
inline constexpr bool gc_check_traverse = MEMLENS_CHECK_TRAVERSE != 0;

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

/// Notes a reference the subtract pass counted, for gc_check_slots.
MEMLENS_NOINLINE inline void gc_note_slot(GcVisitState& s, const void* slot,
                                          Object* target) noexcept {
  if (!s.slots || !slot) return;
  try {
    s.slots->push_back({slot, target});
  } catch (...) {  // out of memory: this reference goes unchecked
  }
}

/// What a collector's visit does with one reference, inline in every traverse. Returns true
/// when the caller must detach the reference and hand it to gc_detached.
MEMLENS_ALWAYS_INLINE inline bool gc_visit(GcVisitState& s, Object* target,
                                            const void* slot = nullptr) noexcept {
  switch (s.kind) {
    case GcVisit::subtract:
      if (Access::flags(target) & flag::collecting) {
        --gc_refs(target);
        if constexpr (gc_check_traverse) gc_note_slot(s, slot, target);
      }
      return false;
    case GcVisit::subtract_generation: {
      std::uint32_t& f = Access::flags(target);
      if ((f & flag::tracked) && gc_generation(f) <= s.generation && gc_enter(target, f)) {
        --gc_refs(target);
        if constexpr (gc_check_traverse) gc_note_slot(s, slot, target);
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

/// The index of `proposed.type`'s record, registering it the first time. A type made by several
/// shared libraries gets one record, whichever registers it first. Called once per type (and
/// library) by make, under make's rule (one thread, or HeapLock held).
MEMLENS_SHARED MEMLENS_NOINLINE inline std::uint32_t register_type(const TypeRecord& proposed) {
  trace::TracerScope untraced;  // memlens' own bookkeeping is not the user's memory
  static auto* by_type = new std::unordered_map<std::type_index, std::uint32_t>();  // immortal
  TypeRegistry& registry = type_registry;
  const auto [it, inserted] = by_type->try_emplace(std::type_index(*proposed.type), 0);
  if (!inserted) return it->second;
  if (registry.count == flag::max_type_id) {
    by_type->erase(it);
    throw TypeError("make: cannot register " + demangle(proposed.type->name()) + ": " +
                    std::to_string(flag::max_type_id) + " types are registered already");
  }
  auto* record = new TypeRecord(proposed);
  record->id = ++registry.count;
  registry.records[record->id] = record;
  it->second = record->id;
  return record->id;
}

}  // namespace detail

inline std::string Object::repr() const { return detail::default_repr(*this); }

namespace detail {

MEMLENS_SHARED inline sys::UnraisableHook& unraisable_hook() {
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

MEMLENS_SHARED inline std::unordered_map<const Object*, WeakLink>& weak_registry() {
  static auto* registry = new std::unordered_map<const Object*, WeakLink>();  // immortal
  return *registry;
}

// Out of line: it is the slow path (a table insertion), and g++ 12 at -O2 otherwise warns
// (-Wdangling-pointer) when a temporary Weak is attached and then moved, which is correct.
MEMLENS_NOINLINE inline void weak_attach(WeakLink& link, Object* o) {
  check_heap_lock("a weak reference was made");
  auto [it, inserted] = weak_registry().try_emplace(o);
  WeakLink& sentinel = it->second;
  // Every way an object dies removes its entry (~Object does it last), so an entry found here
  // is this object's own.
  MEMLENS_ASSERT(inserted == !(Access::flags(o) & flag::has_weakrefs),
                 "the weak-reference table holds an entry of a dead object");
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
  check_heap_lock("a weak reference was dropped");
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
/// another Weak handle merely unlinks it from there and its callback never runs. ~Object calls it
/// too, so an object dying some other way than through destroy() (a constructor that threw
/// inside make, an object on the stack or inside another) leaves no handle pointing at it.
MEMLENS_NOINLINE inline void clear_weakrefs(Object* o) noexcept {
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

/// destroy()'s end for an object whose layout is in its type record (an Object base inside the
/// type, or an over-aligned type): out of line, so the usual path keeps its registers.
MEMLENS_NOINLINE inline void destroy_unusual(Object* o, std::uint32_t flags) noexcept {
  const TypeRecord& type = type_record(flags);
  void* start = reinterpret_cast<char*>(o) - type.offset - type.prefix;
  Access::refcnt(o) = 1;  // as in destroy()
  o->~Object();
  if (flags & flag::pooled) {
    pool::deallocate(start);
  } else {
    deallocate(start, type.align);
  }
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
  count_freed(f);
  if (f & flag::tracked) {
    gc_list_remove(o);
    if (gc_state().counts[0] > 0) --gc_state().counts[0];  // as CPython's PyObject_GC_Del
  }
  if (MEMLENS_UNLIKELY(f & flag::unusual_layout)) return destroy_unusual(o, f);
  // The usual layout (Object the first base, the default alignment) needs no record.
  void* start = reinterpret_cast<char*>(o) - ((f & flag::tracked) ? sizeof(GcHead) : 0);
  // The destructor's own reference: a Ref(this) made and dropped inside it (a helper that takes
  // a Ref to unregister the object) goes 1 -> 2 -> 1 and never destroys the object again.
  Access::refcnt(o) = 1;
  o->~Object();
  if (f & flag::pooled) {
    pool::deallocate(start);
  } else {
    deallocate(start, __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  }
}

/// Destroys the releases queued by the trashcan, including those they queue in turn, then gives
/// the queue's buffer back.
MEMLENS_NOINLINE inline void drain_deferred() noexcept {
  ThreadState& t = thread_state;
  ++t.dealloc_depth;
  while (t.deferred.size != 0) destroy(t.deferred.items[--t.deferred.size]);
  std::free(std::exchange(t.deferred.items, nullptr));
  t.deferred.capacity = 0;
  --t.dealloc_depth;
}

MEMLENS_NOINLINE inline void defer_dealloc(Object* o) noexcept {
  ThreadState& t = thread_state;
  DeferredQueue& queue = t.deferred;
  if (queue.size == queue.capacity) {
    const std::size_t capacity = queue.capacity ? 2 * queue.capacity : 256;
    void* items = std::realloc(queue.items, capacity * sizeof(Object*));
    if (!items) {  // out of memory for the queue: recurse rather than leak
      ++t.dealloc_depth;
      destroy(o);
      --t.dealloc_depth;
      return;
    }
    queue.items = static_cast<Object**>(items);
    queue.capacity = capacity;
  }
  queue.items[queue.size++] = o;
}

/// Called when a count drops to zero; out of line so that Ref's destructor stays small.
MEMLENS_NOINLINE inline void release_last(const Object* object) noexcept {
  auto* o = const_cast<Object*>(object);
  ThreadState& t = thread_state;
  if (MEMLENS_UNLIKELY(t.dealloc_depth >= trashcan_depth)) {
    defer_dealloc(o);
    return;
  }
  ++t.dealloc_depth;
  destroy(o);
  --t.dealloc_depth;
  if (MEMLENS_UNLIKELY(t.deferred.size != 0) && t.dealloc_depth == 0) drain_deferred();
}

inline void incref(const Object* o) noexcept {
  check_heap_lock("a reference count changed");
  MEMLENS_ASSERT(Access::refcnt(o) != UINT32_MAX, "reference count overflow");
  ++Access::refcnt(o);
}

inline void decref(const Object* o) noexcept {
  check_heap_lock("a reference count changed");
  if (--Access::refcnt(o) == 0) release_last(o);
}

// ---------------------------------------------------------------------------------------------
// Refs from raw pointers. Only objects make created are owned by their count; a Ref to any
// other object (on the stack, a member, a static) would outlive it. make sets the heap flag once
// the constructor returns, so while it runs the block being constructed is remembered, per
// thread: Ref<T>(this) inside the constructor is legitimate.


/// Marks [memory, memory + size) as the block this thread's make is constructing, for its scope.
class ConstructionScope {
 public:
  ConstructionScope(void* memory, std::size_t size) noexcept
      : outer_(thread_state.constructing) {
    const auto* begin = static_cast<const char*>(memory);
    thread_state.constructing = {begin, begin + size};
  }
  ~ConstructionScope() { thread_state.constructing = outer_; }
  ConstructionScope(const ConstructionScope&) = delete;
  ConstructionScope& operator=(const ConstructionScope&) = delete;

 private:
  Construction outer_;
};

[[noreturn]] MEMLENS_NOINLINE inline void not_made_by_make(const Object* o) {
  throw TypeError("Ref: " + repr(o) +
                  " was not made by memlens::make (it lives on the stack, inside another object "
                  "or in static storage), so a Ref to it could outlive it; make it with "
                  "memlens::make");
}

/// Ref<T>(T*)'s check: the object is owned by its count (made by make, or being made).
inline void check_made_by_make(const Object* o) {
  if (Access::flags(o) & flag::heap) [[likely]] return;
  const Construction c = thread_state.constructing;
  const std::less<const char*> before;
  const auto* p = reinterpret_cast<const char*>(o);
  if (!before(p, c.begin) && before(p, c.end)) return;
  not_made_by_make(o);
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

  /// Adds a reference to a live object, so `Ref<Node>(this)` works inside members, also in the
  /// constructor and the destructor (as boost::intrusive_ptr). Only for types derived from
  /// Object, and only for objects made by `make`: throws TypeError for any other (on the stack,
  /// a member of another object, a static), which a Ref could outlive.
  // Not constrained with `requires`: that would need T complete wherever a Ref<T> is copied.
  explicit Ref(T* object) : ptr_(const_cast<std::remove_const_t<T>*>(object)) {
    static_assert(detail::is_object_type<T>, "Ref<T>(T*) needs T derived from memlens::Object");
    if (ptr_) {
      detail::check_made_by_make(ptr_);
      detail::incref(ptr_);
    }
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

namespace detail {
/// A new reference to `o`, or null when its count already reached zero: it waits in the
/// trashcan's queue or is being freed, and a new reference would destroy it a second time.
/// Every API that hands out Refs to objects it finds (the collector's lists and traverses, weak
/// references, the tools) makes them here.
template <class T = Object>
Ref<T> ref_if_alive(const Object* o) noexcept {
  if (!o || Access::refcnt(o) == 0) return {};
  incref(o);
  return Ref<T>(adopt, const_cast<Object*>(o));
}
}  // namespace detail

}  // namespace memlens

/// Refs hash by identity, consistently with their `==`.
template <class T>
struct std::hash<memlens::Ref<T>> {
  std::size_t operator()(const memlens::Ref<T>& r) const noexcept {
    return std::hash<const void*>{}(r.object());
  }
};

#include "memlens/detail/single_state.hpp"
