// memlens: Python's tracemalloc for C++: how much memory, allocated where, growing where.
// Allocations reach the tracer through memlens/track_new.hpp (the global operator new/delete,
// included in exactly one .cpp of a program), tracemalloc::Allocator<T>, TracingResource (pmr)
// or track()/untrack(). See docs/design.md, "tracemalloc".
#pragma once

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "memlens/config.hpp"
#include "memlens/detail/core.hpp"
#include "memlens/detail/trace_core.hpp"
#include "memlens/detail/trace_symbols.hpp"
#include "memlens/errors.hpp"

namespace memlens::tracemalloc {

/// Thrown by take_snapshot() when tracemalloc is not tracing (Python's RuntimeError).
class TracingError : public Error {
 public:
  using Error::Error;
};

/// A snapshot file is missing, unreadable, truncated or corrupt; the message names the path.
class SnapshotFileError : public Error {
 public:
  using Error::Error;
};

/// One frame of a traceback. `lineno` is 0 and `filename` "<unknown>" when the code has no
/// debug information (build with -g) or addr2line is missing.
struct Frame {
  std::string filename;
  int lineno = 0;
  std::string function;

  friend bool operator==(const Frame&, const Frame&) = default;
  friend auto operator<=>(const Frame&, const Frame&) = default;
};

/// Where an allocation was made: frames, most recent first (front() is the line that allocated).
/// Equality, ordering and hashing look at the frames only, as Python's do.
class Traceback {
 public:
  using value_type = Frame;
  using const_iterator = std::vector<Frame>::const_iterator;

  Traceback() : frames_(empty_frames()) {}
  /// `total_nframe`, when known, is at least `frames.size()` (see total_nframe()); a smaller one
  /// throws ValueError.
  explicit Traceback(std::vector<Frame> frames,
                     std::optional<std::size_t> total_nframe = std::nullopt)
      : frames_(std::make_shared<const std::vector<Frame>>(std::move(frames))),
        total_nframe_(total_nframe.value_or(unknown_total)) {
    if (total_nframe && *total_nframe < frames_->size()) {
      throw ValueError("tracemalloc: a Traceback's total_nframe (" + std::to_string(*total_nframe) +
                       ") is smaller than its frame count (" + std::to_string(frames_->size()) +
                       ")");
    }
  }

  /**
   * How many frames the stack had before the traceback was truncated to the traceback limit
   * (Python's Traceback.total_nframe), never less than size(); nullopt when unknown: for the
   * tracebacks of statistics() and compare_to() (as in Python) and of snapshots loaded from
   * version-1 files. The tracer captures a few more return addresses than the limit and only
   * counts the rest, so this is the number of frames size() would count (source-level frames,
   * leading memlens and std frames dropped) among the captured addresses, plus one per address
   * beyond them, never symbolized. When the whole stack was captured, it is exactly the number
   * of frames a large enough limit would show.
   */
  std::optional<std::size_t> total_nframe() const noexcept {
    if (total_nframe_ == unknown_total) return std::nullopt;
    return total_nframe_;
  }

  std::size_t size() const noexcept { return frames_->size(); }
  bool empty() const noexcept { return frames_->empty(); }
  const Frame& operator[](std::size_t i) const { return (*frames_)[i]; }
  const Frame& front() const { return frames_->front(); }
  const Frame& back() const { return frames_->back(); }
  const_iterator begin() const noexcept { return frames_->begin(); }
  const_iterator end() const noexcept { return frames_->end(); }

  /**
   * The lines Python's Traceback.format() gives: per frame `  File "<file>", line <n>, in <f>`
   * and, when the source file is readable, the stripped source line indented by four. Oldest
   * frame first, as Python prints tracebacks, unless `most_recent_first`; `limit` keeps the
   * most recent `limit` frames (a negative limit the oldest).
   */
  std::vector<std::string> format(std::optional<int> limit = std::nullopt,
                                  bool most_recent_first = false) const {
    std::vector<Frame> frames(begin(), end());  // most recent first
    if (limit) {
      std::size_t n = static_cast<std::size_t>(*limit >= 0 ? *limit : -*limit);
      n = std::min(n, frames.size());
      if (*limit >= 0) {
        frames.resize(n);
      } else {
        frames.erase(frames.begin(), frames.end() - static_cast<std::ptrdiff_t>(n));
      }
    }
    if (!most_recent_first) std::reverse(frames.begin(), frames.end());
    std::vector<std::string> lines;
    for (const Frame& f : frames) {
      std::string line = "  File \"" + f.filename + "\", line " + std::to_string(f.lineno);
      if (!f.function.empty()) line += ", in " + f.function;
      lines.push_back(std::move(line));
      if (std::string source = source_line(f.filename, f.lineno); !source.empty()) {
        lines.push_back("    " + source);
      }
    }
    return lines;
  }

  friend bool operator==(const Traceback& a, const Traceback& b) {
    return a.frames_ == b.frames_ || *a.frames_ == *b.frames_;
  }
  friend auto operator<=>(const Traceback& a, const Traceback& b) {
    return *a.frames_ <=> *b.frames_;
  }

 private:
  friend class Snapshot;  // drops total_nframe from statistics keys

  // In place of an optional: a Traceback is in every Trace of a snapshot.
  static constexpr std::size_t unknown_total = std::numeric_limits<std::size_t>::max();

  MEMLENS_SHARED static const std::shared_ptr<const std::vector<Frame>>& empty_frames() {
    static const auto* empty = [] {
      // Immortal, and memlens's own: made while tracing, it would count as the user's memory.
      memlens::detail::trace::TracerScope untraced;
      return new std::shared_ptr<const std::vector<Frame>>(
          std::make_shared<const std::vector<Frame>>());
    }();
    return *empty;
  }
  static std::string source_line(const std::string& filename, int lineno) {
    if (lineno <= 0) return {};
    std::ifstream in(filename);
    std::string line;
    for (int i = 0; i < lineno; ++i) {
      if (!std::getline(in, line)) return {};
    }
    auto first = line.find_first_not_of(" \t");
    auto last = line.find_last_not_of(" \t\r");
    return first == std::string::npos ? std::string() : line.substr(first, last - first + 1);
  }

