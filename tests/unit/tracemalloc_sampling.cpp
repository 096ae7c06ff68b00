// memlens::tracemalloc with TraceOptions::sample_bytes: Poisson sampling of the allocated bytes
// and the unbiased estimates made from it. The statistical checks allow six standard deviations
// of the estimate, computed from the binomial variance of the number of sampled blocks, and use
// enough blocks that this bound is tight: they fail about once in 10^8 runs by chance, and at
// once when the scaling is wrong. Blocks that need no memory are "allocated" with track() at
// addresses nothing uses, in domains of their own.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memlens/tracemalloc.hpp>
#include <string>
#include <thread>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

namespace test_tracemalloc_sampling {

using test_tracemalloc_common::escape;
using test_tracemalloc_common::Tracing;

constexpr std::size_t kMean = 512 * 1024;

/// p(size) = 1 - exp(-size / mean).
double probability(std::size_t size, std::size_t mean) {
  return -std::expm1(-static_cast<double>(size) / static_cast<double>(mean));
}

/// Six standard deviations of the relative error of the estimated bytes (or count) of `n`
/// blocks of `size`: the number sampled is binomial(n, p), so the estimate's relative standard
/// deviation is sqrt((1 - p) / (n p)).
double six_sigma(std::size_t n, std::size_t size, std::size_t mean) {
  const double p = probability(size, mean);
  return 6 * std::sqrt((1 - p) / (static_cast<double>(n) * p));
}

/// A fake address for block `i` of a run starting at `base`: never dereferenced.
const void* fake(std::uintptr_t base, std::size_t i) {
  return reinterpret_cast<const void*>(base + 16 * i);
}

constexpr std::uintptr_t kSmallBase = std::uintptr_t{1} << 44;
constexpr std::uintptr_t kLargeBase = std::uintptr_t{1} << 45;

/// `n` blocks of `size` at fake addresses from `base`, in `domain`.
void track_blocks(std::uintptr_t base, std::size_t n, std::size_t size, unsigned domain) {
  for (std::size_t i = 0; i < n; ++i) tracemalloc::track(fake(base, i), size, domain);
}
void untrack_blocks(std::uintptr_t base, std::size_t n, unsigned domain) {
  for (std::size_t i = 0; i < n; ++i) tracemalloc::untrack(fake(base, i), domain);
}

/// The snapshot's estimated bytes and blocks in `domain`, over every row of statistics.
struct Totals {
  std::size_t size = 0;
  std::size_t count = 0;
  std::size_t traces = 0;  // sampled blocks
};
Totals totals_in(const tracemalloc::Snapshot& snapshot, unsigned domain) {
  const auto only = snapshot.filter_traces({tracemalloc::DomainFilter(true, domain)});
  Totals t;
  for (const auto& s : only.statistics("filename")) {
    t.size += s.size;
    t.count += s.count;
  }
  t.traces = only.traces().size();
  return t;
}

double relative_error(std::size_t estimate, std::size_t truth) {
  return std::abs(static_cast<double>(estimate) / static_cast<double>(truth) - 1);
}

/// Allocated with new at one line, so that the "lineno" statistic of the line is theirs alone.
__attribute__((noinline)) void allocate_large(std::vector<char*>& blocks, std::size_t n,
                                              std::size_t size) {
  for (std::size_t i = 0; i < n; ++i) {
    blocks.push_back(new char[size]);  // kLargeLine
    escape(blocks.back());
  }
}
constexpr int kLargeLine = __LINE__ - 4;

}  // namespace test_tracemalloc_sampling

namespace ts = test_tracemalloc_sampling;

