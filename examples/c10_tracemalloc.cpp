// Seed challenge 10: investigate memory use with tracemalloc.
//   tracemalloc.start()
//   lst = [i for i in range(10000)]
//   current, peak = tracemalloc.get_traced_memory()
//   print(f"Current: {current} bytes; Peak: {peak} bytes")
//   tracemalloc.stop()
// memlens/track_new.hpp routes this program's operator new through the tracer; build with -g
// (and frame pointers) so the statistics name files and lines.
#include <fmt/format.h>

#include <memlens/format.hpp>
#include <memlens/tracemalloc.hpp>
#include <memlens/track_new.hpp>
#include <memory>
#include <vector>

namespace tracemalloc = memlens::tracemalloc;

int main() {
  tracemalloc::start();

  std::vector<int> lst;
  for (int i = 0; i < 10000; ++i) lst.push_back(i);

  auto [current, peak] = tracemalloc::get_traced_memory();
  fmt::print("Current: {} bytes; Peak: {} bytes\n", current, peak);

  // Python's list holds int objects; a list of boxed ints costs one allocation per element.
  std::vector<std::unique_ptr<long long>> boxes;
  for (long long i = 0; i < 10000; ++i) boxes.push_back(std::make_unique<long long>(i));
  auto with_boxes = tracemalloc::get_traced_memory();
  fmt::print("With a list of 10,000 boxed ints too: Current: {} bytes; Peak: {} bytes\n",
             with_boxes.current, with_boxes.peak);

  fmt::print("\nTop allocations by line:\n");
  auto snapshot = tracemalloc::take_snapshot();
  for (const auto& stat : snapshot.statistics("lineno")) fmt::print("  {}\n", stat);

  tracemalloc::stop();
  auto after = tracemalloc::get_traced_memory();
  fmt::print("\nAfter stop(): Current: {} bytes; Peak: {} bytes\n", after.current, after.peak);
  return 0;
}