  std::shared_ptr<const std::vector<Frame>> frames_;
  std::size_t total_nframe_ = unknown_total;
};

}  // namespace memlens::tracemalloc

template <>
struct std::hash<memlens::tracemalloc::Frame> {
  std::size_t operator()(const memlens::tracemalloc::Frame& f) const noexcept {
    std::size_t h = std::hash<std::string>()(f.filename);
    h = h * 31 + static_cast<std::size_t>(f.lineno);
    return h * 31 + std::hash<std::string>()(f.function);
  }
};

template <>
struct std::hash<memlens::tracemalloc::Traceback> {
  std::size_t operator()(const memlens::tracemalloc::Traceback& t) const noexcept {
    std::size_t h = t.size();
    for (const auto& f : t) h = h * 1000003 ^ std::hash<memlens::tracemalloc::Frame>()(f);
    return h;
  }
};

namespace memlens::tracemalloc {

/// One live allocation in a snapshot (Python's tracemalloc.Trace).
struct Trace {
  unsigned domain = 0;
  std::size_t size = 0;
  Traceback traceback;
};

/// Memory allocated at one place (Python's tracemalloc.Statistic).
struct Statistic {
  Traceback traceback;
  std::size_t size = 0;
  std::size_t count = 0;
};

/// The difference between two snapshots at one place (Python's tracemalloc.StatisticDiff).
struct StatisticDiff {
  Traceback traceback;
  std::size_t size = 0;
  std::ptrdiff_t size_diff = 0;
  std::size_t count = 0;
  std::ptrdiff_t count_diff = 0;
};

/// Keeps (inclusive) or drops (exclusive) traces by file name pattern (fnmatch) and line, as
/// Python's tracemalloc.Filter. Without `all_frames` only the most recent frame is tested.
struct Filter {
  Filter(bool include, std::string pattern, std::optional<int> line = std::nullopt,
         bool every_frame = false, std::optional<unsigned> only_domain = std::nullopt)
      : inclusive(include),
        filename_pattern(std::move(pattern)),
        lineno(line),
        all_frames(every_frame),
        domain(only_domain) {}

  bool inclusive;
  std::string filename_pattern;
  std::optional<int> lineno;
  bool all_frames;
  std::optional<unsigned> domain;

  /// Python's Filter._match: true when the trace passes this filter.
  bool match(const Trace& trace) const {
    bool result;
    if (all_frames) {
      bool any = std::any_of(trace.traceback.begin(), trace.traceback.end(),
                             [&](const Frame& f) { return match_frame(f); });
      result = any ? inclusive : !inclusive;
    } else {
      Frame unknown{"<unknown>", 0, {}};
      const Frame& f = trace.traceback.empty() ? unknown : trace.traceback.front();
      result = match_frame(f) != !inclusive;
    }
    if (domain) {
      return inclusive ? (result && trace.domain == *domain) : (result || trace.domain != *domain);
    }
    return result;
  }

 private:
  bool match_frame(const Frame& f) const {
    if (::fnmatch(filename_pattern.c_str(), f.filename.c_str(), 0) != 0) return false;
    return !lineno || *lineno == f.lineno;
  }
};

/// Keeps (inclusive) or drops traces of one domain (Python's tracemalloc.DomainFilter).
struct DomainFilter {
  DomainFilter(bool include, unsigned only_domain) : inclusive(include), domain(only_domain) {}
  bool inclusive;
  unsigned domain;
  bool match(const Trace& trace) const { return (trace.domain == domain) != !inclusive; }
};

/// Either kind of filter, for Snapshot::filter_traces.
using AnyFilter = std::variant<Filter, DomainFilter>;

/// Whether the frames inside the standard library's headers are dropped from the front of
/// tracebacks (default on), so that "lineno" names the user's line, not std::vector's.
inline void set_skip_std_frames(bool skip) noexcept;
/// See set_skip_std_frames.
inline bool get_skip_std_frames() noexcept;

namespace detail {

MEMLENS_SHARED inline constinit std::atomic<bool> skip_std_frames{true};

struct RawTrace {
  std::size_t size;
  std::uint32_t traceback;
  std::uint32_t domain;
};

/// What a snapshot holds: traces refer to tracebacks by index. Tracebacks are either raw return
/// addresses (a fresh snapshot: symbolized on first use) or frames (loaded or derived).
struct SnapshotData {
  std::vector<RawTrace> traces;
  std::vector<std::uintptr_t> pcs;
  std::vector<memlens::detail::trace::TracebackRecord> records;
  int traceback_limit = 1;
  std::size_t sample_bytes = 0;  // TraceOptions::sample_bytes of the session; 0: every block
  bool skip_std = true;

  std::once_flag symbolized_once;
  std::vector<Traceback> tracebacks;
  std::once_flag traces_once;
  std::vector<Trace> public_traces;

  const std::vector<Traceback>& symbolized() {
    std::call_once(symbolized_once, [this] { symbolize(); });
    return tracebacks;
  }

