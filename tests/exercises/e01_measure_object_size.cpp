// Seed exercise 1, measure object size: the same integers in a list, tuple, set, dict and
// array, shallow and deep.
//   data = list(range(1000)); results = measure_structure_sizes(data)
//   # Should show size comparison between list, tuple, set, dict, array
#include <cstddef>
#include <map>
#include <memlens/sys.hpp>
#include <numeric>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../../examples/measure_structure_sizes.hpp"
#include "memlens_test.hpp"

namespace test_e01 {

using memlens_examples::StructureSize;

inline std::vector<long long> range(long long n) {
  std::vector<long long> data(static_cast<std::size_t>(n));
  std::iota(data.begin(), data.end(), 0LL);
  return data;
}

inline const StructureSize& row(const std::vector<StructureSize>& rows, const std::string& cpp) {
  for (const auto& r : rows) {
    if (r.cpp == cpp) return r;
  }
  FAIL("no row for " << cpp);
  return rows.front();
}

constexpr std::size_t box_header = 16;  // a memlens object header
constexpr std::size_t gc_head = 16;     // in front of objects that can hold references
constexpr std::size_t boxed_integer = box_header + sizeof(long long);

}  // namespace test_e01

using namespace test_e01;

TEST_CASE("e01: one row per structure with Python's and C++'s names", "[exercise][e01]") {
  const auto rows = memlens_examples::measure_structure_sizes(range(1000));
  const std::vector<std::string> python = {
      "list", "list (appended)", "tuple", "set", "set", "dict", "dict", "array('q')", "array('i')"};
  REQUIRE(rows.size() == python.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].python == python[i]);
    CHECK(rows[i].shallow > 0);
    CHECK(rows[i].deep >= rows[i].shallow);
  }
  for (const auto& cpython : memlens_examples::cpython_311_sizes) {
    bool found = false;
    for (const auto& r : rows) found = found || r.python == cpython.python;
    CHECK(found);
  }
}

TEST_CASE("e01: a boxed vector of boxed integers costs what a CPython list does",
          "[exercise][e01]") {
  const auto rows = memlens_examples::measure_structure_sizes(range(1000));
  const auto& list = row(rows, "make<std::vector<Ref<const long long>>>");
  // 56 bytes of object (header, GcHead, vector) + 8 per item: CPython's 56 + 8 per item.
  CHECK(list.shallow == box_header + gc_head + 24 + 1000 * 8);
  CHECK(list.shallow == memlens_examples::cpython_311_sizes[0].shallow);
  // Deep: every integer object, the cached small ones included, once each.
  CHECK(list.deep == list.shallow + 1000 * boxed_integer);
  const auto& tuple = row(rows, "make<const std::vector<Ref<const long long>>>");
  CHECK(tuple.shallow == list.shallow);
  CHECK(tuple.deep == list.deep);
  // Grown by push_back, the vector doubles to 1024 slots (CPython's list grows by ~1/8).
  const auto& appended = row(rows, "make<std::vector<Ref<const long long>>>, push_back");
  CHECK(appended.shallow == box_header + gc_head + 24 + 1024 * 8);
  CHECK(appended.deep == appended.shallow + 1000 * boxed_integer);
}

TEST_CASE("e01: std containers hold the values: deep is shallow", "[exercise][e01]") {
  const auto data = range(1000);
  const auto rows = memlens_examples::measure_structure_sizes(data);
  for (const auto& r : rows) {
    if (r.python != "list" && r.python != "list (appended)" && r.python != "tuple") {
      CAPTURE(r.cpp);
      CHECK(r.deep == r.shallow);
    }
  }
  // libstdc++ nodes: a tree node is 32 bytes of links and color + the value.
  CHECK(row(rows, "make<std::set<long long>>").shallow ==
        box_header + sizeof(std::set<long long>) + 1000 * (32 + 8));
  CHECK(row(rows, "make<std::map<long long, long long>>").shallow ==
        box_header + sizeof(std::map<long long, long long>) + 1000 * (32 + 16));
  // A hash node is a next pointer + the value (std::hash<long long> is not cached), and the
  // bucket array holds a pointer per bucket.
  const std::unordered_set<long long> same_set(data.begin(), data.end());
  CHECK(row(rows, "make<std::unordered_set<long long>>").shallow ==
        box_header + sizeof(same_set) + 1000 * (8 + 8) + same_set.bucket_count() * 8);
  std::unordered_map<long long, long long> same_map;
  for (long long v : data) same_map.emplace(v, v);
  CHECK(row(rows, "make<std::unordered_map<long long, long long>>").shallow ==
        box_header + sizeof(same_map) + 1000 * (8 + 16) + same_map.bucket_count() * 8);
  CHECK(row(rows, "make<std::vector<long long>>").shallow == box_header + 24 + 8000);
  CHECK(row(rows, "make<std::vector<int>>").shallow == box_header + 24 + 4000);
}

TEST_CASE("e01: shared integer objects count once as CPython's do by identity", "[exercise][e01]") {
  // 0..9 twice: the small-int cache gives the same 10 objects both times.
  std::vector<long long> data = range(10);
  data.insert(data.end(), data.begin(), data.end());
  auto rows = memlens_examples::measure_structure_sizes(data);
  const auto& list = row(rows, "make<std::vector<Ref<const long long>>>");
  CHECK(list.deep == list.shallow + 10 * boxed_integer);
  CHECK(row(rows, "make<std::set<long long>>").shallow ==
        box_header + sizeof(std::set<long long>) + 10 * 40);
  // 1000 and 1001 twice: outside the cache, each integer() is a new object.
  rows = memlens_examples::measure_structure_sizes(std::vector<long long>{1000, 1001, 1000, 1001});
  const auto& big = row(rows, "make<std::vector<Ref<const long long>>>");
  CHECK(big.deep == big.shallow + 4 * boxed_integer);
}

TEST_CASE("e01: no data: the structures' own objects", "[exercise][e01]") {
  const auto rows = memlens_examples::measure_structure_sizes({});
  CHECK(row(rows, "make<std::vector<Ref<const long long>>>").deep == box_header + gc_head + 24);
  CHECK(row(rows, "make<std::set<long long>>").deep == box_header + sizeof(std::set<long long>));
  CHECK(row(rows, "make<std::unordered_set<long long>>").deep ==
        box_header + sizeof(std::unordered_set<long long>));  // the single bucket is inside
  CHECK(row(rows, "make<std::vector<int>>").deep == box_header + 24);
}
