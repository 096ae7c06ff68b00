// memlens: seed exercise 9, "create memory profiler": labelled tracemalloc snapshots, the lines
// that hold the most memory, how memory grew from one label to the next, and a summary report.
#pragma once

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memlens/detail/trace_core.hpp"
#include "memlens/errors.hpp"
#include "memlens/sys.hpp"
#include "memlens/tracemalloc.hpp"

namespace memlens {

/// One labelled moment of a profile, as MemoryProfiler::snapshot recorded it.
struct ProfileSnapshot {
  /// The label given to snapshot().
  std::string label;
  /// The traces of the live allocations at that moment.
  tracemalloc::Snapshot snapshot;
  /// Traced bytes at that moment (the sum of the snapshot's traces).
  std::size_t current = 0;
  /// The highest traced size between MemoryProfiler::start and that moment.
  std::size_t peak = 0;
  /// When the snapshot was taken.
  std::chrono::steady_clock::time_point time;
  /// The live memlens objects by type at that moment (sys::type_stats).
  std::vector<sys::TypeStats> types;
  /// The process's resident set size at that moment, in bytes (0 where the system does not
  /// tell).
  std::size_t rss = 0;
};

/// How memory changed up to one labelled snapshot: a step of MemoryProfiler::growth_over_time.
struct GrowthStep {
  /// The snapshot's label.
  std::string label;
  /// Traced bytes at the snapshot.
  std::size_t current = 0;
  /// `current` minus that of the snapshot before (for the first, minus the bytes at start()).
  std::ptrdiff_t delta = 0;
  /// The highest traced size between start() and the snapshot.
  std::size_t peak = 0;
  /// Time from start() to the snapshot.
  std::chrono::nanoseconds elapsed{0};
  /// The lines whose memory changed during the step, largest change first (unchanged lines are
  /// left out).
  std::vector<tracemalloc::StatisticDiff> top_growth;
};

/// What MemoryProfiler::stop returns: the summary of one profile.
struct MemoryProfileReport {
  /// The lines holding the most memory at the last snapshot, largest first (empty when no
  /// snapshot was taken).
  std::vector<tracemalloc::Statistic> top_allocations;
  /// The label of the snapshot `top_allocations` comes from ("" when none was taken).
  std::string top_label;
  /// One step per snapshot, in the order they were taken.
  std::vector<GrowthStep> growth;
  /// Traced bytes when start() was called (other than 0 when tracing was already on).
  std::size_t start_current = 0;
  /// Traced bytes when stop() was called.
  std::size_t current = 0;
  /// The highest traced size between start() and stop().
  std::size_t peak = 0;
  /// Time from start() to stop().
  std::chrono::nanoseconds duration{0};
};

namespace detail {

inline std::string format_bytes(std::size_t size) {
  return tracemalloc::detail::format_size(static_cast<double>(size), false);
}

inline std::string format_delta(std::ptrdiff_t delta) {
  return tracemalloc::detail::format_size(static_cast<double>(delta), true);
}

/// The resident set size of this process in bytes, from /proc/self/statm; 0 where there is
/// none. Allocates nothing, so a sampler thread may call it while tracing is on.
inline std::size_t resident_bytes() noexcept {
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // "size resident shared text lib data dt", in pages.
  const char* p = buf;
  while (*p != '\0' && *p != ' ') ++p;
  std::size_t pages = 0;
  for (++p; *p >= '0' && *p <= '9'; ++p) pages = pages * 10 + static_cast<std::size_t>(*p - '0');
  const long page = ::sysconf(_SC_PAGESIZE);
  return page > 0 ? pages * static_cast<std::size_t>(page) : 0;
}

inline std::string format_milliseconds(std::chrono::nanoseconds time) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f ms",
                std::chrono::duration<double, std::milli>(time).count());
  return buf;
}

}  // namespace detail

/// `"After dict": 3.8 MiB (+3.4 MiB), peak 3.8 MiB, at 12.5 ms`.
inline std::string to_string(const GrowthStep& step) {
  return "\"" + step.label + "\": " + detail::format_bytes(step.current) + " (" +
         detail::format_delta(step.delta) + "), peak " + detail::format_bytes(step.peak) + ", at " +
         detail::format_milliseconds(step.elapsed);
}