 private:
  void symbolize() {
    if (records.empty()) return;
    // Frames are source-level frames (inlined functions included): see visible_frames.
    const memlens::detail::trace::SymbolTable symbols(pcs);
    tracebacks.clear();
    tracebacks.reserve(records.size());
    for (const auto& r : records) {
      std::vector<Frame> frames;
      std::size_t visible = 0;
      for (const auto* f :
           symbols.visible_frames(pcs.data() + r.offset, r.count, skip_std,
                                  static_cast<std::size_t>(traceback_limit), &visible)) {
        frames.push_back(Frame{f->filename, f->lineno, f->function});
      }
      // Return addresses beyond the captured ones were only counted: one frame each.
      const std::size_t uncaptured = r.total > r.count ? std::size_t{r.total} - r.count : 0;
      tracebacks.emplace_back(std::move(frames), visible + uncaptured);
    }
  }
};

inline std::string format_size(double size, bool sign) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  char buf[64];
  for (const char* unit : units) {
    bool bytes = std::strcmp(unit, "B") == 0;
    bool last = std::strcmp(unit, "TiB") == 0;
    if (std::abs(size) < 100 && !bytes) {
      std::snprintf(buf, sizeof(buf), sign ? "%+.1f %s" : "%.1f %s", size, unit);
      return buf;
    }
    if (std::abs(size) < 10 * 1024 || last) {
      std::snprintf(buf, sizeof(buf), sign ? "%+.0f %s" : "%.0f %s", size, unit);
      return buf;
    }
    size /= 1024;
  }
  return {};  // not reached: TiB always returns
}

}  // namespace detail

/// `file:line` of the most recent frame, as Python's str(Frame).
inline std::string to_string(const Frame& f) { return f.filename + ":" + std::to_string(f.lineno); }

/// The most recent frame, as Python's str(Traceback).
inline std::string to_string(const Traceback& t) {
  return t.empty() ? std::string("<unknown>:0") : to_string(t.front());
}

/// `file:line: size=1.5 KiB`, as Python's str(Trace).
inline std::string to_string(const Trace& t) {
  return to_string(t.traceback) + ": " + detail::format_size(static_cast<double>(t.size), false);
}

/// `file:line: size=1.5 KiB, count=3, average=512 B`, as Python's str(Statistic).
inline std::string to_string(const Statistic& s) {
  std::string text = to_string(s.traceback) +
                     ": size=" + detail::format_size(static_cast<double>(s.size), false) +
                     ", count=" + std::to_string(s.count);
  if (s.count) {
    text += ", average=" +
            detail::format_size(static_cast<double>(s.size) / static_cast<double>(s.count), false);
  }
  return text;
}

/// `file:line: size=2 KiB (+1 KiB), count=2 (+1), average=1 KiB`, as Python's str(StatisticDiff).
inline std::string to_string(const StatisticDiff& s) {
  char count_diff[32];
  std::snprintf(count_diff, sizeof(count_diff), "%+lld", static_cast<long long>(s.count_diff));
  std::string text = to_string(s.traceback) +
                     ": size=" + detail::format_size(static_cast<double>(s.size), false) + " (" +
                     detail::format_size(static_cast<double>(s.size_diff), true) +
                     "), count=" + std::to_string(s.count) + " (" + count_diff + ")";
  if (s.count) {
    text += ", average=" +
            detail::format_size(static_cast<double>(s.size) / static_cast<double>(s.count), false);
  }
  return text;
}

/**
 * The traces of the live allocations at one moment (Python's tracemalloc.Snapshot). Cheap to
 * copy (copies share their data). Tracebacks are symbolized on first use, once per snapshot.
 *
 * ```cpp
 * memlens::tracemalloc::start();
 * build_cache();
 * auto snapshot = memlens::tracemalloc::take_snapshot();
 * for (const auto& stat : snapshot.statistics("lineno")) fmt::print("{}\n", stat);
 * ```
 */
class Snapshot;
namespace detail {
const SnapshotData& snapshot_data(const Snapshot& snapshot) noexcept;
}  // namespace detail

class Snapshot {
 public:
  Snapshot() : data_(std::make_shared<detail::SnapshotData>()) {}

  /// The traceback limit tracemalloc had when the snapshot was taken.
  int traceback_limit() const noexcept { return data_->traceback_limit; }

  /// TraceOptions::sample_bytes of the tracing the snapshot was taken from: 0 when every
  /// allocation was traced. When not 0, traces() holds only the sampled blocks, and
  /// statistics() and compare_to() give estimates.
  std::size_t sample_bytes() const noexcept { return data_->sample_bytes; }

  /// Every trace (symbolizes the tracebacks on first use). When sampling (sample_bytes() is not
  /// 0), the sampled blocks only, each with its real size: a block of size s stands for
  /// s / p(s) bytes and 1 / p(s) blocks, p(s) = 1 - exp(-s / sample_bytes()).
  const std::vector<Trace>& traces() const {
    std::call_once(data_->traces_once, [this] {
      const auto& tracebacks = data_->symbolized();
      data_->public_traces.clear();  // a throw left part of them, and call_once runs us again
      data_->public_traces.reserve(data_->traces.size());
      for (const auto& t : data_->traces) {
        data_->public_traces.push_back(Trace{t.domain, t.size, tracebacks[t.traceback]});
      }
    });
    return data_->public_traces;
  }

  /**
   * Statistics grouped by `key_type`: "filename", "lineno" or "traceback", largest first.
   * With `cumulative`, every frame of a traceback counts, not only the most recent one. When
   * the snapshot was sampled, `size` and `count` are unbiased estimates (see traces()),
   * rounded per traceback.
   */
  std::vector<Statistic> statistics(std::string_view key_type, bool cumulative = false) const {
    auto groups = group_by(key_type, cumulative);
    std::vector<Statistic> stats;
    stats.reserve(groups.size());
    for (auto& [key, s] : groups) stats.push_back(Statistic{s.shown, s.size, s.count});
    // Python sorts by (size, count, traceback), largest first, ties included.
    std::sort(stats.begin(), stats.end(), [](const Statistic& a, const Statistic& b) {
      if (a.size != b.size) return a.size > b.size;
      if (a.count != b.count) return a.count > b.count;
      return python_less(b.traceback, a.traceback);
    });
    return stats;
  }

