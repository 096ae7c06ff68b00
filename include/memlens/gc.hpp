// memlens: the cycle collector's interface (Python's gc module).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "memlens/detail/collector.hpp"
#include "memlens/errors.hpp"
#include "memlens/object.hpp"

/**
 * The cycle collector: Python's `gc` module for memlens objects.
 *
 * Reference counting frees everything but cycles; the collector finds groups of objects that
 * only reference each other and frees them, with CPython 3.11's semantics: three generations,
 * automatic collections driven by allocations of tracked objects, weak references to garbage
 * cleared first (callbacks run only for weak references that are not garbage themselves),
 * `finalize()` run once per object while its cycle is intact (PEP 442), resurrection honoured.
 *
 * ```cpp
 * auto a = memlens::make<Node>(), b = memlens::make<Node>();
 * a->next = b;
 * b->next = a;
 * a.reset(); b.reset();                 // a cycle: still alive
 * std::size_t n = memlens::gc::collect();  // 2
 * ```
 */
namespace memlens::gc {

/// gc.DEBUG_* flags for set_debug. Only DEBUG_SAVEALL changes behaviour here.
inline constexpr int DEBUG_STATS = 1 << 0;
inline constexpr int DEBUG_COLLECTABLE = 1 << 1;
inline constexpr int DEBUG_UNCOLLECTABLE = 1 << 2;
inline constexpr int DEBUG_SAVEALL = detail::debug_saveall;
inline constexpr int DEBUG_LEAK = DEBUG_COLLECTABLE | DEBUG_UNCOLLECTABLE | DEBUG_SAVEALL;

/// One entry of get_stats(): the collections of one generation so far.
using GenerationStats = detail::GcGenerationStats;

namespace detail_gc {
// [[noreturn]] and out of line, so that g++ -O2 sees the bad values never reach an index
// (otherwise it warns with -Warray-bounds in callers that pass a constant).
[[noreturn]] MEMLENS_NOINLINE inline void invalid_generation(int generation) {
  throw ValueError("gc: invalid generation " + std::to_string(generation) +
                   " (expected 0, 1 or 2)");
}
inline void check_generation(int generation) {
  if (generation < 0 || generation > 2) invalid_generation(generation);
}
inline void append_list(const detail::GcList& list, std::vector<Ref<Object>>& out) {
  for (Object* o = list.first(); o != list.end(); o = detail::gc_head(o)->next) {
    if (Ref<Object> r = detail::ref_if_alive(o)) out.push_back(std::move(r));
  }
}

/// Whether an object's traverse reports a reference to `target`; the test runs inline in the
/// traverse, as the collector's own visits do.
class RefersTo final : public Visitor {
 public:
  explicit RefersTo(const Object* target) noexcept
      : Visitor(detail::GcVisitState{detail::GcVisit::find}) {
    gc_.wanted = target;
  }
  bool in(Object& o) {
    gc_.found = false;
    o.traverse(*this);
    return gc_.found;
  }
  // Only for a traverse that calls visit_edge itself.
  void visit_edge(const Edge& edge) override { gc_.found |= &edge.referent() == gc_.wanted; }
};
}  // namespace detail_gc

/// Collects `generation` (and the younger ones); returns the number of unreachable objects
/// found, as CPython's gc.collect(). Returns 0 at once if a collection is already running.
/// Throws ValueError for a generation outside 0..2.
inline std::size_t collect(int generation = 2) {
  detail_gc::check_generation(generation);
  if (detail::gc_state().collecting) return 0;
  const detail::CollectingScope collecting;
  return detail::gc_collect_with_callbacks(generation);
}

/// Turns automatic collection on.
inline void enable() noexcept { detail::gc_state().enabled = true; }
/// Turns automatic collection off; collect() still works.
inline void disable() noexcept { detail::gc_state().enabled = false; }
/// Whether automatic collection is on.
inline bool isenabled() noexcept { return detail::gc_state().enabled; }

/// The current collection counts: tracked allocations minus deallocations since the last
/// collection of generation 0, and collections of the generation below since the last
/// collection of generations 1 and 2.
inline std::tuple<std::size_t, std::size_t, std::size_t> get_count() noexcept {
  const auto& c = detail::gc_state().counts;
  return {c[0], c[1], c[2]};
}

/// The thresholds of automatic collection (CPython's defaults: 700, 10, 10).
inline std::tuple<std::size_t, std::size_t, std::size_t> get_threshold() noexcept {
  const auto& t = detail::gc_state().thresholds;
  return {t[0], t[1], t[2]};
}

/// Sets the thresholds; a threshold0 of 0 turns automatic collection off, as in CPython.
inline void set_threshold(std::size_t threshold0, std::size_t threshold1 = 10,
                          std::size_t threshold2 = 10) noexcept {
  auto& t = detail::gc_state().thresholds;
  t[0] = threshold0;
  t[1] = threshold1;
  t[2] = threshold2;
}

/// Sets the debugging flags (DEBUG_SAVEALL keeps garbage in garbage() instead of freeing it).
inline void set_debug(int flags) noexcept { detail::gc_state().debug = flags; }
/// The debugging flags.
inline int get_debug() noexcept { return detail::gc_state().debug; }

/// gc.garbage: the objects DEBUG_SAVEALL kept. Clear it to let them go.
inline std::vector<Ref<Object>>& garbage() { return detail::gc_garbage(); }

/// gc.callbacks: each is called with "start" and "stop" around every collection.
inline std::vector<Callback>& callbacks() { return detail::gc_callbacks(); }

/// Per-generation statistics since the program started.
inline std::array<GenerationStats, 3> get_stats() noexcept {
  const auto& s = detail::gc_state().stats;
  return {s[0], s[1], s[2]};
}

/// Every object the collector tracks (not the frozen ones), as gc.get_objects().
inline std::vector<Ref<Object>> get_objects() {
  std::vector<Ref<Object>> out;
  for (const auto& list : detail::gc_state().generations) detail_gc::append_list(list, out);
  return out;
}

/// The tracked objects of one generation. Throws ValueError for a generation outside 0..2.
inline std::vector<Ref<Object>> get_objects(int generation) {
  detail_gc::check_generation(generation);
  std::vector<Ref<Object>> out;
  detail_gc::append_list(detail::gc_state().generations[generation], out);
  return out;
}

/// The objects whose traverse reports a reference to `object`, as gc.get_referrers(): tracked
/// objects only, each once. Costs a traverse of every tracked object.
template <class T>
std::vector<Ref<Object>> get_referrers(const Ref<T>& object) {
  std::vector<Ref<Object>> out;
  if (!object) return out;
  detail_gc::RefersTo refers_to(object.object());
  for (auto& list : detail::gc_state().generations) {
    for (Object* o = list.first(); o != list.end(); o = detail::gc_head(o)->next) {
      if (detail::Access::refcnt(o) == 0) continue;  // being destroyed: not a referrer
      if (refers_to.in(*o)) out.push_back(detail::ref_if_alive(o));
    }
  }
  return out;
}

/// The objects `object` references, as its traverse reports them (gc.get_referents()), except
/// those already being destroyed (a destructor's members may still name them).
template <class T>
std::vector<Ref<Object>> get_referents(const Ref<T>& object) {
  std::vector<Ref<Object>> out;
  if (!object) return out;
  for_each_edge(*const_cast<Object*>(object.object()), [&](const Edge& e) {
    if (Ref<Object> r = detail::ref_if_alive(&e.referent())) out.push_back(std::move(r));
  });
  return out;
}

/// Whether the collector tracks the object (its type overrides traverse, or it is a box whose
/// value may hold references).
template <class T>
bool is_tracked(const Ref<T>& object) noexcept {
  return object && (detail::Access::flags(object.object()) & detail::flag::tracked);
}

/// Whether the object's finalize() has run (PEP 442: it never runs twice).
template <class T>
bool is_finalized(const Ref<T>& object) noexcept {
  return object && (detail::Access::flags(object.object()) & detail::flag::finalized);
}

/// Moves every tracked object to the permanent generation, which collections ignore (used
/// after start-up, before forking, as in CPython).
inline void freeze() noexcept {  // O(n): each object records its generation
  auto& st = detail::gc_state();
  for (auto& list : st.generations) {
    detail::gc_list_set_generation(list, detail::flag::permanent_generation);
    detail::gc_list_merge(list, st.permanent);
  }
  st.counts[0] = 0;
}

/// Moves the permanent generation back into the oldest one.
inline void unfreeze() noexcept {
  auto& st = detail::gc_state();
  detail::gc_list_set_generation(st.permanent, 2);
  detail::gc_list_merge(st.permanent, st.generations[2]);
}

/// The number of objects in the permanent generation.
inline std::size_t get_freeze_count() noexcept {
  return detail::gc_list_size(detail::gc_state().permanent);
}

}  // namespace memlens::gc