/**
 * The report as text: the top lines at the last snapshot, each step of growth with the lines
 * that changed most during it, and the peak:
 *
 * ```text
 * Memory profile: 2 snapshots in 15.2 ms; peak 3.8 MiB, 3.8 MiB at stop (0 B at start)
 * Top 2 lines at "After dict":
 *   #1 main.cpp:18: size=3.4 MiB, count=50000, average=72 B
 *   #2 main.cpp:15: size=391 KiB, count=1, average=391 KiB
 * Growth:
 *   "After list": 391 KiB (+391 KiB), peak 391 KiB, at 0.4 ms
 *     main.cpp:15: size=391 KiB (+391 KiB), count=1 (+1), average=391 KiB
 *   ...
 * ```
 */
inline std::string to_string(const MemoryProfileReport& report) {
  std::string text = "Memory profile: " + std::to_string(report.growth.size()) +
                     (report.growth.size() == 1 ? " snapshot" : " snapshots") + " in " +
                     detail::format_milliseconds(report.duration) + "; peak " +
                     detail::format_bytes(report.peak) + ", " +
                     detail::format_bytes(report.current) + " at stop (" +
                     detail::format_bytes(report.start_current) + " at start)\n";
  if (report.growth.empty()) {
    return text + "No snapshot was taken: call snapshot(label) before stop() to see lines.\n";
  }
  text += (report.top_allocations.size() == 1
               ? std::string("Top line")
               : "Top " + std::to_string(report.top_allocations.size()) + " lines") +
          " at \"" + report.top_label + "\":\n";
  for (std::size_t i = 0; i < report.top_allocations.size(); ++i) {
    text += "  #" + std::to_string(i + 1) + " " +
            tracemalloc::to_string(report.top_allocations[i]) + "\n";
  }
  text += "Growth:\n";
  for (const GrowthStep& step : report.growth) {
    text += "  " + to_string(step) + "\n";
    for (const auto& diff : step.top_growth) text += "    " + tracemalloc::to_string(diff) + "\n";
  }
  return text;
}

/**
 * Python's memory profiler of seed exercise 9 over memlens::tracemalloc: start(), labelled
 * snapshot()s, and stop() for a report; in between, top_allocations() and growth() answer
 * "which lines hold the memory" and "which lines grew". Allocations are seen through
 * memlens/track_new.hpp (or tracemalloc::Allocator / TracingResource).
 *
 * The profiler's own data (its snapshots, labels and results) is the tracer's memory, as
 * tracemalloc's tables are: never traced, so profiling does not change what it measures. Each
 * snapshot holds a copy of the traces until the next start() or the profiler's end.
 * Not thread-safe: one thread drives a profiler; allocations on every thread are traced.
 *
 * ```cpp
 * memlens::MemoryProfiler profiler;
 * profiler.start();
 * std::vector<int> data1(100000);
 * profiler.snapshot("After list");
 * std::map<int, std::string> data2 = build_map();
 * profiler.snapshot("After dict");
 * fmt::print("{}", profiler.stop());
 * ```
 */
class MemoryProfiler {
 public:
  /// Changes shown per step of growth_over_time() in stop()'s report.
  static constexpr std::size_t report_lines_per_step = 3;

  MemoryProfiler() = default;
  /// Stops tracing if start() started it, as stop() would, without a report.
  ~MemoryProfiler() {
    if (state_ == State::running) end_tracing();
  }
  MemoryProfiler(const MemoryProfiler&) = delete;
  MemoryProfiler& operator=(const MemoryProfiler&) = delete;

  /**
   * Starts a profile, forgetting the snapshots of any earlier one. Starts tracemalloc with
   * `nframe` frames per traceback and `options` (sampled tracing) if it is off (and stop() will
   * stop it); if it is on, keeps its settings and leaves it on. Throws memlens::Error when already running and ValueError
   * when `nframe` is outside [1; 256].
   */
  void start(int nframe = 1, tracemalloc::TraceOptions options = {}) {
    if (state_ == State::running) {
      throw Error("MemoryProfiler: start() called twice: the profiler is already running");
    }
    if (nframe < 1 || nframe > memlens::detail::trace::max_nframe) {
      throw ValueError("MemoryProfiler: the number of frames must be in range [1; " +
                       std::to_string(memlens::detail::trace::max_nframe) + "], got " +
                       std::to_string(nframe));
    }
    // Outside any tracer scope: this may free blocks that were traced (a snapshot's tracebacks
    // symbolized by a caller), and the tracer must see those frees (see UntracedScope).
    snapshots_.clear();
    baseline_.reset();

    started_tracing_ = !tracemalloc::is_tracing();
    if (started_tracing_) tracemalloc::start(nframe, options);
    auto [current, peak] = tracemalloc::get_traced_memory();
    outer_peak_ = peak;
    // The profile's peak is the peak since start(); the outer one is given back at the end.
    tracemalloc::reset_peak();
    start_current_ = current;
    try {
      UntracedScope scope;
      baseline_ = tracemalloc::take_snapshot();
    } catch (...) {  // not running yet, so the destructor would leave tracing on
      end_tracing();
      throw;
    }
    start_time_ = std::chrono::steady_clock::now();
    state_ = State::running;
  }

