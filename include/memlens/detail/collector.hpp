// memlens internals: the cycle collector (CPython 3.11's gcmodule with PEP 442 finalization).
// The public interface is memlens/gc.hpp. It lives here because make() triggers collections.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "memlens/detail/core.hpp"
#include "memlens/errors.hpp"
#include "memlens/visit.hpp"

namespace memlens {

namespace gc {
/// What gc callbacks receive, as the `info` dict of Python's gc.callbacks.
struct CallbackInfo {
  int generation = 0;              ///< the generation being collected
  std::size_t collected = 0;       ///< unreachable objects found ("stop" only)
  std::size_t uncollectable = 0;   ///< always 0: memlens has no legacy (tp_del) finalizers
};
/// A gc callback: called with "start" and then "stop" around every collection.
using Callback = std::function<void(std::string_view phase, const CallbackInfo& info)>;
}  // namespace gc

namespace detail {

MEMLENS_SHARED inline std::vector<gc::Callback>& gc_callbacks() {
  static auto* callbacks = new std::vector<gc::Callback>();  // immortal, as gc_state
  return *callbacks;
}

MEMLENS_SHARED inline std::vector<Ref<Object>>& gc_garbage() {
  static auto* garbage = new std::vector<Ref<Object>>();
  return *garbage;
}

/// gc.DEBUG_SAVEALL: unreachable objects go to gc.garbage instead of being freed.
inline constexpr int debug_saveall = 1 << 5;

/// After o's traverse counted `slots`: a slot reported more than once was subtracted more than
/// once. Each repeat is given back to its target and reported, so that an object referenced
/// from outside never looks unreachable because a traverse listed a member twice.
MEMLENS_NOINLINE inline void gc_check_slots(Object* o, std::vector<GcSlot>& slots) noexcept {
  if (slots.size() > 1) {
    std::sort(slots.begin(), slots.end(), [](const GcSlot& a, const GcSlot& b) {
      return std::less<const void*>{}(a.slot, b.slot);
    });
    std::size_t repeats = 0;
    for (std::size_t i = 1; i < slots.size(); ++i) {
      if (slots[i].slot != slots[i - 1].slot) continue;
      ++gc_refs(slots[i].target);
      ++repeats;
    }
    if (repeats != 0) {
      try {
        throw ValueError("gc: the traverse of " + repr(o) + " reported " +
                         std::to_string(repeats) +
                         " reference(s) more than once; each reference must be reported "
                         "exactly once (each was counted once)");
      } catch (...) {
        report_unraisable("Exception ignored in gc traverse check", std::current_exception(), o);
      }
    }
  }
  slots.clear();
}

/// Subtracts references that come from inside the set being collected: the set is the objects
/// flagged `collecting`, or with `generation`, every tracked object in generations up to it,
/// which it flags on the way.
class SubtractRefs final : public Visitor {
 public:
  SubtractRefs() noexcept : Visitor(GcVisitState{GcVisit::subtract}) { check_slots(); }
  explicit SubtractRefs(std::uint32_t generation) noexcept
      : Visitor(GcVisitState{GcVisit::subtract_generation, generation}) {
    check_slots();
  }
  // Only for a traverse that calls visit_edge itself; visit(...) does the work inline.
  void visit_edge(const Edge& edge) override { gc_visit(gc_, &edge.referent()); }

  /// o's traverse, then (when traverses are checked) the check of the slots it reported.
  void traverse_checked(Object& o) {
    o.traverse(*this);
    if constexpr (gc_check_traverse) gc_check_slots(&o, slots_);
  }

 private:
  void check_slots() noexcept {
    if constexpr (gc_check_traverse) gc_.slots = &slots_;
  }
  std::vector<GcSlot> slots_;
};

/// Collects the Weak handles objects list in their traverse.
class OwnedWeakRefs final : public Visitor {
 public:
  explicit OwnedWeakRefs(std::unordered_set<const WeakLink*>& out) : out_(out) {}
  void visit_edge(const Edge&) override {}
  void visit_weak(WeakLink& link) override { out_.insert(&link); }

