// memlens: Python's sys module, for memlens objects.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/detail/sizes.hpp"
#include "memlens/object.hpp"

namespace memlens {

namespace sys {

/// The exact number of strong references to the object (0 for a null Ref). Unlike CPython's,
/// it does not count a temporary for its own argument: a fresh object reports 1, not 2.
template <class T>
std::size_t getrefcount(const Ref<T>& object) noexcept {
  return object ? detail::Access::refcnt(object.object()) : 0;
}

/**
 * Python's `sys.intern`: equal strings give the identical object, so they can be compared
 * with `is` and stored once. Interned strings live until the program ends (as before 3.12).
 */
MEMLENS_SHARED inline Ref<const std::string> intern(std::string_view text) {
  // Immortal, like the strings in it: they may be used during static destruction.
  static auto* table = new std::unordered_map<std::string_view, Ref<const std::string>>();
  if (auto it = table->find(text); it != table->end()) return it->second;
  Ref<const std::string> s = make<const std::string>(text);
  table->emplace(std::string_view(*s), s);
  return s;
}

/// Replaces the hook that receives exceptions thrown by finalizers and weak reference
/// callbacks (Python's `sys.unraisablehook`); an empty hook restores the default, which prints
/// to stderr. Returns the previous hook.
inline UnraisableHook set_unraisablehook(UnraisableHook hook) {
  return std::exchange(detail::unraisable_hook(), std::move(hook));
}

/**
 * Python's `sys.getsizeof`, exact: the bytes of `x` itself plus the memory it owns directly (a
 * vector's capacity, a string's heap buffer, a node container's nodes and bucket array, the
 * buffers of a struct's members), not what its elements own nor the objects its Refs name.
 *
 * A Ref stands for the object it names, as a Python name does: `getsizeof(ref)` is that object
 * with its header (what `make` requested, GcHead included) and what it owns directly; the
 * Ref's own 8 bytes belong to whatever holds it, and a null Ref measures 0.
 * ```cpp
 * auto list = memlens::make<std::vector<memlens::Ref<const long long>>>();  // 56 bytes
 * for (long long i = 0; i < 1000; ++i) list->push_back(memlens::integer(i));
 * list->shrink_to_fit();
 * memlens::sys::getsizeof(list);  // 8056, as CPython's sys.getsizeof(list(range(1000)))
 * ```
 * Types other than the standard ones describe themselves with `memlens_sizeof` (see
 * `SizeVisitor`); a type with none that is not trivially copyable does not compile.
 */
template <class T>
std::size_t getsizeof(const T& x) {
  SizeVisitor size(SizeVisitor::Mode::shallow);
  size.measure(x);
  return size.total();
}

/**
 * Everything `x` keeps alive: what `getsizeof` counts, plus the memory of its elements and the
 * objects its Refs reach, each object once (cycles are fine). For the standard containers on
 * libstdc++ this is `sizeof(x)` plus exactly the bytes requested from operator new for what
 * `x` owns; each object reached counts what `make` requested for it (from its pool or
 * operator new) and what it owns, as its most derived type, however it is reached.
 * ```cpp
 * memlens::sys::deep_sizeof(list);  // 8056 + 1000 * 24 (each boxed long long: 16 + 8)
 * ```
 * Exact, but for objects reached through a base whose own type has no `memlens_sizeof`: their
 * blocks count, not what their members own. To know whether a total is exact, measure with a
 * `SizeVisitor` and read `inexact()`.
 */
template <class T>
std::size_t deep_sizeof(const T& x) {
  SizeVisitor size(SizeVisitor::Mode::deep);
  size.measure(x);
  return size.total();
}

/// What `x` really costs on glibc: `deep_sizeof`, with every allocation rounded up to the
/// chunk malloc takes for it (max(32, align16(n + 8)) on 64-bit; page-rounded from 128 KiB)
/// and every pooled object to its 16-byte size class. Free memory and allocator bookkeeping are
/// not counted: see docs/design.md, "Size measurement", for the limits.
template <class T>
std::size_t footprint(const T& x) {
  SizeVisitor size(SizeVisitor::Mode::footprint);
  size.measure(x);
  return size.total();
}

/// Kept for older code: it checks at compile time that objects of type T (an Object type or a
/// boxed value type) can be measured exactly. Nothing else is needed: make records how to
/// measure every type it makes, so a `Ref<Base>`, a `Ref<Object>` or a `traverse` reaching an
/// object measures it as its most derived type.
template <class T>
void register_sizeof() {
  using S = std::remove_const_t<detail::stored_t<T>>;
  static_assert(!std::is_abstract_v<S>, "memlens::sys::register_sizeof: T is abstract");
  static_cast<void>(&detail::measure_object<S>);
}

/// One type's objects, as sys::type_stats() counts them.
struct TypeStats {
  std::string type_name;        ///< as memlens::type_name() prints it (the value's, for a box)
  std::size_t count = 0;        ///< live objects
  std::size_t bytes = 0;        ///< their blocks, as make requested them: collector links included
  std::uint64_t created = 0;    ///< objects make ever created (not those whose constructor threw)
  std::uint64_t collected = 0;  ///< objects the cycle collector freed (the rest died by count)
  std::size_t object_size = 0;  ///< the block of one object, as `bytes` counts it
};

/**
 * The live objects of every type `make` has made, tracked by the collector or not, by their
 * dynamic type, largest `bytes` first: objgraph's `typestats()`, exact and without walking the
 * heap (make and destruction keep the counts; this reads them, in O(types)). Empty when built
 * with MEMLENS_TYPE_STATS=0. Objects that already existed when a shared library registered the
 * type are counted as well: a type has one record per process.
 */
inline std::vector<TypeStats> type_stats() {
  detail::check_heap_lock("sys::type_stats was called");
  const detail::TypeRegistry& registry = detail::type_registry;
  std::vector<TypeStats> out;
  for (std::uint32_t id = 1; id <= registry.count; ++id) {
    const detail::TypeCounts& c = registry.counts[id];
    if (c.created == 0) continue;
    const detail::TypeRecord& type = *registry.records[id];
    const auto live = static_cast<std::size_t>(c.created - c.freed);
    out.push_back({detail::demangle(type.shown->name()), live, live * type.size, c.created,
                   c.collected, type.size});
  }
  std::sort(out.begin(), out.end(), [](const TypeStats& a, const TypeStats& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    if (a.count != b.count) return a.count > b.count;
    return a.type_name < b.type_name;
  });
  return out;
}

}  // namespace sys

namespace detail {
inline constexpr long long small_int_min = -5;
inline constexpr long long small_int_max = 256;
}  // namespace detail

/**
 * An integer object, as Python makes them: values in [-5, 256] come from a cache, so every
 * call returns the same object (`is(integer(256), integer(256))`); others are new objects each
 * time (`!is(integer(1000), integer(1000))`), as in CPython.
 */
MEMLENS_SHARED inline Ref<const long long> integer(long long value) {
  using Cache = std::array<Ref<const long long>,
                           detail::small_int_max - detail::small_int_min + 1>;
  static Cache* cache = [] {
    auto* c = new Cache();  // immortal, as CPython's small ints
    for (long long v = detail::small_int_min; v <= detail::small_int_max; ++v) {
      (*c)[static_cast<std::size_t>(v - detail::small_int_min)] = make<const long long>(v);
    }
    return c;
  }();
  if (value >= detail::small_int_min && value <= detail::small_int_max) {
    return (*cache)[static_cast<std::size_t>(value - detail::small_int_min)];
  }
  return make<const long long>(value);
}

}  // namespace memlens