  /// Differences from an older snapshot, grouped by `key_type`, largest change first. Sizes and
  /// counts of a sampled snapshot are estimates, each snapshot scaled by its own rate.
  std::vector<StatisticDiff> compare_to(const Snapshot& old, std::string_view key_type,
                                        bool cumulative = false) const {
    auto now = group_by(key_type, cumulative);
    auto before = old.group_by(key_type, cumulative);
    std::vector<StatisticDiff> diffs;
    for (auto& [key, s] : now) {
      Sum o{};
      if (auto it = before.find(key); it != before.end()) {
        o = it->second;
        before.erase(it);
      }
      diffs.push_back(StatisticDiff{s.shown, s.size, signed_diff(s.size, o.size), s.count,
                                    signed_diff(s.count, o.count)});
    }
    for (auto& [key, o] : before) {
      diffs.push_back(
          StatisticDiff{o.shown, 0, signed_diff(0, o.size), 0, signed_diff(0, o.count)});
    }
    auto magnitude = [](std::ptrdiff_t d) { return d < 0 ? -d : d; };
    std::sort(diffs.begin(), diffs.end(), [&](const StatisticDiff& a, const StatisticDiff& b) {
      if (magnitude(a.size_diff) != magnitude(b.size_diff))
        return magnitude(a.size_diff) > magnitude(b.size_diff);
      if (a.size != b.size) return a.size > b.size;
      if (magnitude(a.count_diff) != magnitude(b.count_diff))
        return magnitude(a.count_diff) > magnitude(b.count_diff);
      if (a.count != b.count) return a.count > b.count;
      return python_less(b.traceback, a.traceback);
    });
    return diffs;
  }

  /**
   * A new snapshot with the traces the filters let through, as Python's filter_traces: with
   * inclusive filters a trace must match one of them; it must match no exclusive filter.
   */
  Snapshot filter_traces(const std::vector<AnyFilter>& filters) const {
    const auto& all = traces();
    Snapshot result;
    auto& d = *result.data_;
    d.traceback_limit = data_->traceback_limit;
    d.sample_bytes = data_->sample_bytes;
    d.skip_std = data_->skip_std;
    d.tracebacks = data_->symbolized();
    std::call_once(d.symbolized_once, [] {});
    auto inclusive = [](const AnyFilter& f) {
      return std::visit([](const auto& x) { return x.inclusive; }, f);
    };
    auto matches = [](const AnyFilter& f, const Trace& t) {
      return std::visit([&](const auto& x) { return x.match(t); }, f);
    };
    bool any_inclusive = std::any_of(filters.begin(), filters.end(), inclusive);
    for (std::size_t i = 0; i < all.size(); ++i) {
      const Trace& t = all[i];
      bool keep = !any_inclusive;
      for (const auto& f : filters) {
        if (inclusive(f) && matches(f, t)) keep = true;
      }
      for (const auto& f : filters) {
        if (!inclusive(f) && !matches(f, t)) keep = false;
      }
      if (keep) d.traces.push_back(data_->traces[i]);
    }
    return result;
  }

  /**
   * Writes the snapshot to `path` (tracebacks symbolized, so any process can load it) through
   * a temporary file renamed into place: a reader never sees half a file.
   */
  MEMLENS_SHARED void dump(const std::string& path) const;

  /// Reads a file written by dump(); throws SnapshotFileError naming `path` if it is missing,
  /// truncated, of another format or version, or corrupt.
  static Snapshot load(const std::string& path);

  /// For take_snapshot.
  explicit Snapshot(std::shared_ptr<detail::SnapshotData> data) : data_(std::move(data)) {}

 private:
  struct Sum {
    std::size_t size = 0;
    std::size_t count = 0;
    Traceback shown;  // the group's traceback as reported: the first one met, names included
  };