TEST_CASE("tracemalloc: sample_bytes 0 traces every allocation as before", "[tracemalloc]") {
  std::vector<char*> blocks;
  blocks.reserve(100);
  ts::Tracing tracing(1, {.sample_bytes = 0});
  const auto before = tracemalloc::get_traced_memory();
  for (int i = 0; i < 100; ++i) {
    blocks.push_back(new char[10]);
    ts::escape(blocks.back());
  }
  const auto during = tracemalloc::get_traced_memory();
  const auto snapshot = tracemalloc::take_snapshot();
  for (char* b : blocks) delete[] b;
  const auto after = tracemalloc::get_traced_memory();
  CHECK(tracemalloc::get_sample_bytes() == 0);
  CHECK(snapshot.sample_bytes() == 0);
  CHECK(during.current - before.current == 1000);
  CHECK(after.current == before.current);
  std::size_t tens = 0;
  for (const auto& t : snapshot.traces()) tens += t.size == 10 ? 1 : 0;
  CHECK(tens >= 100);
}

TEST_CASE("tracemalloc: sampled estimates of a small and a large site are unbiased",
          "[tracemalloc]") {
  // 16M blocks of 64 B (p = 1.2e-4, about 1950 sampled) and 2000 of 1 MiB (p = 0.86).
  constexpr std::size_t kSmall = 16'000'000, kSmallSize = 64;
  constexpr std::size_t kLarge = 2000, kLargeSize = 1024 * 1024;
  const double small_bound = ts::six_sigma(kSmall, kSmallSize, ts::kMean);
  const double large_bound = ts::six_sigma(kLarge, kLargeSize, ts::kMean);
  REQUIRE(small_bound < 0.14);  // the test means something
  REQUIRE(large_bound < 0.06);

  ts::Tracing tracing(1, {.sample_bytes = ts::kMean});
  ts::track_blocks(ts::kSmallBase, kSmall, kSmallSize, 7);
  ts::track_blocks(ts::kLargeBase, kLarge, kLargeSize, 8);
  const auto snapshot = tracemalloc::take_snapshot();
  const auto small = ts::totals_in(snapshot, 7);
  const auto large = ts::totals_in(snapshot, 8);
  INFO("small: " << small.size << " B in " << small.count << " blocks from " << small.traces
                 << " sampled, bound " << small_bound);
  INFO("large: " << large.size << " B in " << large.count << " blocks from " << large.traces
                 << " sampled, bound " << large_bound);
  CHECK(snapshot.sample_bytes() == ts::kMean);
  CHECK(small.traces < kSmall / 1000);  // sampled, not traced
  CHECK(ts::relative_error(small.size, kSmall * kSmallSize) < small_bound);
  CHECK(ts::relative_error(small.count, kSmall) < small_bound);
  CHECK(ts::relative_error(large.size, kLarge * kLargeSize) < large_bound);
  CHECK(ts::relative_error(large.count, kLarge) < large_bound);
  // Each trace keeps its real size.
  for (const auto& t : snapshot.traces()) {
    if (t.domain == 7) CHECK(t.size == kSmallSize);
  }

  // get_traced_memory estimates the same way, and every sampled block's free is seen.
  const auto [current, peak] = tracemalloc::get_traced_memory();
  const double truth = static_cast<double>(kSmall * kSmallSize + kLarge * kLargeSize);
  CHECK(std::abs(static_cast<double>(current) / truth - 1) < small_bound);
  CHECK(peak >= current);
  ts::untrack_blocks(ts::kSmallBase, kSmall, 7);
  ts::untrack_blocks(ts::kLargeBase, kLarge, 8);
  const auto emptied = tracemalloc::take_snapshot();
  CHECK(ts::totals_in(emptied, 7).traces == 0);
  CHECK(ts::totals_in(emptied, 8).traces == 0);
  CHECK(tracemalloc::get_traced_memory().current < current / 1000);
}