 private:
  std::unordered_set<const WeakLink*>& out_;
};

/// Detaches every reference the garbage holds (CPython's tp_clear; see gc_detached), keeping
/// those to objects outside the garbage, and the nodes of the sets and maps it empties, until
/// `drop()`.
class DetachReferences final : public Visitor {
 public:
  DetachReferences() noexcept : Visitor(GcVisitState{GcVisit::detach}) {
    gc_.kept = &kept_;
    gc_.aside = &aside_;
  }
  DetachReferences(const DetachReferences&) = delete;
  DetachReferences& operator=(const DetachReferences&) = delete;

  // Only for a traverse that calls visit_edge itself; visit(...) does the work inline.
  void visit_edge(const Edge& edge) override {
    if (edge.can_take()) gc_detached(gc_, edge.take().release());
  }

  /// Drops the references kept and the nodes set aside; may free objects.
  void drop() noexcept {
    aside_.clear();
    kept_.clear();
  }

 private:
  std::vector<Ref<Object>> kept_;
  std::vector<std::unique_ptr<GcAside>> aside_;
};

/// What gc_partition found.
struct GcPartition {
  std::size_t reachable = 0;
  std::size_t unreachable = 0;
  bool weakrefs = false;    // some unreachable object may have weak references
  bool finalizers = false;  // some unreachable object may have a finalizer that has not run
};

/// Visits the references of an object found reachable (gc_move_reachable).
class MoveReachable final : public Visitor {
 public:
  MoveReachable(GcList& scanned, std::size_t& unreachable) noexcept
      : Visitor(GcVisitState{GcVisit::move_reachable, 0, &scanned, &unreachable}) {}
  void visit_edge(const Edge& edge) override { gc_visit(gc_, &edge.referent()); }
};

/// Moves what is not reachable from outside `candidates` (every object flagged `collecting`,
/// with gc_refs computed) to `unreachable`, in one scan as CPython's move_unreachable; what stays
/// joins generation `survivors`: its flags say so, and its prev links, which gc_refs overwrote,
/// are rebuilt.
inline GcPartition gc_partition(GcList& candidates, GcList& unreachable,
                                std::uint32_t survivors) {
  GcPartition result;
  std::uint32_t garbage_flags = 0, pending_finalizers = 0;
  MoveReachable visit(candidates, result.unreachable);
  Object* prev = &candidates.anchor;
  for (Object* o = candidates.first(); o != candidates.end(); o = gc_head(prev)->next) {
    GcHead* h = gc_head(o);
    std::uint32_t& f = Access::flags(o);
    if (!(f & flag::collecting) || h->refs > 0) {
      // Reachable. An object outside the set (being destroyed) is not traversed.
      const bool traverse = f & flag::collecting;
      f = (f & ~(flag::collecting | flag::generation_mask)) |
          (survivors << flag::generation_shift);
      h->prev = prev;
      if (traverse) o->traverse(visit);  // may append to `candidates`, after o
      prev = o;
      ++result.reachable;
    } else {
      // Unreachable for now; MoveReachable brings it back if a later object reaches it.
      gc_head(prev)->next = h->next;
      f |= flag::unreachable;
      gc_list_append(o, unreachable);
      ++result.unreachable;
      // What the garbage needs, decided once at the end: any weak references, any finalizer
      // that has not run (has_finalizer without finalized, the bit below it).
      static_assert(flag::finalized << 1 == flag::has_finalizer);
      garbage_flags |= f;
      pending_finalizers |= f & ~(f << 1);
    }
  }
  candidates.head.prev = prev;  // the last object kept: the scan never moves the tail it appends to
  result.weakrefs = (garbage_flags & flag::has_weakrefs) != 0;
  result.finalizers = (pending_finalizers & flag::has_finalizer) != 0;
  return result;
}


/// Flags every object of `list` as a candidate and sets its gc_refs to its count minus the
/// references coming from other candidates (CPython's update_refs and subtract_refs).
inline void gc_compute_refs(GcList& list) {
  for (Object* o = list.first(); o != list.end(); o = gc_head(o)->next) {
    Access::flags(o) &= ~(flag::collecting | flag::unreachable);
    gc_enter(o, Access::flags(o));
  }
  SubtractRefs subtract;
  for (Object* o = list.first(); o != list.end(); o = gc_head(o)->next) {
    if (Access::flags(o) & flag::collecting) subtract.traverse_checked(*o);
  }
}

/// gc_compute_refs for `list`, which holds exactly the tracked objects of generations up to
/// `generation`: the flags tell the set, so one pass does both steps, entering each object when
/// it or a reference to it comes first.
inline void gc_compute_refs(GcList& list, std::uint32_t generation) {
  SubtractRefs subtract(generation);
  for (Object* o = list.first(); o != list.end(); o = gc_head(o)->next) {
    if (gc_enter(o, Access::flags(o))) subtract.traverse_checked(*o);
  }
}

/// Clears the weak references to unreachable objects, then runs the callbacks of those that are
/// not themselves garbage (CPython's handle_weakrefs): no callback can reach an unreachable
/// object through a weak reference, because all of them are null before the first one runs.
/// Returns whether any callback ran.
inline bool gc_handle_weakrefs(GcList& unreachable) {
  std::unordered_set<const WeakLink*> garbage_handles;
  OwnedWeakRefs owned(garbage_handles);
  for (Object* o = unreachable.first(); o != unreachable.end(); o = gc_head(o)->next) {
    o->traverse(owned);
  }
  WeakLink pending;
  pending.prev = pending.next = &pending;
  auto& registry = weak_registry();
  for (Object* o = unreachable.first(); o != unreachable.end(); o = gc_head(o)->next) {
    std::uint32_t& f = Access::flags(o);
    if (!(f & flag::has_weakrefs)) continue;
    f &= ~flag::has_weakrefs;
    auto it = registry.find(o);
    if (it == registry.end()) continue;
    WeakLink& sentinel = it->second;
    for (WeakLink* l = sentinel.next; l != &sentinel;) {
      WeakLink* next = l->next;
      l->referent = nullptr;
      if (l->callback && !garbage_handles.count(l)) {
        l->next = &pending;
        l->prev = pending.prev;
        pending.prev->next = l;
        pending.prev = l;
      } else {
        l->prev = l->next = nullptr;
      }
      l = next;
    }
    registry.erase(it);
  }
  const bool any_callback = pending.next != &pending;
  while (pending.next != &pending) {
    WeakLink* l = pending.next;
    pending.next = l->next;
    l->next->prev = &pending;
    l->prev = l->next = nullptr;
    std::unique_ptr<WeakCallback> callback(std::exchange(l->callback, nullptr));
    try {
      callback->invoke(*l);
    } catch (...) {
      report_unraisable("Exception ignored in weakref callback of a collected object",
                        std::current_exception(), nullptr);
    }
  }
  return any_callback;
}

/// Runs finalize() once on every unreachable object that has one, with the whole garbage still
/// intact (PEP 442). Finalizers may free objects or resurrect them; the loop only ever looks at
/// the first object left in `unreachable`.
inline void gc_finalize_garbage(GcList& unreachable, GcList& old, std::uint32_t old_generation) {
  GcList seen;
  while (!unreachable.empty()) {
    Object* o = unreachable.first();
    gc_list_move(o, seen);
    std::uint32_t& f = Access::flags(o);
    if ((f & (flag::has_finalizer | flag::finalized)) != flag::has_finalizer) continue;
    if (Access::refcnt(o) == 0) {  // queued for destruction by an outer release
      f &= ~(flag::collecting | flag::unreachable);
      gc_set_generation(f, old_generation);
      gc_list_move(o, old);
      continue;
    }
    f |= flag::finalized;
    incref(o);
    try {
      Access::finalize(o);
    } catch (...) {
      report_unraisable("Exception ignored in finalizer of", std::current_exception(), o);
    }
    decref(o);
  }
  gc_list_merge(seen, unreachable);
}

/// Whether `o` waits in the trashcan's queue (its count is zero and a release will free it).
inline bool gc_queued(const Object* o) noexcept {
  const DeferredQueue& queue = thread_state.deferred;
  for (std::size_t i = 0; i < queue.size; ++i) {
    if (queue.items[i] == o) return true;
  }
  return false;
}

/// Frees the garbage (CPython's delete_garbage, without its cascade of releases). First every
/// reference the garbage holds is detached: one between two garbage objects just lowers the
/// target's count, one to another object is kept for later. Then each object whose count is
/// zero is destroyed in list order; by the partition, nothing else referred to it. Its
/// destructor sees its traversed references null, as after CPython's tp_clear. An object still
/// counted (held by a const member of other garbage, which cannot be detached, or revived by a
/// destructor) is set aside: the release of that reference frees it, or it lives on in the old
/// generation. The references kept are dropped last.
inline void gc_free_garbage(GcList& unreachable, GcList& old, std::uint32_t old_generation) {
  DetachReferences detach;
  for (Object* o = unreachable.first(); o != unreachable.end(); o = gc_head(o)->next) {
    o->traverse(detach);
  }
  GcList kept;
  ++thread_state.dealloc_depth;
  while (!unreachable.empty()) {
    Object* o = unreachable.first();
    std::uint32_t& f = Access::flags(o);
    f &= ~(flag::collecting | flag::unreachable);
    if (Access::refcnt(o) != 0 || gc_queued(o)) {
      gc_set_generation(f, old_generation);
      gc_list_move(o, kept);
    } else {
      count_collected(f);
      destroy(o);  // unlinks it
    }
  }
  --thread_state.dealloc_depth;
  if (thread_state.deferred.size != 0 && thread_state.dealloc_depth == 0) drain_deferred();
  detach.drop();
  gc_list_merge(kept, old);
}

/// Breaks the remaining cycles and frees them (gc_free_garbage), or under DEBUG_SAVEALL keeps
/// them all in gc.garbage, and so in the old generation.
inline void gc_delete_garbage(GcList& unreachable, GcList& old, std::uint32_t old_generation) {
  if (!(gc_state().debug & debug_saveall)) return gc_free_garbage(unreachable, old, old_generation);
  for (Object* o = unreachable.first(); o != unreachable.end(); o = gc_head(o)->next) {
    std::uint32_t& f = Access::flags(o);
    f &= ~(flag::collecting | flag::unreachable);
    gc_set_generation(f, old_generation);
    if (Access::refcnt(o) == 0) continue;  // queued for destruction by an outer release
    incref(o);
    gc_garbage().emplace_back(adopt, o);
  }
  gc_list_merge(unreachable, old);
}

/// One collection of `generation` and the younger ones; returns the unreachable objects found.
MEMLENS_NOINLINE inline std::size_t gc_collect_main(int generation) noexcept {
  // Callers check the range; this keeps g++ -O2 from warning (-Warray-bounds) on paths where it
  // does not see that the check throws.
  if (generation < 0 || generation > 2) return 0;
  GcState& st = gc_state();
  if (generation + 1 < 3) st.counts[generation + 1] += 1;
  for (int i = 0; i <= generation; ++i) st.counts[i] = 0;
  for (int i = 0; i < generation; ++i) gc_list_merge(st.generations[i], st.generations[generation]);
  GcList& young = st.generations[generation];
  GcList& old = generation < 2 ? st.generations[generation + 1] : young;

  const auto old_generation = static_cast<std::uint32_t>(generation < 2 ? generation + 1 : 2);
  gc_compute_refs(young, static_cast<std::uint32_t>(generation));
  GcList unreachable;
  const GcPartition partition = gc_partition(young, unreachable, old_generation);
  if (&young != &old) {
    if (generation == 1) st.long_lived_pending += partition.reachable;
    gc_list_merge(young, old);
  } else {
    st.long_lived_pending = 0;
    st.long_lived_total = partition.reachable;
  }
  // The partition also learnt what the garbage needs: most garbage has neither weak references
  // nor finalizers, and then no user code runs before it is freed.
  std::size_t found = partition.unreachable;
  bool user_code_ran = false;
  if (partition.weakrefs) user_code_ran = gc_handle_weakrefs(unreachable);
  if (partition.finalizers) {
    gc_finalize_garbage(unreachable, old, old_generation);
    user_code_ran = true;
  }
  if (user_code_ran) {
    // PEP 442: whatever a finalizer or callback made reachable again survives, with all it
    // reaches.
    gc_compute_refs(unreachable);
    GcList still_unreachable;
    // As CPython 3.9+, what counts is what is still unreachable now (its final_unreachable):
    // not the objects resurrected, nor those freed by refcounting when user code let them go.
    found = gc_partition(unreachable, still_unreachable, old_generation).unreachable;
    gc_list_merge(unreachable, old);
    gc_list_merge(still_unreachable, unreachable);
  }
  gc_delete_garbage(unreachable, old, old_generation);

  st.stats[generation].collections += 1;
  st.stats[generation].collected += found;
  return found;
}

inline void gc_invoke_callbacks(std::string_view phase, const gc::CallbackInfo& info) {
  // A copy, so a callback may add or remove callbacks.
  const std::vector<gc::Callback> callbacks = gc_callbacks();
  for (const auto& callback : callbacks) {
    try {
      callback(phase, info);
    } catch (...) {
      report_unraisable("Exception ignored in gc callback", std::current_exception(), nullptr);
    }
  }
}

/// Marks a collection as running for its scope, even when a callback (or copying the list of
/// callbacks) throws.
class CollectingScope {
 public:
  CollectingScope() noexcept { gc_state().collecting = true; }
  ~CollectingScope() { gc_state().collecting = false; }
  CollectingScope(const CollectingScope&) = delete;
  CollectingScope& operator=(const CollectingScope&) = delete;
};

/// A collection with the "start"/"stop" callbacks; the caller holds a CollectingScope.
inline std::size_t gc_collect_with_callbacks(int generation) {
  const bool callbacks = !gc_callbacks().empty();
  if (callbacks) gc_invoke_callbacks("start", {generation, 0, 0});
  const std::size_t found = gc_collect_main(generation);
  if (callbacks) gc_invoke_callbacks("stop", {generation, found, 0});
  return found;
}

/// The automatic collection: the oldest generation over its threshold, with CPython's rule
/// that a full collection waits until a quarter of the long-lived objects are new.
MEMLENS_NOINLINE inline void gc_collect_generations() {
  GcState& st = gc_state();
  for (int i = 2; i >= 0; --i) {
    if (st.counts[i] > st.thresholds[i]) {
      if (i == 2 && st.long_lived_pending < st.long_lived_total / 4) continue;
      const CollectingScope collecting;
      gc_collect_with_callbacks(i);
      break;
    }
  }
}

/**
 * The collector's arithmetic over the whole tracked heap, for tools that walk it between
 * collections (MemoryLeakDetector): while a HeapScan lives, every live tracked object is
 * flagged `collecting` and its gc_refs is its count minus the references to it from tracked
 * objects (CPython's update_refs and subtract_refs), so an object with gc_refs > 0 is held from
 * outside the heap. The scan may then use gc_refs and the `unreachable` bit as it likes; the
 * destructor rebuilds the prev links and clears both bits. No collection runs meanwhile, and
 * nothing may make, track or free a tracked object (traverse does none of these).
 */
class HeapScan {
 public:
  HeapScan() : collecting_(gc_state().collecting) {
    gc_state().collecting = true;
    for (GcList* list : lists()) {
      for (Object* o = list->first(); o != list->end(); o = gc_head(o)->next) {
        gc_enter(o, Access::flags(o));  // an object being destroyed (count 0) stays out
      }
    }
    SubtractRefs subtract;
    for (GcList* list : lists()) {
      for (Object* o = list->first(); o != list->end(); o = gc_head(o)->next) {
        if (Access::flags(o) & flag::collecting) subtract.traverse_checked(*o);
      }
    }
  }
  ~HeapScan() {
    for (GcList* list : lists()) {
      Object* prev = &list->anchor;
      for (Object* o = list->first(); o != list->end(); o = gc_head(o)->next) {
        gc_head(o)->prev = prev;
        Access::flags(o) &= ~(flag::collecting | flag::unreachable);
        prev = o;
      }
      list->head.prev = prev;
    }
    gc_state().collecting = collecting_;
  }
  HeapScan(const HeapScan&) = delete;
  HeapScan& operator=(const HeapScan&) = delete;

  /// Every list of tracked objects: the three generations and the frozen ones.
  static std::array<GcList*, 4> lists() noexcept {
    GcState& st = gc_state();
    return {&st.generations[0], &st.generations[1], &st.generations[2], &st.permanent};
  }

 private:
  bool collecting_;
};

/// Called by make() before it allocates a tracked object, as CPython's _PyObject_GC_Link.
inline void gc_on_allocation() {
  GcState& st = gc_state();
  ++st.counts[0];
  if (st.counts[0] > st.thresholds[0] && st.enabled && st.thresholds[0] && !st.collecting) {
    gc_collect_generations();
  }
}

}  // namespace detail
}  // namespace memlens
