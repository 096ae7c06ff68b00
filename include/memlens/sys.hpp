// memlens: Python's sys module, for memlens objects.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

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
inline Ref<const std::string> intern(std::string_view text) {
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
inline Ref<const long long> integer(long long value) {
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