TEST_CASE("tracemalloc: sampled blocks from operator new are estimated at their line",
          "[tracemalloc]") {
  // 400 blocks of 1 MiB from new (address space only: nothing writes them).
  constexpr std::size_t kBlocks = 400, kSize = 1024 * 1024;
  const double bound = ts::six_sigma(kBlocks, kSize, ts::kMean);
  REQUIRE(bound < 0.13);
  // Judged before sampling starts: its probe block would rarely be sampled.
  const bool lines = test_tracemalloc_common::has_line_info();
  std::vector<char*> blocks;
  blocks.reserve(kBlocks);
  ts::Tracing tracing(1, {.sample_bytes = ts::kMean});
  ts::allocate_large(blocks, kBlocks, kSize);
  const auto snapshot = tracemalloc::take_snapshot();
  for (char* b : blocks) delete[] b;
  std::size_t size = 0, count = 0;
  for (const auto& s : snapshot.statistics("lineno")) {
    if (!s.traceback.empty() && s.traceback.front().lineno == ts::kLargeLine &&
        test_tracemalloc_common::ends_with(s.traceback.front().filename,
                                           "tracemalloc_sampling.cpp")) {
      size += s.size;
      count += s.count;
    }
  }
  if (lines) {
    INFO("estimated " << size << " B in " << count << " blocks, bound " << bound);
    CHECK(ts::relative_error(size, kBlocks * kSize) < bound);
    CHECK(ts::relative_error(count, kBlocks) < bound);
  }
}

TEST_CASE("tracemalloc: a block much larger than sample_bytes is always traced at its size",
          "[tracemalloc]") {
  // p = 1 - exp(-64): 100 blocks are all sampled but with probability 1e-26, and each stands
  // for exactly its size.
  constexpr std::size_t kMean = 4096, kSize = 64 * kMean, kBlocks = 100;
  ts::Tracing tracing(1, {.sample_bytes = kMean});
  ts::track_blocks(ts::kLargeBase, kBlocks, kSize, 9);
  const auto snapshot = tracemalloc::take_snapshot();
  const auto during = tracemalloc::get_traced_memory();
  ts::untrack_blocks(ts::kLargeBase, kBlocks, 9);
  const auto after = tracemalloc::get_traced_memory();
  const auto totals = ts::totals_in(snapshot, 9);
  CHECK(totals.traces == kBlocks);
  CHECK(totals.size == kBlocks * kSize);
  CHECK(totals.count == kBlocks);
  CHECK(during.current - after.current == kBlocks * kSize);
}

TEST_CASE("tracemalloc: frees of sampled blocks bring current back down", "[tracemalloc]") {
  // Blocks of 8 KiB at a mean of 4 KiB: most are sampled, some not, and some of the frees are of
  // blocks that were never traced. What each sampled block added, its free subtracts exactly.
  constexpr std::size_t kBlocks = 5000;
  std::vector<char*> blocks;
  blocks.reserve(kBlocks);
  ts::Tracing tracing(1, {.sample_bytes = 4096});
  const auto before = tracemalloc::get_traced_memory();
  for (std::size_t i = 0; i < kBlocks; ++i) {
    blocks.push_back(new char[8192]);
    ts::escape(blocks.back());
  }
  const auto during = tracemalloc::get_traced_memory();
  for (char* b : blocks) delete[] b;
  const auto after = tracemalloc::get_traced_memory();
  const double truth = kBlocks * 8192.0;
  const double bound = ts::six_sigma(kBlocks, 8192, 4096);
  CHECK(std::abs(static_cast<double>(during.current - before.current) / truth - 1) < bound);
  CHECK(during.peak >= during.current);
  // Allocations of the test framework between the readings could be sampled too, each for
  // about 4 KiB: none is made, and the check is exact.
  CHECK(after.current == before.current);
}

TEST_CASE("tracemalloc: a sampled snapshot keeps its rate through dump and load", "[tracemalloc]") {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("memlens_ts_" + std::to_string(getpid()) + "_sampled.snap"))
                               .string();
  tracemalloc::Snapshot snapshot;
  {
    ts::Tracing tracing(1, {.sample_bytes = 65536});
    ts::track_blocks(ts::kSmallBase, 20000, 100, 7);
    snapshot = tracemalloc::take_snapshot();
    ts::untrack_blocks(ts::kSmallBase, 20000, 7);
  }
  snapshot.dump(path);
  const auto loaded = tracemalloc::Snapshot::load(path);
  std::filesystem::remove(path);
  CHECK(loaded.sample_bytes() == 65536);
  const auto a = ts::totals_in(snapshot, 7);
  const auto b = ts::totals_in(loaded, 7);
  CHECK(a.traces > 0);
  CHECK(b.traces == a.traces);
  CHECK(b.size == a.size);
  CHECK(b.count == a.count);
  // compare_to scales each side by its own rate: an exact snapshot of nothing, then this.
  const auto diffs = loaded.compare_to(tracemalloc::Snapshot(), "filename");
  std::ptrdiff_t grown = 0;
  for (const auto& d : loaded.filter_traces({tracemalloc::DomainFilter(true, 7)})
                           .compare_to(tracemalloc::Snapshot(), "filename")) {
    grown += d.size_diff;
  }
  CHECK(static_cast<std::size_t>(grown) == a.size);
  CHECK_FALSE(diffs.empty());
}