  /**
   * What statistics group by. Python's frames are (filename, lineno), so a key leaves out the
   * function name: the instantiations of a template on one line, or names another demangler
   * spelled otherwise (a loaded snapshot), are one line; and frames without file and line (code
   * built without -g) are one `<unknown>:0`, as in Python, not several rows that read alike.
   * The key is the traceback itself (its frames are shared, not copied), hashed and compared by
   * file and line only: a capture of 100k distinct stacks is grouped without copying a frame.
   */
  struct LineHash {
    std::size_t operator()(const Traceback& t) const noexcept {
      std::uint64_t h = t.size();
      // Lines and the ends of the file names, not whole names: hashing every byte of sixteen
      // paths per traceback was a quarter of statistics()' time. Equality sorts out the rest.
      for (const Frame& f : t) {
        std::uint64_t tail = 0;
        const std::size_t n = std::min<std::size_t>(f.filename.size(), sizeof(tail));
        std::memcpy(&tail, f.filename.data() + f.filename.size() - n, n);
        constexpr std::uint64_t prime = 0x100000001b3;
        const std::uint64_t line = static_cast<std::uint32_t>(f.lineno);
        h = (h ^ line ^ (std::uint64_t{f.filename.size()} << 32)) * prime;
        h = (h ^ tail) * prime;
      }
      return static_cast<std::size_t>(h ^ (h >> 29));
    }
  };
  struct LineEqual {
    bool operator()(const Traceback& a, const Traceback& b) const noexcept {
      return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Frame& f, const Frame& g) {
        return f.lineno == g.lineno && f.filename == g.filename;
      });
    }
  };
  using Groups = std::unordered_map<Traceback, Sum, LineHash, LineEqual>;

  /// Python's order of tracebacks: frames compared oldest first, each by (filename, lineno);
  /// then by function, so that the order is total.
  static bool python_less(const Traceback& a, const Traceback& b) {
    auto oldest_first_less = [](const Traceback& x, const Traceback& y) {
      return std::lexicographical_compare(
          std::make_reverse_iterator(x.end()), std::make_reverse_iterator(x.begin()),
          std::make_reverse_iterator(y.end()), std::make_reverse_iterator(y.begin()),
          [](const Frame& f, const Frame& g) {
            return std::tie(f.filename, f.lineno) < std::tie(g.filename, g.lineno);
          });
    };
    if (oldest_first_less(a, b)) return true;
    if (oldest_first_less(b, a)) return false;
    return a < b;
  }

  static std::ptrdiff_t signed_diff(std::size_t a, std::size_t b) {
    return static_cast<std::ptrdiff_t>(a) - static_cast<std::ptrdiff_t>(b);
  }

  Groups group_by(std::string_view key_type, bool cumulative) const {
    bool by_traceback = key_type == "traceback";
    bool by_lineno = key_type == "lineno";
    bool by_filename = key_type == "filename";
    if (!by_traceback && !by_lineno && !by_filename) {
      throw ValueError("tracemalloc: unknown key_type: '" + std::string(key_type) + "'");
    }
    if (cumulative && by_traceback) {
      throw ValueError("tracemalloc: cumulative mode cannot be used with key type 'traceback'");
    }
    const auto& tracebacks = data_->symbolized();
    std::vector<Sum> per_traceback(tracebacks.size());
    if (const std::size_t mean = data_->sample_bytes; mean == 0) {
      for (const auto& t : data_->traces) {
        per_traceback[t.traceback].size += t.size;
        per_traceback[t.traceback].count += 1;
      }
    } else {
      // Each sampled block stands for size / p bytes and 1 / p blocks (Horvitz-Thompson).
      std::vector<std::pair<double, double>> estimates(tracebacks.size());
      for (const auto& t : data_->traces) {
        auto& [bytes, blocks] = estimates[t.traceback];
        if (t.size == 0) {  // never sampled but by start()'s probe: one block, no bytes
          blocks += 1;
          continue;
        }
        const double p = memlens::detail::trace::sample_probability(t.size, mean);
        bytes += static_cast<double>(t.size) / p;
        blocks += 1 / p;
      }
      for (std::size_t id = 0; id < estimates.size(); ++id) {
        per_traceback[id].size = static_cast<std::size_t>(std::llround(estimates[id].first));
        per_traceback[id].count = static_cast<std::size_t>(std::llround(estimates[id].second));
      }
    }
    Groups groups;
    groups.reserve(by_traceback ? tracebacks.size() : 64);
    auto add = [&](const Traceback& key, const Traceback& shown, const Sum& s) {
      Sum& g = groups[key];
      if (g.count == 0) g.shown = shown;
      g.size += s.size;
      g.count += s.count;
    };
    const Frame unknown{"<unknown>", 0, {}};
    // A row of frames without a file may gather several functions: it names none of them.
    auto shown_of = [&](const Frame& f) {
      if (by_filename) return Traceback({Frame{f.filename, 0, {}}});
      return f.filename == unknown.filename ? Traceback({unknown}) : Traceback({f});
    };
    for (std::size_t id = 0; id < tracebacks.size(); ++id) {
      const Sum& s = per_traceback[id];
      if (s.count == 0) continue;
      const Traceback& tb = tracebacks[id];
      if (by_traceback) {
        // Python's statistics keys carry no total_nframe; and as a key compares by frames,
        // traces whose stacks differ only beyond the limit are one statistic.
        Traceback shown = tb;
        shown.total_nframe_ = Traceback::unknown_total;
        add(shown, shown, s);
      } else if (!cumulative || tb.empty()) {
        const Traceback shown = shown_of(tb.empty() ? unknown : tb.front());
        add(shown, shown, s);
      } else {
        std::unordered_set<Traceback, LineHash, LineEqual> seen;
        for (const Frame& f : tb) {
          const Traceback shown = shown_of(f);
          if (seen.insert(shown).second) add(shown, shown, s);
        }
      }
    }
    return groups;
  }

  std::shared_ptr<detail::SnapshotData> data_;
  friend const detail::SnapshotData& detail::snapshot_data(const Snapshot&) noexcept;
};

/// Python's tracemalloc.is_tracing().
inline bool is_tracing() noexcept { return memlens::detail::trace::tracing(); }

namespace detail {

/**
 * Whether a block from the global operator new reaches the tracer, which is on; nullopt when
 * tracing stopped meanwhile. A program that does not include memlens/track_new.hpp uses the
 * standard library's operator new, which the tracer never sees. The block is traced with size 0
 * (operator new(0)), so current and peak do not move.
 */
MEMLENS_NOINLINE inline std::optional<bool> probe_operator_new() {
  namespace t = memlens::detail::trace;
  // Through volatile pointers: a compiler may remove a new/delete pair nobody observes.
  void* (*volatile allocate)(std::size_t) = &::operator new;
  void (*volatile release)(void*) noexcept = &::operator delete;
  t::force_next_sample();  // a sampling tracer would never pick a block of size 0
  void* block = allocate(0);
  t::undo_forced_sample();
  std::optional<bool> traced;
  {
    t::LockGuard lock;
    if (t::state.tracing.load(std::memory_order_relaxed)) {
      traced = t::state.traces.traceback_of(reinterpret_cast<std::uintptr_t>(block), 0) !=
               t::TracebackTable::none;
    }
  }
  release(block);
  if (traced) t::state.new_hooked.store(*traced ? 1 : 0, std::memory_order_relaxed);
  return traced;
}

}  // namespace detail

/// How start() traces, beyond the number of frames.
struct TraceOptions {
  /// The largest sample_bytes accepted (1 TiB).
  static constexpr std::size_t max_sample_bytes = memlens::detail::trace::max_sample_bytes;

  /**
   * 0 (the default) traces every allocation. N > 0 samples, for long or production runs: each
   * allocation of `size` bytes is traced with probability 1 - exp(-size / N) (Poisson sampling
   * of the allocated bytes, one point per N bytes on average, as tcmalloc's and jemalloc's heap
   * profilers sample), so a block much larger than N is nearly always traced and one much
   * smaller rarely. An allocation that is not sampled costs a per-thread countdown, no stack
   * walk and no lock. get_traced_memory(), Snapshot::statistics() and compare_to() then give
   * unbiased estimates; Snapshot::traces() holds the sampled blocks only.
   */
  std::size_t sample_bytes = 0;
};

