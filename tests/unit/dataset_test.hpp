// Helpers of the DatasetProcessor tests: a temporary directory, files written from strings, and
// the statistics of generated rows computed from their values (not by parsing their text).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memlens/memlens.hpp>
#include <string>
#include <vector>

#include "../examples/csv_generator.hpp"

namespace dataset_test {

/// A directory of its own under the system's temporary directory, removed at the end.
struct TempDir {
  explicit TempDir(const std::string& tag)
      : path(std::filesystem::temp_directory_path() /
             ("memlens_" + tag + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
  std::filesystem::path path;
};

inline std::filesystem::path write(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

/// Adds one value to statistics the way a reader of the column would count it.
inline void add(memlens::ColumnStats& s, double v) {
  ++s.count;
  s.sum += v;
  s.min = std::min(s.min, v);
  s.max = std::max(s.max, v);
}

/// The columns of a generated file of `rows` rows, from the generator's values.
inline std::vector<memlens::ColumnStats> expected_columns(std::uint64_t rows,
                                                          std::uint64_t seed = 42) {
  std::vector<memlens::ColumnStats> c(7);
  const char* names[] = {"id", "timestamp", "category", "amount", "quantity", "score", "ratio"};
  for (std::size_t i = 0; i < 7; ++i) c[i].name = names[i];
  csvgen::Generator generator(seed);
  for (std::uint64_t r = 0; r < rows; ++r) {
    const csvgen::Row row = generator.next();
    add(c[0], static_cast<double>(row.id));
    ++c[1].non_numeric;
    ++c[2].non_numeric;
    add(c[3], row.amount());
    if (row.quantity)
      add(c[4], static_cast<double>(*row.quantity));
    else
      ++c[4].empty;
    add(c[5], row.score());
    add(c[6], row.ratio());
  }
  return c;
}

/// Whether two sums agree to a few units in the last place of a sum of many terms.
inline bool close(double a, double b) {
  return std::abs(a - b) <= 1e-9 * std::max({1.0, std::abs(a), std::abs(b)});
}

}  // namespace dataset_test