TEST_CASE("tracemalloc: sample_bytes is checked and kept while tracing", "[tracemalloc]") {
  tracemalloc::stop();
  CHECK(tracemalloc::get_sample_bytes() == 0);
  const std::size_t too_large = tracemalloc::TraceOptions::max_sample_bytes + 1;
  CHECK_THROWS_AS(tracemalloc::start(1, {.sample_bytes = too_large}), memlens::ValueError);
  CHECK_THROWS_WITH(
      tracemalloc::start(1, {.sample_bytes = too_large}),
      memlens_test::contains("sample_bytes") && memlens_test::contains(std::to_string(too_large)));
  CHECK_FALSE(tracemalloc::is_tracing());
  {
    ts::Tracing tracing(3, {.sample_bytes = 1000});
    CHECK(tracemalloc::get_sample_bytes() == 1000);
    // As Python: starting again while tracing changes nothing, neither limit nor rate.
    tracemalloc::start(5, {.sample_bytes = 0});
    tracemalloc::start(5);
    CHECK(tracemalloc::get_sample_bytes() == 1000);
    CHECK(tracemalloc::get_traceback_limit() == 3);
    CHECK(tracemalloc::take_snapshot().sample_bytes() == 1000);
    // The arguments are checked all the same.
    CHECK_THROWS_AS(tracemalloc::start(1, {.sample_bytes = too_large}), memlens::ValueError);
    CHECK(tracemalloc::get_sample_bytes() == 1000);
    // clear_traces keeps the rate.
    tracemalloc::clear_traces();
    CHECK(tracemalloc::get_sample_bytes() == 1000);
  }
  CHECK(tracemalloc::get_sample_bytes() == 0);
  CHECK(tracemalloc::is_hooked());  // start()'s probe is seen while sampling too
}

TEST_CASE("tracemalloc: sampling from four threads estimates their total and sees every free",
          "[threads][tracemalloc]") {
  // 4 threads x 250000 blocks of 4 KiB at a mean of 512 KiB: about 7800 sampled. The main thread
  // frees them all, so the frees of other threads' sampled blocks must pass the filter.
  constexpr int kThreads = 4;
  constexpr std::size_t kBlocks = 250'000, kSize = 4096;
  const double bound = ts::six_sigma(kThreads * kBlocks, kSize, ts::kMean);
  REQUIRE(bound < 0.08);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> go{0};
  tracemalloc::stop();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &go] {
      while (go.load() == 0) std::this_thread::yield();
      ts::track_blocks(ts::kSmallBase + static_cast<std::uintptr_t>(t) * (kBlocks * 16), kBlocks,
                       kSize, 10);
    });
  }
  ts::Tracing tracing(1, {.sample_bytes = ts::kMean});
  go.store(1);
  for (auto& thread : threads) thread.join();
  const auto totals = ts::totals_in(tracemalloc::take_snapshot(), 10);
  ts::untrack_blocks(ts::kSmallBase, kThreads * kBlocks, 10);
  const auto left = ts::totals_in(tracemalloc::take_snapshot(), 10);
  INFO("estimated " << totals.size << " B from " << totals.traces << " sampled, bound " << bound);
  CHECK(ts::relative_error(totals.size, kThreads * kBlocks * kSize) < bound);
  CHECK(ts::relative_error(totals.count, kThreads * kBlocks) < bound);
  CHECK(left.traces == 0);
}
