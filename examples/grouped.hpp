// The examples' number format: digits grouped by thousands, as their tables print them.
#pragma once

#include <cstddef>
#include <string>

namespace memlens_examples {

/// 36056 as "36,056".
inline std::string grouped(std::size_t n) {
  std::string digits = std::to_string(n);
  for (auto i = static_cast<std::ptrdiff_t>(digits.size()) - 3; i > 0; i -= 3) {
    digits.insert(static_cast<std::size_t>(i), ",");
  }
  return digits;
}

}  // namespace memlens_examples
