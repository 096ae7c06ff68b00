// Seed exercise 4's `compare_slots_memory`, a demo function rather than a library part: shared
// by examples/e04_compare_slots_memory.cpp, which prints the table, and by
// tests/exercises/e04_compare_slots_memory.cpp, which checks it.
#pragma once

#include <cstddef>
#include <memlens/sys.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace memlens_examples {

/// A Python class without __slots__: its attributes live in a per-instance dictionary
/// (`__dict__`), keyed by name, each value an object.
struct DictPoint : memlens::Object {
  DictPoint(long long x, long long y, long long z) {
    dict.emplace("x", memlens::integer(x));
    dict.emplace("y", memlens::integer(y));
    dict.emplace("z", memlens::integer(z));
  }
  /// `getattr(point, name)`, or null.
  memlens::Ref<const memlens::Object> get(const std::string& name) const {
    const auto it = dict.find(name);
    return it == dict.end() ? nullptr : it->second;
  }

  std::unordered_map<std::string, memlens::Ref<const memlens::Object>> dict;

  void traverse(memlens::Visitor& visit) override { visit(dict); }
  void memlens_sizeof(memlens::sys::SizeVisitor& size) const { size(dict); }
};

/// The same class with `__slots__ = ("x", "y", "z")`: one fixed member per attribute, each
/// still a reference to an object, as in CPython.
struct SlotsPoint : memlens::Object {
  SlotsPoint(long long x_, long long y_, long long z_)
      : x(memlens::integer(x_)), y(memlens::integer(y_)), z(memlens::integer(z_)) {}

  memlens::Ref<const memlens::Object> x, y, z;

  void traverse(memlens::Visitor& visit) override { visit(x, y, z); }
  void memlens_sizeof(memlens::sys::SizeVisitor& size) const { size(x, y, z); }
};

/// What compare_slots_memory returns.
struct SlotsMemory {
  std::size_t instances = 0;
  std::size_t dict_bytes = 0;   ///< deep_sizeof of the list of DictPoints
  std::size_t slots_bytes = 0;  ///< deep_sizeof of the list of SlotsPoints
  double saving_percent = 0;    ///< how much less the slots version takes
  double dict_per_instance() const { return instances ? double(dict_bytes) / instances : 0; }
  double slots_per_instance() const { return instances ? double(slots_bytes) / instances : 0; }
};

/// CPython 3.11's figures for the same measurement (tracemalloc over
/// `[cls(1, 2, 3) for _ in range(10000)]`), as examples/e04_slots_cpython.py prints them.
inline constexpr std::size_t cpython_311_dict_bytes = 1'045'288;
inline constexpr std::size_t cpython_311_slots_bytes = 645'288;

/**
 * Makes `n` instances of each class, all holding the attributes 1, 2, 3 (small integers, shared
 * through the cache as in CPython), in a list as a Python program would, and measures each list
 * with `sys::deep_sizeof`: the list, every instance, its dictionary or slots, and the integers.
 *
 * ```cpp
 * auto stats = compare_slots_memory(10000);
 * fmt::print("__slots__ saves {:.1f} %\n", stats.saving_percent);
 * ```
 */
inline SlotsMemory compare_slots_memory(std::size_t n = 10000) {
  SlotsMemory stats;
  stats.instances = n;
  {
    std::vector<memlens::Ref<DictPoint>> points;
    points.reserve(n);
    for (std::size_t i = 0; i < n; ++i) points.push_back(memlens::make<DictPoint>(1, 2, 3));
    stats.dict_bytes = memlens::sys::deep_sizeof(points);
  }
  {
    std::vector<memlens::Ref<SlotsPoint>> points;
    points.reserve(n);
    for (std::size_t i = 0; i < n; ++i) points.push_back(memlens::make<SlotsPoint>(1, 2, 3));
    stats.slots_bytes = memlens::sys::deep_sizeof(points);
  }
  if (stats.dict_bytes) {
    stats.saving_percent = 100.0 * (1.0 - double(stats.slots_bytes) / double(stats.dict_bytes));
  }
  return stats;
}

}  // namespace memlens_examples
