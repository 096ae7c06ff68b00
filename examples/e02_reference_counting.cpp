// Seed exercise 2: how operations change an object's reference count.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memlens/memlens.hpp>
#include <vector>

#include "track_references.hpp"

int main() {
  auto data = memlens::make<std::vector<int>>(std::vector<int>{1, 2, 3});
  const auto history = memlens_examples::track_references(data);

  fmt::print("track_references(data), data = {}\n\n", *data);
  fmt::print("{:<42} {:>9}\n", "operation", "refcount");
  fmt::print("{:-<42} {:->9}\n", "", "");
  for (const auto& [operation, count] : history) fmt::print("{:<42} {:>9}\n", operation, count);

  memlens::Weak<std::vector<int>> probe = data;
  data.reset();
  fmt::print("{:<42} {:>9}  (the object is {})\n", "deleted the caller's reference",
             memlens::sys::getrefcount(data), probe.expired() ? "gone" : "alive");
  return 0;
}