/**
 * Starts tracing allocations, storing up to `nframe` frames per traceback (Python's
 * tracemalloc.start). Does nothing (not even change the limit or the options) when already
 * tracing, as Python; get_traceback_limit() and get_sample_bytes() tell what is in force. The
 * arguments are checked first all the same. Frames are source-level frames: a function the
 * compiler inlined is a frame of its own, as Python counts Python frames.
 *
 * In a program that does not include memlens/track_new.hpp, allocations made with new (std
 * containers, strings) are not traced: start() finds out with one allocation and says so on
 * stderr, once per process (is_hooked() tells it too).
 *
 * ```cpp
 * // About one allocation per 512 KiB allocated is traced; sizes and counts are estimates.
 * memlens::tracemalloc::start(16, {.sample_bytes = 512 * 1024});
 * ```
 */
MEMLENS_SHARED inline void start(int nframe = 1, TraceOptions options = {}) {
  namespace t = memlens::detail::trace;
  if (nframe < 1 || nframe > t::max_nframe) {
    throw ValueError("tracemalloc: the number of frames must be in range [1; " +
                     std::to_string(t::max_nframe) + "], got " + std::to_string(nframe));
  }
  if (options.sample_bytes > TraceOptions::max_sample_bytes) {
    throw ValueError("tracemalloc: sample_bytes must be at most " +
                     std::to_string(TraceOptions::max_sample_bytes) + " (1 TiB), got " +
                     std::to_string(options.sample_bytes));
  }
  // A child forked while another thread held the tracer's lock would wait for it forever.
  static const bool fork_safe = [] {
    // The lock is held across fork(), so what fork itself allocates (under clang's sanitizers
    // malloc is hooked) must stay out of the tracer, as inside any tracer scope.
    static bool saved_in_tracer = false;  // written under the lock
    auto release = [] {
      t::in_tracer = saved_in_tracer;
      t::state.lock.unlock();
    };
    pthread_atfork(
        [] {
          t::state.lock.lock();
          saved_in_tracer = t::in_tracer;
          t::in_tracer = true;
        },
        release, release);
    return true;
  }();
  static_cast<void>(fork_safe);
  {
    t::LockGuard lock;
    if (t::state.tracing.load(std::memory_order_relaxed)) return;
    t::state.nframe.store(nframe, std::memory_order_relaxed);
    t::state.sample_bytes.store(options.sample_bytes, std::memory_order_relaxed);
    t::state.tracing.store(true, std::memory_order_relaxed);
  }
  if (detail::probe_operator_new() == false && !t::state.told_unhooked.exchange(true)) {
    std::fputs(
        "memlens: tracemalloc: the global operator new is not traced in this program: include "
        "<memlens/track_new.hpp> in one of its .cpp files. Until then new, std containers and "
        "strings are not traced; tracemalloc::Allocator, TracingResource and track() are.\n",
        stderr);
  }
}

/// Stops tracing and clears the traces (Python's tracemalloc.stop()).
inline void stop() noexcept;

/**
 * Whether allocations made with the global operator new reach the tracer: true in a program
 * that includes memlens/track_new.hpp in one of its .cpp files. Without it only Allocator,
 * TracingResource, track() and the small objects make takes from its pool are traced. Found by
 * allocating one block:
 * while tracing, now; otherwise as the last start() found it, or, before any, by tracing for
 * the moment of that allocation (as start() then stop() would).
 */
inline bool is_hooked() {
  namespace t = memlens::detail::trace;
  if (is_tracing()) {
    if (auto traced = detail::probe_operator_new()) return *traced;
  }
  if (const int known = t::state.new_hooked.load(std::memory_order_relaxed); known >= 0) {
    return known == 1;
  }
  bool started = false;
  {
    t::LockGuard lock;
    if (!t::state.tracing.load(std::memory_order_relaxed)) {
      t::state.tracing.store(true, std::memory_order_relaxed);
      started = true;
    }
  }
  const std::optional<bool> traced = detail::probe_operator_new();
  if (started) stop();
  return traced.value_or(false);
}

/// Python's tracemalloc.clear_traces(): forgets every trace, and current and peak are 0.
inline void clear_traces() noexcept {
  namespace t = memlens::detail::trace;
  t::LockGuard lock;
  t::clear_locked();
}

namespace detail {

/// Raises the peak to at least `peak` (a nested measurement gives the outer one its peak back
/// after reset_peak).
inline void raise_peak(std::size_t peak) noexcept {
  namespace t = memlens::detail::trace;
  t::LockGuard lock;
  if (peak > t::state.peak.get()) t::state.peak.set(peak);
}

}  // namespace detail

inline void stop() noexcept {
  namespace t = memlens::detail::trace;
  // One critical section: a start() between turning tracing off and clearing would otherwise
  // lose the traces taken after it.
  t::LockGuard lock;
  t::state.tracing.store(false, std::memory_order_relaxed);
  t::state.sample_bytes.store(0, std::memory_order_relaxed);
  t::clear_locked();
}

/// Current and peak size of the traced allocations (Python's get_traced_memory); {0, 0} when
/// not tracing. `auto [current, peak] = get_traced_memory();` When sampling (get_sample_bytes()
/// is not 0), both are estimates: each sampled block counts for size / p(size) bytes (see
/// TraceOptions). `current` is unbiased; `peak` is the highest `current` reached, which the
/// noise of the estimate pushes up a little.
struct TracedMemory {
  std::size_t current = 0;
  std::size_t peak = 0;
};

/// See TracedMemory.
inline TracedMemory get_traced_memory() noexcept {
  namespace t = memlens::detail::trace;
  t::LockGuard lock;
  if (!t::state.tracing.load(std::memory_order_relaxed)) return {};
  return {t::state.current.get(), t::state.peak.get()};
}

