// Seed exercise 15: a profiling tool that tracks allocations by type and by line, finds leaks,
// compares snapshots over time, suggests what to change, and writes a report with graphs.
//   profiler = AdvancedMemoryProfiler(); profiler.start()
//   profiler.take_snapshot("Initial")
//   data = []
//   for i in range(100):
//       data.append([j for j in range(10000)])
//       if i % 20 == 0: profiler.take_snapshot(f"Iteration {i}")
//   profiler.stop()
//   growth = profiler.analyze_growth(); leaks = profiler.detect_leaks()
//   suggestions = profiler.suggest_optimizations()
//   profiler.generate_report("memory_report.html"); profiler.plot_memory_timeline()
// Python's lists are objects with a type: here each row is a memlens object too (a boxed
// std::vector<int>), so the profiler counts them by type as well as by line. Writes
// memory_report.html and memory_timeline.svg in the working directory.
#include <fmt/format.h>

#include <memlens/memlens.hpp>
#include <memlens/track_new.hpp>
#include <vector>

int main() {
  memlens::AdvancedMemoryProfiler profiler;
  profiler.start();
  profiler.take_snapshot("Initial");

  std::vector<memlens::Ref<std::vector<int>>> data;
  for (int i = 0; i < 100; ++i) {
    auto row = memlens::make<std::vector<int>>();  // [j for j in range(10000)]
    for (int j = 0; j < 10000; ++j) row->push_back(j);
    data.push_back(row);
    if (i % 20 == 0) profiler.take_snapshot(fmt::format("Iteration {}", i));
  }
  profiler.stop();

  fmt::print("Timeline ({} points): {}\n\n", profiler.timeline().size(), profiler.sparkline(60));

  fmt::print("analyze_growth(), largest first:\n");
  const auto growth = profiler.analyze_growth();
  for (std::size_t i = 0; i < growth.size() && i < 5; ++i) fmt::print("  {}\n", growth[i]);

  fmt::print("\ndetect_leaks():\n");
  for (const auto& leak : profiler.detect_leaks()) {
    fmt::print("{}", memlens::MemoryLeakDetector::format_leak(leak));
  }

  fmt::print("\nsuggest_optimizations(), largest saving first:\n");
  for (const auto& s : profiler.suggest_optimizations()) fmt::print("  {}\n", s);

  profiler.generate_report("memory_report.html");
  profiler.plot_memory_timeline("memory_timeline.svg");
  fmt::print("\nWrote memory_report.html and memory_timeline.svg ({} rows of {} ints held)\n",
             data.size(), data.empty() ? 0 : data.front()->size());
  return 0;
}
