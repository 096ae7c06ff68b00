// memlens: seed exercise 5, "track memory usage": Python's memory_tracker decorator over
// memlens::tracemalloc, as a callable wrapper and as a scope guard.
#pragma once

#include <cstddef>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "memlens/tracemalloc.hpp"

namespace memlens {

/// What memory_tracker reports after each call (or MemoryTrackerScope at its end).
struct MemoryUsage {
  /// The name given to the tracker ("" when none was).
  std::string name;
  /// Traced bytes still allocated after the call minus those before it (what the call kept,
  /// negative when it freed more than it allocated).
  std::ptrdiff_t current = 0;
  /// The highest traced size during the call, above the size at its start.
  std::size_t peak = 0;
  /// Whether the call ended with an exception (the report comes before it propagates).
  bool raised = false;
  /// The exception's what(), when it derives from std::exception and is known.
  std::string error;
};

/// Where reports go.
using MemoryReportSink = std::function<void(const MemoryUsage&)>;

/// `name: current=400000 bytes, peak=400000 bytes` (+ `, raised: what`).
inline std::string to_string(const MemoryUsage& u) {
  std::string text = (u.name.empty() ? std::string("memory_tracker") : u.name) +
                     ": current=" + std::to_string(u.current) +
                     " bytes, peak=" + std::to_string(u.peak) + " bytes";
  if (u.raised) text += u.error.empty() ? std::string(", raised") : ", raised: " + u.error;
  return text;
}

/// The default sink: one line on stderr.
inline void print_memory_usage(const MemoryUsage& u) {
  std::fprintf(stderr, "%s\n", to_string(u).c_str());
}

namespace detail {

/// Measures one call: starts tracemalloc if it was off (and stops it after), else measures
/// from the current level and gives the outer measurement its peak back.
class MemoryMeasurement {
 public:
  MemoryMeasurement() : started_(!tracemalloc::is_tracing()) {
    if (started_) {
      tracemalloc::start();
    }
    auto [current, peak] = tracemalloc::get_traced_memory();
    start_current_ = current;
    outer_peak_ = peak;
    tracemalloc::reset_peak();
  }

  MemoryUsage finish() {
    MemoryUsage usage;
    auto [current, peak] = tracemalloc::get_traced_memory();
    usage.current =
        static_cast<std::ptrdiff_t>(current) - static_cast<std::ptrdiff_t>(start_current_);
    usage.peak = peak > start_current_ ? peak - start_current_ : 0;
    if (started_) {
      tracemalloc::stop();
    } else {
      tracemalloc::detail::raise_peak(outer_peak_);
    }
    return usage;
  }

 private:
  bool started_;
  std::size_t start_current_ = 0;
  std::size_t outer_peak_ = 0;
};

}  // namespace detail

/**
 * Python's memory_tracker decorator: a callable that calls `f` with its arguments and, after
 * each call, reports the traced memory it kept and its peak to `sink` (default: stderr). When
 * `f` throws, the report says so and the exception propagates. Allocations are seen through
 * memlens/track_new.hpp (or tracemalloc::Allocator / TracingResource).
 *
 * ```cpp
 * auto create_large_list = memlens::memory_tracker([] {
 *   std::vector<int> v(1'000'000);
 *   return v;
 * }, {}, "create_large_list");
 * auto result = create_large_list();  // create_large_list: current=4000000 bytes, peak=...
 * ```
 */
template <class F>
class MemoryTracked {
 public:
  MemoryTracked(F f, MemoryReportSink sink, std::string name)
      : f_(std::move(f)),
        sink_(sink ? std::move(sink) : MemoryReportSink(print_memory_usage)),
        name_(std::move(name)) {}

  template <class... Args>
  decltype(auto) operator()(Args&&... args) {
    detail::MemoryMeasurement measurement;
    using Result = std::invoke_result_t<F&, Args&&...>;
    auto call = [&]() -> Result { return std::invoke(f_, std::forward<Args>(args)...); };
    if constexpr (std::is_void_v<Result>) {
      call_reporting_errors(measurement, call);
      report(measurement.finish());
    } else {
      Result result = call_reporting_errors(measurement, call);
      report(measurement.finish());
      return result;
    }
  }

 private:
  template <class Call>
  decltype(auto) call_reporting_errors(detail::MemoryMeasurement& measurement, Call& call) {
    try {
      return call();
    } catch (const std::exception& e) {
      report_raised(measurement, e.what());
      throw;
    } catch (...) {  // reported, then rethrown: nothing is swallowed
      report_raised(measurement, {});
      throw;
    }
  }
  void report(MemoryUsage usage) {
    usage.name = name_;
    sink_(usage);
  }
  void report_raised(detail::MemoryMeasurement& measurement, std::string error) {
    MemoryUsage usage = measurement.finish();
    usage.raised = true;
    usage.error = std::move(error);
    report(std::move(usage));
  }

  F f_;
  MemoryReportSink sink_;
  std::string name_;
};

/// Wraps `f` (see MemoryTracked). An empty `sink` means stderr.
template <class F>
MemoryTracked<std::decay_t<F>> memory_tracker(F&& f, MemoryReportSink sink = {},
                                              std::string name = {}) {
  return MemoryTracked<std::decay_t<F>>(std::forward<F>(f), std::move(sink), std::move(name));
}

/**
 * memory_tracker as a scope guard: reports the memory kept and the peak of its scope when it
 * ends, with `raised` set when the scope is left by an exception. The sink must not throw.
 *
 * ```cpp
 * {
 *   memlens::MemoryTrackerScope scope("load");
 *   load_everything();
 * }  // load: current=... bytes, peak=... bytes
 * ```
 */
class MemoryTrackerScope {
 public:
  explicit MemoryTrackerScope(std::string name = {}, MemoryReportSink sink = {})
      : name_(std::move(name)),
        sink_(sink ? std::move(sink) : MemoryReportSink(print_memory_usage)),
        exceptions_(std::uncaught_exceptions()) {}
  ~MemoryTrackerScope() {
    MemoryUsage usage = measurement_.finish();
    usage.name = std::move(name_);
    usage.raised = std::uncaught_exceptions() > exceptions_;
    sink_(usage);
  }
  MemoryTrackerScope(const MemoryTrackerScope&) = delete;
  MemoryTrackerScope& operator=(const MemoryTrackerScope&) = delete;

 private:
  std::string name_;
  MemoryReportSink sink_;
  int exceptions_;
  detail::MemoryMeasurement measurement_;
};

}  // namespace memlens
