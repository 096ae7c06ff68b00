// Seed exercise 5: a decorator that tracks and reports the memory use of a function.
//   @memory_tracker
//   def create_large_list(): return [i for i in range(1000000)]
//   result = create_large_list()  # prints memory usage statistics
// memlens::memory_tracker wraps any callable; MemoryTrackerScope does the same for a scope.
#include <fmt/format.h>

#include <memlens/tools/memory_tracker.hpp>
#include <memlens/track_new.hpp>
#include <stdexcept>
#include <string>
#include <vector>

std::vector<int> create_large_list() {
  std::vector<int> v;
  for (int i = 0; i < 1000000; ++i) v.push_back(i);
  return v;
}

int main() {
  // Reports go to stderr by default; this example prints them on stdout with the rest.
  auto to_stdout = [](const memlens::MemoryUsage& u) {
    fmt::print("  {}\n", memlens::to_string(u));
  };

  fmt::print("create_large_list():\n");
  auto tracked = memlens::memory_tracker(create_large_list, to_stdout, "create_large_list");
  auto result = tracked();
  fmt::print("  got {} elements\n", result.size());

  fmt::print("\nA function that throws is reported, then the exception propagates:\n");
  auto failing = memlens::memory_tracker(
      [](std::size_t n) {
        std::vector<char> buffer(n);
        throw std::runtime_error("parse error after " + std::to_string(buffer.size()) + " bytes");
      },
      to_stdout, "parse");
  try {
    failing(std::size_t{50000});
  } catch (const std::exception& e) {
    fmt::print("  caught: {}\n", e.what());
  }

  fmt::print("\nAs a scope guard:\n");
  {
    memlens::MemoryTrackerScope scope("block", to_stdout);
    std::string text(100000, 'x');
    std::vector<std::string> copies(3, text);
  }
  return 0;
}