  /**
   * Takes a tracemalloc snapshot named `label` and records the traced bytes, the peak, the
   * time, the live objects by type and the resident set size; returns the record. Throws
   * memlens::Error when the profiler is not running and ValueError when `label` is empty or
   * already taken in this profile.
   */
  const ProfileSnapshot& snapshot(std::string_view label) {
    if (state_ != State::running) {
      throw Error("MemoryProfiler: snapshot('" + std::string(label) + "') " +
                  (state_ == State::idle ? "before start()" : "after stop()"));
    }
    if (label.empty()) throw ValueError("MemoryProfiler: a snapshot label must not be empty");
    if (find(label) != nullptr) {
      throw ValueError("MemoryProfiler: duplicate snapshot label '" + std::string(label) + "'");
    }
    UntracedScope scope;
    // Read before the snapshot, with nothing traced in between on this thread, so that
    // `current` is the sum of the snapshot's traces.
    auto [current, peak] = tracemalloc::get_traced_memory();
    tracemalloc::Snapshot taken = tracemalloc::take_snapshot();
    return snapshots_.emplace_back(ProfileSnapshot{std::string(label), std::move(taken), current,
                                                   peak, std::chrono::steady_clock::now(),
                                                   sys::type_stats(), detail::resident_bytes()});
  }

  /**
   * Ends the profile and reports it: the top `n` lines at the last snapshot, each step of
   * growth, the peak. Stops tracemalloc only if start() started it. The snapshots stay
   * available to the other members until the next start(). Throws memlens::Error when the
   * profiler is not running (before start(), or a second stop()).
   */
  MemoryProfileReport stop(std::size_t n = 10) {
    if (state_ != State::running) {
      throw Error(state_ == State::idle
                      ? "MemoryProfiler: stop() before start()"
                      : "MemoryProfiler: stop() called twice: the profiler is not running");
    }
    auto [current, peak] = tracemalloc::get_traced_memory();
    auto stop_time = std::chrono::steady_clock::now();
    end_tracing();
    state_ = State::stopped;

    UntracedScope scope;
    MemoryProfileReport report;
    if (!snapshots_.empty()) {
      report.top_allocations = top_allocations(n);
      report.top_label = snapshots_.back().label;
    }
    report.growth = growth_over_time(report_lines_per_step);
    report.start_current = start_current_;
    report.current = current;
    // A reset_peak() by the profiled code lowers tracemalloc's peak, not the profile's.
    report.peak = peak;
    for (const auto& s : snapshots_) report.peak = std::max(report.peak, s.peak);
    report.duration = stop_time - start_time_;
    return report;
  }

  /**
   * The `n` lines holding the most memory at the latest snapshot, largest first (its
   * statistics("lineno")). Throws memlens::Error when no snapshot was taken.
   */
  std::vector<tracemalloc::Statistic> top_allocations(std::size_t n = 10) const {
    if (snapshots_.empty()) {
      throw Error("MemoryProfiler: top_allocations() needs a snapshot: call snapshot(label) first");
    }
    UntracedScope scope;
    auto stats = snapshots_.back().snapshot.statistics("lineno");
    if (stats.size() > n) stats.erase(stats.begin() + static_cast<std::ptrdiff_t>(n), stats.end());
    return stats;
  }

  /**
   * How each line's memory changed from the snapshot `from_label` to `to_label`: the `n`
   * largest changes, as tracemalloc's compare_to(..., "lineno") orders them (a negative
   * size_diff is memory freed). Throws ValueError naming an unknown label.
   */
  std::vector<tracemalloc::StatisticDiff> growth(std::string_view from_label,
                                                 std::string_view to_label,
                                                 std::size_t n = 10) const {
    const ProfileSnapshot& from = at(from_label);
    const ProfileSnapshot& to = at(to_label);
    UntracedScope scope;
    auto diffs = to.snapshot.compare_to(from.snapshot, "lineno");
    if (diffs.size() > n) diffs.erase(diffs.begin() + static_cast<std::ptrdiff_t>(n), diffs.end());
    return diffs;
  }