namespace detail {

/// get_traced_memory() without the tracer's lock, for a thread that samples it periodically:
/// never makes an allocating thread wait. The two figures are read one after the other, so
/// the peak may lag the current size by an allocation; it is raised to it.
inline TracedMemory traced_memory_unlocked() noexcept {
  namespace t = memlens::detail::trace;
  if (!t::state.tracing.load(std::memory_order_relaxed)) return {};
  const std::size_t current = t::state.current.get();
  return {current, std::max(current, t::state.peak.get())};
}

}  // namespace detail

/// Sets the peak to the current size (Python's tracemalloc.reset_peak).
inline void reset_peak() noexcept {
  namespace t = memlens::detail::trace;
  t::LockGuard lock;
  t::state.peak.set(t::state.current.get());
}

/// TraceOptions::sample_bytes of the tracing in force: 0 when every allocation is traced, and
/// when not tracing.
inline std::size_t get_sample_bytes() noexcept {
  return memlens::detail::trace::state.sample_bytes.load(std::memory_order_relaxed);
}

/// The number of frames stored per traceback (Python's get_traceback_limit).
inline int get_traceback_limit() noexcept {
  return memlens::detail::trace::state.nframe.load(std::memory_order_relaxed);
}

/// Bytes the tracer itself uses for its tables (Python's get_tracemalloc_memory); never traced.
inline std::size_t get_tracemalloc_memory() noexcept {
  namespace t = memlens::detail::trace;
  t::LockGuard lock;
  return sizeof(t::State) + t::state.traces.memory() + t::state.tracebacks.memory();
}

inline void set_skip_std_frames(bool skip) noexcept {
  detail::skip_std_frames.store(skip, std::memory_order_relaxed);
}
inline bool get_skip_std_frames() noexcept {
  return detail::skip_std_frames.load(std::memory_order_relaxed);
}

/// The traces of all live traced allocations (Python's tracemalloc.take_snapshot).
inline Snapshot take_snapshot() {
  namespace t = memlens::detail::trace;
  std::shared_ptr<detail::SnapshotData> data;
  {
    // The copy is the tracer's memory, like its tables: never traced. The scope also keeps
    // allocations made under the lock from entering the tracer, which would wait for the lock
    // this thread holds.
    t::TracerScope scope;
    data = std::make_shared<detail::SnapshotData>();
    data->skip_std = get_skip_std_frames();
    t::LockGuard lock;
    if (!t::state.tracing.load(std::memory_order_relaxed)) {
      throw TracingError(
          "tracemalloc: the tracemalloc module must be tracing memory allocations to take a "
          "snapshot");
    }
    data->traceback_limit = t::state.nframe.load(std::memory_order_relaxed);
    data->sample_bytes = t::state.sample_bytes.load(std::memory_order_relaxed);
    data->traces.reserve(t::state.traces.count());
    t::state.traces.for_each([&](std::size_t size, std::uint32_t traceback, std::uint32_t domain) {
      data->traces.push_back(detail::RawTrace{size, traceback, domain});
    });
    const auto& tbs = t::state.tracebacks;
    data->records.assign(tbs.records, tbs.records + tbs.nrecords);
    data->pcs.assign(tbs.frames, tbs.frames + tbs.nframes);
  }
  return Snapshot(std::move(data));
}

/// Where the object at `ptr` was allocated, if it is traced (Python's get_object_traceback;
/// unlike Python's, the traceback has its total_nframe). While sampling, only the sampled
/// blocks have one.
inline std::optional<Traceback> get_object_traceback(const void* ptr, unsigned domain = 0) {
  namespace t = memlens::detail::trace;
  auto data = std::make_shared<detail::SnapshotData>();
  data->skip_std = get_skip_std_frames();
  {
    t::TracerScope scope;
    t::LockGuard lock;
    if (!t::state.tracing.load(std::memory_order_relaxed)) return std::nullopt;
    const std::uint32_t id =
        t::state.traces.traceback_of(reinterpret_cast<std::uintptr_t>(ptr), domain);
    if (id == t::TracebackTable::none) return std::nullopt;
    const auto& r = t::state.tracebacks.records[id];
    data->traceback_limit = t::state.nframe.load(std::memory_order_relaxed);
    data->records.push_back(t::TracebackRecord{r.hash, 0, r.count, r.total});
    data->pcs.assign(t::state.tracebacks.frames + r.offset,
                     t::state.tracebacks.frames + r.offset + r.count);
  }
  return data->symbolized().front();
}

namespace detail {

/// A snapshot's traces as the tracer keeps them: tracebacks by index, not symbolized. Tools read
/// it to count traces per traceback without symbolizing every one.
inline const SnapshotData& snapshot_data(const Snapshot& snapshot) noexcept {
  return *snapshot.data_;
}

/// The index of the traceback of each traced block in `blocks` (domain 0), as the tracer's
/// tables number them while tracing goes on, or memlens::detail::trace::TracebackTable::none.
inline std::vector<std::uint32_t> traceback_ids(const std::vector<const void*>& blocks) {
  namespace t = memlens::detail::trace;
  std::vector<std::uint32_t> ids(blocks.size(), t::TracebackTable::none);
  t::TracerScope scope;
  t::LockGuard lock;
  if (!t::state.tracing.load(std::memory_order_relaxed)) return ids;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    ids[i] = t::state.traces.traceback_of(reinterpret_cast<std::uintptr_t>(blocks[i]), 0);
  }
  return ids;
}

/// The traceback of each record of a snapshot, by the tracer's index, symbolized together
/// once per snapshot (the data is shared and was made mutable; only its cache is filled).
inline const std::vector<Traceback>& tracebacks_by_id(const Snapshot& snapshot) {
  return const_cast<SnapshotData&>(snapshot_data(snapshot)).symbolized();
}

/**
 * For each traceback index in `ids`, the functions of the library frames that allocated before
 * the user's line (memlens' and the standard library's, innermost first): what kind of block
 * it is (a vector's regrowth, a map's node). Empty lists for a snapshot loaded from a file,
 * which keeps the shown frames only.
 */
