// memlens: fmt formatters for memlens::tracemalloc's types, printing as Python's str():
// Frame `file:line`, Traceback its most recent frame, Trace `file:line: 1.5 KiB`, Statistic
// `file:line: size=1.5 KiB, count=3, average=512 B`, StatisticDiff with the changes in
// parentheses. Meant to be included by memlens/format.hpp.
#pragma once

#include <fmt/format.h>

#include <string>

#include "memlens/tracemalloc.hpp"

namespace memlens::detail {

template <class T>
struct TracemallocFormatter : fmt::formatter<std::string> {
  template <class Context>
  auto format(const T& value, Context& ctx) const {
    return fmt::formatter<std::string>::format(memlens::tracemalloc::to_string(value), ctx);
  }
};

}  // namespace memlens::detail

template <>
struct fmt::formatter<memlens::tracemalloc::Frame>
    : memlens::detail::TracemallocFormatter<memlens::tracemalloc::Frame> {};
template <>
struct fmt::formatter<memlens::tracemalloc::Traceback>
    : memlens::detail::TracemallocFormatter<memlens::tracemalloc::Traceback> {};
template <>
struct fmt::formatter<memlens::tracemalloc::Trace>
    : memlens::detail::TracemallocFormatter<memlens::tracemalloc::Trace> {};
template <>
struct fmt::formatter<memlens::tracemalloc::Statistic>
    : memlens::detail::TracemallocFormatter<memlens::tracemalloc::Statistic> {};
template <>
struct fmt::formatter<memlens::tracemalloc::StatisticDiff>
    : memlens::detail::TracemallocFormatter<memlens::tracemalloc::StatisticDiff> {};