  /**
   * Memory over time: one step per snapshot, in order, with its change from the snapshot
   * before (the first: from start()) and up to `top_lines` lines that changed most during the
   * step (0: none, which also skips symbolizing the tracebacks).
   */
  std::vector<GrowthStep> growth_over_time(std::size_t top_lines = 0) const {
    UntracedScope scope;
    std::vector<GrowthStep> steps;
    steps.reserve(snapshots_.size());
    for (std::size_t i = 0; i < snapshots_.size(); ++i) {
      const ProfileSnapshot& s = snapshots_[i];
      std::size_t before = i == 0 ? start_current_ : snapshots_[i - 1].current;
      GrowthStep step;
      step.label = s.label;
      step.current = s.current;
      step.delta = static_cast<std::ptrdiff_t>(s.current) - static_cast<std::ptrdiff_t>(before);
      step.peak = s.peak;
      step.elapsed = s.time - start_time_;
      if (top_lines > 0) {
        const tracemalloc::Snapshot& previous = i == 0 ? *baseline_ : snapshots_[i - 1].snapshot;
        for (auto& diff : s.snapshot.compare_to(previous, "lineno")) {
          if (step.top_growth.size() == top_lines) break;
          if (diff.size_diff == 0 && diff.count_diff == 0) break;  // sorted: the rest are too
          step.top_growth.push_back(std::move(diff));
        }
      }
      steps.push_back(std::move(step));
    }
    return steps;
  }

  /// The snapshot labelled `label`; throws ValueError naming it when there is none.
  const ProfileSnapshot& at(std::string_view label) const {
    if (const ProfileSnapshot* s = find(label)) return *s;
    std::string known;
    for (const auto& s : snapshots_) known += (known.empty() ? "'" : ", '") + s.label + "'";
    throw ValueError("MemoryProfiler: unknown snapshot label '" + std::string(label) +
                     "' (labels: " + (known.empty() ? std::string("none") : known) + ")");
  }

  /// Every snapshot of the current (or last) profile, in the order taken.
  const std::deque<ProfileSnapshot>& snapshots() const noexcept { return snapshots_; }

  /// Whether start() was called and stop() not yet.
  bool is_running() const noexcept { return state_ == State::running; }

  /// Whether start() found tracemalloc off and started it (so stop() stops it).
  bool started_tracing() const noexcept { return started_tracing_; }

 private:
  enum class State { idle, running, stopped };

  /**
   * What is allocated inside stays out of the tracer (the profiler's own data, like the
   * snapshot copies take_snapshot makes). Nothing traced may be freed inside: the tracer skips
   * frees in its scope too, and would keep the trace of a block that no longer exists.
   */
  using UntracedScope = memlens::detail::trace::TracerScope;

  const ProfileSnapshot* find(std::string_view label) const noexcept {
    auto it = std::find_if(snapshots_.begin(), snapshots_.end(),
                           [&](const ProfileSnapshot& s) { return s.label == label; });
    return it == snapshots_.end() ? nullptr : &*it;
  }

  void end_tracing() noexcept {
    if (started_tracing_) {
      tracemalloc::stop();
    } else {
      tracemalloc::detail::raise_peak(outer_peak_);
    }
  }

  State state_ = State::idle;
  bool started_tracing_ = false;
  std::size_t start_current_ = 0;
  std::size_t outer_peak_ = 0;
  std::chrono::steady_clock::time_point start_time_{};
  // Optional so that a profiler made while tracing is on allocates nothing traced.
  std::optional<tracemalloc::Snapshot> baseline_;
  std::deque<ProfileSnapshot> snapshots_;  // a deque: snapshot() returns a lasting reference
};

}  // namespace memlens

namespace memlens::detail {

/// Formats a profiler type as memlens::to_string writes it; takes no format spec.
template <class T>
struct ProfilerFormatter {
  constexpr auto parse(fmt::format_parse_context& ctx) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it != '}') ctx.on_error("memlens profiler types take no format spec");
    return it;
  }
  template <class Context>
  auto format(const T& value, Context& ctx) const {
    // Unqualified: argument-dependent lookup finds the to_string of types declared after this
    // template too (the AdvancedMemoryProfiler's).
    using memlens::to_string;
    return fmt::format_to(ctx.out(), "{}", to_string(value));
  }
};

}  // namespace memlens::detail

/// The report as memlens::to_string writes it.
template <>
struct fmt::formatter<memlens::MemoryProfileReport>
    : memlens::detail::ProfilerFormatter<memlens::MemoryProfileReport> {};

/// A step as memlens::to_string writes it.
template <>
struct fmt::formatter<memlens::GrowthStep>
    : memlens::detail::ProfilerFormatter<memlens::GrowthStep> {};