inline std::vector<std::vector<std::string>> allocating_functions(
    const Snapshot& snapshot, const std::vector<std::uint32_t>& ids) {
  namespace t = memlens::detail::trace;
  const SnapshotData& data = snapshot_data(snapshot);
  std::vector<std::vector<std::string>> out(ids.size());
  std::vector<std::uintptr_t> pcs;
  for (std::uint32_t id : ids) {
    if (id >= data.records.size()) continue;
    const auto& r = data.records[id];
    pcs.insert(pcs.end(), data.pcs.begin() + r.offset, data.pcs.begin() + r.offset + r.count);
  }
  if (pcs.empty()) return out;
  const t::SymbolTable symbols(std::move(pcs));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= data.records.size()) continue;
    const auto& r = data.records[ids[i]];
    bool user = false;
    for (std::size_t k = 0; k < r.count && !user; ++k) {
      for (const t::SymbolInfo& f : symbols.chain(data.pcs[r.offset + k])) {
        if (!t::is_memlens_frame(f) && !t::is_std_frame(f)) {
          user = true;
          break;
        }
        out[i].push_back(f.function);
      }
    }
  }
  return out;
}

}  // namespace detail

/// Where a memlens object was made (Python's get_object_traceback(obj)): the traceback of the
/// block make() allocated for it, whether it came from operator new or from the object pool.
/// Empty for a null Ref, an object made while tracing was off, or one not made by make().
template <class T>
std::optional<Traceback> get_object_traceback(const Ref<T>& object) {
  if (!object) return std::nullopt;
  const Object* o = object.object();
  if (!(memlens::detail::Access::flags(o) & memlens::detail::flag::heap)) return std::nullopt;
  return get_object_traceback(memlens::detail::allocation_start(o));
}

/**
 * Traces an allocation made by a custom allocator, in `domain` (Python's PyTraceMalloc_Track).
 * Returns false when not tracing. The traceback starts at the caller of track().
 */
MEMLENS_NOINLINE inline bool track(const void* ptr, std::size_t size,
                                   unsigned domain = 0) noexcept {
  if (!memlens::detail::trace::tracing()) return false;
  memlens::detail::trace::on_alloc(reinterpret_cast<std::uintptr_t>(ptr), size, domain,
                                   __builtin_frame_address(0));
  return true;
}

/// Forgets an allocation traced with track() (Python's PyTraceMalloc_Untrack).
inline bool untrack(const void* ptr, unsigned domain = 0) noexcept {
  if (!memlens::detail::trace::tracing()) return false;
  memlens::detail::trace::on_free(reinterpret_cast<std::uintptr_t>(ptr), domain);
  return true;
}

/**
 * A standard allocator whose allocations are traced, for scoped use without the global hook:
 * `std::vector<int, memlens::tracemalloc::Allocator<int>> v;`. Allocates with malloc, so it is
 * traced once even when track_new.hpp is in the program too.
 */
template <class T>
class Allocator {
 public:
  using value_type = T;

  Allocator() noexcept = default;
  template <class U>
  Allocator(const Allocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  MEMLENS_NOINLINE T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    std::size_t bytes = n * sizeof(T);
    void* p = memlens::detail::trace::untraced_allocate(bytes, alignof(T));
    if (p == nullptr) throw std::bad_alloc();
    if (memlens::detail::trace::tracing()) {
      memlens::detail::trace::on_alloc(reinterpret_cast<std::uintptr_t>(p), bytes, 0,
                                       __builtin_frame_address(0));
    }
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept {
    if (memlens::detail::trace::tracing())
      memlens::detail::trace::on_free(reinterpret_cast<std::uintptr_t>(p), 0);
    memlens::detail::trace::untraced_free(p);
  }

  template <class U>
  friend bool operator==(const Allocator&, const Allocator<U>&) noexcept {
    return true;
  }
};

/// A memory resource that allocates with malloc, unseen by the global hook: the default
/// upstream of TracingResource.
MEMLENS_SHARED inline std::pmr::memory_resource* malloc_resource() noexcept {
  class MallocResource final : public std::pmr::memory_resource {
    void* do_allocate(std::size_t bytes, std::size_t alignment) override {
      void* p = memlens::detail::trace::untraced_allocate(bytes, alignment);
      if (p == nullptr) throw std::bad_alloc();
      return p;
    }
    void do_deallocate(void* p, std::size_t, std::size_t) override {
      memlens::detail::trace::untraced_free(p);
    }
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
      return this == &other;
    }
  };
  static auto* resource = new MallocResource();  // immortal
  return resource;
}

/**
 * A std::pmr::memory_resource that traces what it allocates from `upstream` in `domain`:
 *
 * ```cpp
 * memlens::tracemalloc::TracingResource resource;
 * std::pmr::vector<int> v(&resource);
 * ```
 */
class TracingResource : public std::pmr::memory_resource {
 public:
  explicit TracingResource(std::pmr::memory_resource* upstream = malloc_resource(),
                           unsigned domain = 0) noexcept
      : upstream_(upstream), domain_(domain) {}

  std::pmr::memory_resource* upstream_resource() const noexcept { return upstream_; }
  unsigned domain() const noexcept { return domain_; }

 protected:
  MEMLENS_NOINLINE void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    void* p = upstream_->allocate(bytes, alignment);
    if (memlens::detail::trace::tracing()) {
      memlens::detail::trace::on_alloc(reinterpret_cast<std::uintptr_t>(p), bytes, domain_,
                                       __builtin_frame_address(0));
    }
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    if (memlens::detail::trace::tracing())
      memlens::detail::trace::on_free(reinterpret_cast<std::uintptr_t>(p), domain_);
    upstream_->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

 private:
  std::pmr::memory_resource* upstream_;
  unsigned domain_;
};

}  // namespace memlens::tracemalloc

#include "memlens/detail/trace_file.hpp"
