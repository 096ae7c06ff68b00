// What the AdvancedMemoryProfiler's sampler thread costs the program it watches: the same
// allocation-heavy workload (strings, vectors and memlens objects made and dropped, every
// allocation traced) runs under a profiler without a sampler and under one sampling every
// 10 ms, alternately within each iteration (the order swapped every other iteration), so both
// meet the same load from the rest of the machine. The counters `wall_overhead_pct` and
// `cpu_overhead_pct` are the extra time with the sampler over all iterations of this one run,
// (on / off - 1) * 100, in wall time and in the process's CPU time.
// The profilers' start and stop (a baseline snapshot, the leak search) are not timed.

#include <benchmark/benchmark.h>

#include <time.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "memlens/object.hpp"
#include "memlens/tools/advanced_memory_profiler.hpp"
#include "memlens/track_new.hpp"  // every allocation of the workload is traced

namespace sampler_bench {

struct Node : memlens::Object {
  explicit Node(int v) : value(v) {}
  int value;
};

/// About 50 ms of allocation on this kind of machine: 20 rounds of 5,000 strings, 5,000 small
/// vectors and 5,000 objects, made and dropped.
std::size_t workload() {
  std::size_t sum = 0;
  for (int round = 0; round < 20; ++round) {
    std::vector<std::string> strings;
    std::vector<std::vector<int>> vectors;
    std::vector<memlens::Ref<Node>> nodes;
    for (int i = 0; i < 5000; ++i) {
      strings.push_back("a string long enough for the heap " + std::to_string(i));
      vectors.emplace_back(static_cast<std::size_t>(i % 32 + 1), i);
      nodes.push_back(memlens::make<Node>(i));
    }
    for (const auto& s : strings) sum += s.size();
    for (const auto& n : nodes) sum += static_cast<std::size_t>(n->value);
  }
  return sum;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

struct Times {
  double wall = 0;
  double cpu = 0;  // of the whole process: the sampler thread's work included
};

/// The workload's times under a profiler with `interval` (zero: no sampler thread).
Times timed_run(std::chrono::nanoseconds interval) {
  memlens::AdvancedMemoryProfiler profiler(
      {.nframe = 16, .sample_interval = interval, .collect_first = false});
  profiler.start();
  const double cpu_start = process_cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  benchmark::DoNotOptimize(workload());
  const auto end = std::chrono::steady_clock::now();
  const double cpu_end = process_cpu_seconds();
  profiler.stop();
  return {std::chrono::duration<double>(end - start).count(), cpu_end - cpu_start};
}

/// Wall time is the user's view, and the figure to read on an idle machine. On a loaded one,
/// each wakeup of the sampler may hand the CPU to another process for a whole time slice: the
/// process's CPU time, which counts the sampler's own work and any slowdown it causes the
/// workload, is the figure that does not depend on the rest of the machine.
void BM_SamplerOverhead(benchmark::State& state) {
  const std::chrono::nanoseconds interval = std::chrono::milliseconds(state.range(0));
  Times off, on;
  bool sampler_first = false;
  auto add = [](Times& sum, Times t) {
    sum.wall += t.wall;
    sum.cpu += t.cpu;
  };
  for (auto _ : state) {
    if (sampler_first) add(on, timed_run(interval));
    add(off, timed_run(std::chrono::nanoseconds::zero()));
    if (!sampler_first) add(on, timed_run(interval));
    sampler_first = !sampler_first;
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["off_ms"] = off.wall * 1e3 / n;
  state.counters["on_ms"] = on.wall * 1e3 / n;
  state.counters["wall_overhead_pct"] = (on.wall / off.wall - 1) * 100;
  state.counters["cpu_overhead_pct"] = (on.cpu / off.cpu - 1) * 100;
}
BENCHMARK(BM_SamplerOverhead)->Arg(10)->Iterations(30)->Unit(benchmark::kMillisecond);

}  // namespace sampler_bench

BENCHMARK_MAIN();
