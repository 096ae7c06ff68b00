// Seed exercise 4, compare __slots__ memory usage: a class whose attributes live in a
// per-instance dictionary against the same class with fixed members, 10,000 instances each.
//   stats = compare_slots_memory(10000)
//   # Should show significant memory savings with __slots__
#include <cstddef>
#include <memlens/sys.hpp>
#include <string>
#include <unordered_map>

#include "../../examples/compare_slots_memory.hpp"
#include "memlens_test.hpp"

namespace test_e04 {

using memlens_examples::DictPoint;
using memlens_examples::SlotsPoint;
using Dict = std::unordered_map<std::string, memlens::Ref<const memlens::Object>>;

constexpr std::size_t header = 16;   // a memlens object header
constexpr std::size_t gc_head = 16;  // in front of objects that can hold references
constexpr std::size_t boxed_integer = header + sizeof(long long);

}  // namespace test_e04

using namespace test_e04;

TEST_CASE("e04: both classes hold the same attributes", "[exercise][e04]") {
  auto regular = memlens::make<DictPoint>(1, 2, 300);
  auto slotted = memlens::make<SlotsPoint>(1, 2, 300);
  CHECK(memlens::is(regular->get("x"), slotted->x));  // cached small integers: shared
  CHECK(memlens::is(regular->get("y"), slotted->y));
  CHECK_FALSE(memlens::is(regular->get("z"), slotted->z));  // 300 is not cached
  CHECK_FALSE(regular->get("w"));
  CHECK(regular->dict.size() == 3);
}

TEST_CASE("e04: one instance byte by byte", "[exercise][e04]") {
  auto regular = memlens::make<DictPoint>(1000, 2000, 3000);
  // Object, GcHead, the map; three nodes (next, key, value, cached hash of a string key); the
  // bucket array; three integers that are not cached.
  const std::size_t nodes = 3 * (8 + sizeof(std::string) + 8 + 8);
  const std::size_t buckets = regular->dict.bucket_count() * sizeof(void*);
  CHECK(memlens::sys::getsizeof(regular) == header + gc_head + sizeof(Dict) + nodes + buckets);
  CHECK(memlens::sys::deep_sizeof(regular) == memlens::sys::getsizeof(regular) + 3 * boxed_integer);

  auto slotted = memlens::make<SlotsPoint>(1000, 2000, 3000);
  CHECK(memlens::sys::getsizeof(slotted) == header + gc_head + 3 * 8);
  CHECK(memlens::sys::deep_sizeof(slotted) == header + gc_head + 3 * 8 + 3 * boxed_integer);
}

TEST_CASE("e04: compare_slots_memory(10000) totals and saving", "[exercise][e04]") {
  const auto stats = memlens_examples::compare_slots_memory(10000);
  CHECK(stats.instances == 10000);
  const std::size_t list = sizeof(std::vector<int>) + 10000 * 8;
  const std::size_t integers = 3 * boxed_integer;  // 1, 2, 3: shared by every instance
  const std::size_t dict_instance = header + gc_head + sizeof(Dict) +
                                    3 * (8 + sizeof(std::string) + 8 + 8) +
                                    memlens::make<DictPoint>(1, 2, 3)->dict.bucket_count() * 8;
  CHECK(stats.dict_bytes == list + 10000 * dict_instance + integers);
  CHECK(stats.slots_bytes == list + 10000 * (header + gc_head + 3 * 8) + integers);
  CHECK(stats.slots_per_instance() == double(stats.slots_bytes) / 10000);
  // Significant savings, as in CPython (38 %), and more: a std::unordered_map per instance
  // shares nothing, where CPython 3.11's instance dictionaries share their keys.
  CHECK(stats.saving_percent > 38.0);
  CHECK(stats.saving_percent ==
        100.0 * (1.0 - double(stats.slots_bytes) / double(stats.dict_bytes)));
  // The slots version is within 1 % of CPython's: the per-instance layouts are both 64 bytes.
  const double cpython = double(memlens_examples::cpython_311_slots_bytes);
  CHECK(double(stats.slots_bytes) > 0.99 * cpython);
  CHECK(double(stats.slots_bytes) < 1.01 * cpython);
}

TEST_CASE("e04: no instances", "[exercise][e04]") {
  const auto stats = memlens_examples::compare_slots_memory(0);
  CHECK(stats.dict_bytes == sizeof(std::vector<int>));
  CHECK(stats.slots_bytes == sizeof(std::vector<int>));
  CHECK(stats.saving_percent == 0.0);
  CHECK(stats.dict_per_instance() == 0.0);
}
