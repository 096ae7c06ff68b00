// Shared by the benchmarks that read a child process's report: a flat JSON object per line.
#pragma once

#include <fmt/core.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace memlens_bench {

/// The value of `"key": ...` in a flat JSON object of strings and numbers (no nesting, no
/// escaped quotes), which needs no JSON library.
inline std::optional<std::string> json_field(std::string_view line, std::string_view key) {
  const std::string quoted_key = fmt::format("\"{}\": ", key);
  const auto at = line.find(quoted_key);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view value = line.substr(at + quoted_key.size());
  if (value.starts_with('"')) {
    value.remove_prefix(1);
    return std::string(value.substr(0, value.find('"')));
  }
  return std::string(value.substr(0, value.find_first_of(",}")));
}

/// The number `"key": ...` gives, or nullopt if the key is missing or not a number.
inline std::optional<double> json_number(std::string_view line, std::string_view key) {
  const auto text = json_field(line, key);
  if (!text) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text->c_str(), &end);
  return end == text->c_str() ? std::nullopt : std::optional(value);
}

}  // namespace memlens_bench
