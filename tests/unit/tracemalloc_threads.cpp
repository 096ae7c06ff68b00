// memlens::tracemalloc from several threads at once: every allocation is counted exactly.
// .ci/run runs the [threads] tests under ThreadSanitizer.
#include <atomic>
#include <cstddef>
#include <memlens/tracemalloc.hpp>
#include <thread>
#include <vector>

#include "memlens_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

namespace test_tracemalloc_threads {

constexpr int kThreads = 4;
constexpr int kBlocks = 2000;
/// Addresses the threads track() as if a custom allocator had handed them out.
char fake[kThreads][kBlocks];

/// Thread t allocates blocks of 8 * (t + 1) + i % 7 bytes and frees every other one, then
/// tracks and untracks fake addresses in its own domain.
void work(int t, std::vector<char*>& kept, std::atomic<int>& ready) {
  while (ready.load() < 1) std::this_thread::yield();
  for (int i = 0; i < kBlocks; ++i) {
    char* block = new char[static_cast<std::size_t>(8 * (t + 1) + i % 7)];
    if (i % 2 == 0) {
      kept.push_back(block);
    } else {
      delete[] block;
    }
  }
  for (int i = 0; i < kBlocks; ++i)
    tracemalloc::track(fake[t] + i, 3, 100 + static_cast<unsigned>(t));
  for (int i = 0; i < kBlocks; i += 2)
    tracemalloc::untrack(fake[t] + i, 100 + static_cast<unsigned>(t));
}

std::size_t expected_kept(int t) {
  std::size_t total = 0;
  for (int i = 0; i < kBlocks; i += 2) total += static_cast<std::size_t>(8 * (t + 1) + i % 7);
  return total;
}

}  // namespace test_tracemalloc_threads

TEST_CASE("tracemalloc: allocations from four threads are counted exactly",
          "[threads][tracemalloc]") {
  using namespace test_tracemalloc_threads;
  std::vector<std::vector<char*>> kept(kThreads);
  for (auto& k : kept) k.reserve(kBlocks);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::atomic<int> ready{0};

  // The threads exist before tracing starts: what creating a thread allocates (under clang's
  // sanitizers even the C library's mallocs are traced) stays out of the totals.
  tracemalloc::stop();
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back(work, t, std::ref(kept[t]), std::ref(ready));
  tracemalloc::start(4);
  auto base = tracemalloc::get_traced_memory().current;
  ready.store(1);
  for (auto& th : threads) th.join();
  auto [current, peak] = tracemalloc::get_traced_memory();

  std::size_t expected = 0;
  for (int t = 0; t < kThreads; ++t) expected += expected_kept(t) + 3 * (kBlocks / 2);
  CHECK(current == base + expected);
  CHECK(peak >= current);

  {
    auto snapshot = tracemalloc::take_snapshot();
    for (int t = 0; t < kThreads; ++t) {
      auto domain =
          snapshot.filter_traces({tracemalloc::DomainFilter(true, 100 + static_cast<unsigned>(t))});
      CHECK(domain.traces().size() == kBlocks / 2);
    }
  }
  for (auto& k : kept) {
    for (char* b : k) delete[] b;
  }
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 1; i < kBlocks; i += 2)
      tracemalloc::untrack(fake[t] + i, 100 + static_cast<unsigned>(t));
  }
  CHECK(tracemalloc::get_traced_memory().current == base);
  tracemalloc::stop();
}

TEST_CASE("tracemalloc: start and stop while other threads allocate", "[threads][tracemalloc]") {
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&done] {
      while (!done.load()) {
        std::vector<int> v(100);
        v.push_back(1);
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    tracemalloc::start(2);
    tracemalloc::get_traced_memory();
    if (round % 10 == 0) tracemalloc::take_snapshot().statistics("traceback");
    tracemalloc::stop();
  }
  done.store(true);
  for (auto& th : threads) th.join();
  CHECK(tracemalloc::get_traced_memory().current == 0);
  CHECK_FALSE(tracemalloc::is_tracing());
}
