// Seed exercise 9: a memory profiler that finds the lines holding memory and how it grew.
//   profiler = MemoryProfiler()
//   profiler.start()
//   data1 = [i for i in range(100000)]
//   profiler.snapshot("After list")
//   data2 = {i: str(i) for i in range(50000)}
//   profiler.snapshot("After dict")
//   report = profiler.stop()
// memlens::MemoryProfiler does the same over memlens::tracemalloc; track_new.hpp traces `new`.
#include <fmt/format.h>

#include <map>
#include <memlens/format.hpp>
#include <memlens/tools/memory_profiler.hpp>
#include <memlens/track_new.hpp>
#include <string>
#include <vector>

int main() {
  memlens::MemoryProfiler profiler;
  profiler.start();

  std::vector<int> data1;
  for (int i = 0; i < 100000; ++i) data1.push_back(i);
  profiler.snapshot("After list");

  std::map<int, std::string> data2;
  for (int i = 0; i < 50000; ++i) data2.emplace(i, std::to_string(i));
  profiler.snapshot("After dict");

  fmt::print("The lines holding the most memory:\n");
  for (const auto& stat : profiler.top_allocations(3)) fmt::print("  {}\n", stat);

  fmt::print("\nWhat grew from \"After list\" to \"After dict\":\n");
  for (const auto& diff : profiler.growth("After list", "After dict", 3)) {
    fmt::print("  {}\n", diff);
  }

  auto report = profiler.stop();
  fmt::print("\n{}", report);
  fmt::print("\n(data1 holds {} ints, data2 {} entries)\n", data1.size(), data2.size());
  return 0;
}
