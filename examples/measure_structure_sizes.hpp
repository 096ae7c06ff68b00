// Seed exercise 1's `measure_structure_sizes`, a demo function rather than a library part:
// shared by examples/e01_measure_object_size.cpp, which prints the table, and by
// tests/exercises/e01_measure_object_size.cpp, which checks it.
#pragma once

#include <cstddef>
#include <map>
#include <memlens/sys.hpp>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace memlens_examples {

/// One structure holding the data: the Python type it stands for, the memlens object that
/// mirrors it, and its sizes.
struct StructureSize {
  std::string python;       ///< "list", "dict", ...
  std::string cpp;          ///< the C++ type, made with memlens::make
  std::size_t shallow = 0;  ///< sys::getsizeof
  std::size_t deep = 0;     ///< sys::deep_sizeof: with the elements' memory and referents
};

/// CPython 3.11's figures for the same data, `list(range(1000))` and friends, as
/// examples/e01_sizes_cpython.py prints them (deep: each object once, by identity).
struct CPythonSize {
  const char* python;
  std::size_t shallow;
  std::size_t deep;
};
inline constexpr CPythonSize cpython_311_sizes[] = {
    {"list", 8056, 36056},      {"list (appended)", 8856, 36856}, {"tuple", 8040, 36040},
    {"set", 32984, 60984},      {"dict", 36952, 64952},           {"array('q')", 8080, 8080},
    {"array('i')", 4080, 4080},
};

/**
 * Stores `data` in each structure a Python program would use, as memlens objects (each
 * structure is an object made by `make`, with its header, as each Python structure is), and
 * measures each: Python's list and tuple hold boxed integers (`memlens::integer`, with CPython's
 * small-int cache), the std containers hold the values themselves.
 *
 * ```cpp
 * std::vector<long long> data(1000);
 * std::iota(data.begin(), data.end(), 0);
 * for (const auto& row : measure_structure_sizes(data)) fmt::print("{}: {}\n", row.cpp, row.deep);
 * ```
 */
inline std::vector<StructureSize> measure_structure_sizes(std::span<const long long> data) {
  using memlens::Ref;
  using Items = std::vector<Ref<const long long>>;
  std::vector<StructureSize> sizes;
  const auto add = [&sizes](std::string python, std::string cpp, const auto& structure) {
    sizes.push_back({std::move(python), std::move(cpp), memlens::sys::getsizeof(structure),
                     memlens::sys::deep_sizeof(structure)});
  };

  Items boxed;  // the same integer objects in every Python-like structure, as in CPython
  boxed.reserve(data.size());
  for (long long value : data) boxed.push_back(memlens::integer(value));

  // list(data) allocates exactly; a list grown by append over-allocates, as a vector does.
  add("list", "make<std::vector<Ref<const long long>>>",
      memlens::make<Items>(boxed.begin(), boxed.end()));
  auto appended = memlens::make<Items>();
  for (const auto& item : boxed) appended->push_back(item);
  add("list (appended)", "make<std::vector<Ref<const long long>>>, push_back", appended);
  // A tuple is a list that never grows: the same object, immutable.
  add("tuple", "make<const std::vector<Ref<const long long>>>",
      memlens::make<const Items>(boxed.begin(), boxed.end()));

  add("set", "make<std::set<long long>>",
      memlens::make<std::set<long long>>(data.begin(), data.end()));
  add("set", "make<std::unordered_set<long long>>",
      memlens::make<std::unordered_set<long long>>(data.begin(), data.end()));

  auto ordered = memlens::make<std::map<long long, long long>>();
  auto hashed = memlens::make<std::unordered_map<long long, long long>>();
  for (long long value : data) {
    ordered->emplace(value, value);
    hashed->emplace(value, value);
  }
  add("dict", "make<std::map<long long, long long>>", ordered);
  add("dict", "make<std::unordered_map<long long, long long>>", hashed);

  add("array('q')", "make<std::vector<long long>>",
      memlens::make<std::vector<long long>>(data.begin(), data.end()));
  add("array('i')", "make<std::vector<int>>",
      memlens::make<std::vector<int>>(data.begin(), data.end()));
  return sizes;
}

}  // namespace memlens_examples
