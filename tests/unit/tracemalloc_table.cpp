// The table of live traces behind memlens::tracemalloc (detail::trace::TraceTable): Robin Hood
// probing in hash order, 90 % full at most, grown by a quarter. Checked against a std::map model
// through random inserts, replacements and removals, and on keys chosen to pile up at the end of
// the table, where the spare slots run out and the table must grow instead of overflowing.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memlens/detail/trace_core.hpp>
#include <utility>
#include <vector>

#include "memlens_test.hpp"

namespace test_tracemalloc_table {

namespace trace = memlens::detail::trace;
using Table = trace::TraceTable<trace::CompactEntry>;

/// The invariants lookups rely on: entries in home order, none before its home, `count` right.
void check_layout(const Table& table) {
  std::size_t seen = 0;
  std::size_t last_home = 0;
  for (std::size_t i = 0; i < table.capacity + Table::slack; ++i) {
    const auto& e = table.slots[i];
    if (e.ptr == 0) continue;
    ++seen;
    const std::size_t home = table.home(e);
    REQUIRE(home <= i);
    REQUIRE(home >= last_home);
    last_home = home;
  }
  REQUIRE(seen == table.count);
}

/// Inserts `ptr`; returns what the table said the key held before (0 when it was new).
std::size_t put(Table& table, std::uintptr_t ptr, std::uint32_t size) {
  std::size_t replaced = 99;
  auto* e = table.insert(ptr, 0, &replaced);
  REQUIRE(e != nullptr);
  REQUIRE(e->ptr == ptr);
  e->size = size;
  e->traceback = size * 3;
  return replaced;
}

TEST_CASE("tracemalloc's trace table agrees with a map through random inserts and removals",
          "[tracemalloc][tracemalloc_table]") {
  Table table;
  std::map<std::uintptr_t, std::uint32_t> model;
  std::uint64_t state = 42;
  auto next = [&] {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dULL;
  };
  for (int round = 0; round < 200000; ++round) {
    // Keys from a small range, so that replacements and removals of present keys are common.
    const std::uintptr_t ptr = 16 * (1 + next() % 60000);
    const auto size = static_cast<std::uint32_t>(1 + next() % 1000);
    if (next() % 3 != 0) {
      const auto it = model.find(ptr);
      REQUIRE(put(table, ptr, size) == (it == model.end() ? 0 : it->second));
      model[ptr] = size;
    } else {
      const auto it = model.find(ptr);
      REQUIRE(table.remove(ptr, 0) == (it == model.end() ? 0 : it->second));
      if (it != model.end()) model.erase(it);
    }
    if (round % 20000 == 0) check_layout(table);
  }
  check_layout(table);
  REQUIRE(table.count == model.size());
  // At most 90 % full, and never less than 72 % once grown: 16-byte entries stay under 24
  // bytes per live trace (the spare slots at the end aside).
  CHECK(table.count * 10 <= table.capacity * 9);
  for (const auto& [ptr, size] : model) {
    const auto* e = table.find(ptr, 0);
    REQUIRE(e != nullptr);
    CHECK(e->size == size);
    CHECK(e->traceback == size * 3);
  }
  std::size_t visited = 0;
  table.for_each([&](const trace::CompactEntry& e) {
    ++visited;
    CHECK(model.at(e.ptr) == e.size);
  });
  CHECK(visited == model.size());
  CHECK(table.find(16 * 70000, 0) == nullptr);
  table.clear();
  CHECK(table.count == 0);
  CHECK(table.find(16, 0) == nullptr);
  CHECK(table.memory() == 0);
}

TEST_CASE("tracemalloc's trace table stays under 24 bytes per live trace as it grows",
          "[tracemalloc][tracemalloc_table]") {
  Table table;
  for (std::uintptr_t i = 1; i <= 1000000; ++i) {
    put(table, i * 48, 48);
    if (i % 50000 == 0) {
      const double per_trace =
          static_cast<double>(table.memory()) / static_cast<double>(table.count);
      INFO(i << " traces: " << per_trace << " bytes each");
      CHECK(per_trace <= 24.0);
    }
  }
  check_layout(table);
  for (std::uintptr_t i = 1; i <= 1000000; i += 2) REQUIRE(table.remove(i * 48, 0) == 48);
  check_layout(table);
  for (std::uintptr_t i = 2; i <= 1000000; i += 2) REQUIRE(table.find(i * 48, 0) != nullptr);
  table.clear();
}

TEST_CASE("tracemalloc's trace table grows when keys pile up past its spare slots",
          "[tracemalloc][tracemalloc_table]") {
  // Keys whose hash is in the top 1/4096 of its range all have the last home slot of every
  // table up to 4096 slots: 300 of them outrun the 256 spare slots of the first tables.
  std::vector<std::uintptr_t> keys;
  for (std::uintptr_t ptr = 16; keys.size() < 300; ptr += 16) {
    if ((Table::hash(ptr, 0) >> 52) == 0xfff) keys.push_back(ptr);
  }
  Table table;
  for (std::uintptr_t ptr : keys) REQUIRE(put(table, ptr, 7) == 0);
  check_layout(table);
  CHECK(table.count == keys.size());
  CHECK(table.capacity > Table::initial_capacity);
  for (std::uintptr_t ptr : keys) REQUIRE(table.find(ptr, 0) != nullptr);
  for (std::uintptr_t ptr : keys) REQUIRE(table.remove(ptr, 0) == 7);
  CHECK(table.count == 0);
  table.clear();
}

}  // namespace test_tracemalloc_table
