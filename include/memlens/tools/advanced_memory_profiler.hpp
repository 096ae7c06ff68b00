// memlens: seed exercise 15, "advanced memory profiling": allocations by type and by line over
// time, leaks found automatically, suggestions computed from what was measured, and one
// self-contained HTML report with a timeline and flame graphs.
#pragma once

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/detail/profile_report.hpp"
#include "memlens/detail/trace_core.hpp"
#include "memlens/errors.hpp"
#include "memlens/gc.hpp"
#include "memlens/sys.hpp"
#include "memlens/tools/circular_reference_detector.hpp"
#include "memlens/tools/memory_leak_detector.hpp"
#include "memlens/tools/memory_profiler.hpp"
#include "memlens/tracemalloc.hpp"

namespace memlens {

/// How an AdvancedMemoryProfiler measures.
struct ProfilerOptions {
  /// Frames per traceback, when the profiler starts tracemalloc itself.
  int nframe = 16;
  /// How often the sampler thread records the timeline; zero: no thread, the timeline has a
  /// point at start(), at each snapshot and at stop() only.
  std::chrono::nanoseconds sample_interval = std::chrono::milliseconds(10);
  /// Sampled tracing for long runs: 0 traces every allocation; N traces an allocation of `size`
  /// bytes with probability 1 - exp(-size/N) and scales the statistics (tracemalloc's
  /// TraceOptions::sample_bytes). Used when the profiler starts tracemalloc itself.
  std::size_t sample_bytes = 0;
  /// Run gc::collect() before each snapshot, so that growth and leaks count only what nothing
  /// frees (as MemoryLeakDetector does).
  bool collect_first = true;
  /// A leak grows in every interval between the last `min_snapshots` snapshots (at least 2).
  std::size_t min_snapshots = 3;
  /// Rows of the report's top-sites and growth tables.
  std::size_t report_rows = 25;
  /// Points the timeline keeps (at least 2): when full, each pair of points becomes one (their
  /// highest values) and later points each stand for twice as many samples, so a long run
  /// takes bounded memory.
  std::size_t timeline_points = 1 << 16;
  /// Call stacks drawn in the report's flame graphs, per snapshot (the largest); the rest are
  /// folded into one "other" box, so the file stays small whatever the capture.
  std::size_t flame_stacks = 2000;
};

/// One point of the memory timeline.
struct TimelinePoint {
  /// Time since start().
  std::chrono::nanoseconds elapsed{0};
  /// Traced bytes (tracemalloc's current) and the highest since start() (its peak).
  std::size_t traced_current = 0;
  std::size_t traced_peak = 0;
  /// The process's resident set size in bytes (0 where the system does not tell).
  std::size_t rss = 0;
};

/// How one type's objects or one line's allocations changed from the first snapshot to the last.
struct Growth {
  enum class Kind { type, site };
  Kind kind = Kind::site;
  /// A type's name (as type_name prints it), or the `file:line` that allocated.
  std::string label;
  std::ptrdiff_t size_diff = 0;
  std::ptrdiff_t count_diff = 0;
  /// Bytes and objects (or blocks) at the last snapshot.
  std::size_t size = 0;
  std::size_t count = 0;
  /// For a site: its traceback (most recent frame first); empty for a type.
  tracemalloc::Traceback traceback;
};

/// A change to the code, computed from what the profiler measured.
struct Suggestion {
  /// The rule that found it: "reserve", "pool", "fixed-layout", "stream", "leak" or "weak".
  std::string rule;
  /// What was measured and what to change, with the figures.
  std::string message;
  /// Where: the `file:line` that allocated, or `type T` for a rule about a memlens type whose
  /// allocating line is not known.
  std::string site;
  /// The bytes the change would save, estimated from the measurements (see each rule).
  std::size_t estimated_saving = 0;
  /// The traceback of the site, most recent frame first, where there is one.
  tracemalloc::Traceback traceback;
};

/// A reference cycle the collector freed while the profiler ran: one example per type.
struct FoundCycle {
  /// The type of the object the example starts from.
  std::string type_name;
  /// The objects of that type in the garbage the collection found.
  std::size_t objects = 0;
  /// The snapshot whose collection found it.
  std::string snapshot;
  /// The cycle by types and members: `Parent -.child-> Child -.parent-> Parent`.
  std::string path;
};

namespace detail {

/// What the suggestion rules read about one allocating line of a snapshot.
struct SiteUse {
  std::string key;  // file:line
  tracemalloc::Traceback traceback;
  std::size_t bytes = 0;
  std::size_t count = 0;
  std::size_t malloc_overhead = 0;  // the allocator's bytes beside these blocks (glibc's chunks)
  std::size_t regrown_bytes = 0;    // blocks made by a vector growing (push_back, resize)
  std::size_t regrown_count = 0;
  std::size_t node_count = 0;       // nodes of std::map, std::set, std::unordered_map...
  std::size_t node_bytes = 0;
  std::size_t node_overhead = 0;    // their links and the allocator's header
  std::size_t bucket_count = 0;     // the bucket arrays of unordered containers
  std::size_t bucket_bytes = 0;
  std::size_t object_count = 0;     // memlens objects (make): pooled, counted by type
  std::size_t unclassified_count = 0;  // malloc'd blocks of no kind above
  std::size_t unclassified_bytes = 0;
  std::size_t unclassified_overhead = 0;
};

/// The block glibc's malloc carves for a request of `size` bytes on a 64-bit system: an
/// 8-byte header, 16-byte alignment, 32 bytes at least.
constexpr std::size_t malloc_chunk(std::size_t size) noexcept {
  const std::size_t chunk = (size + 8 + 15) & ~std::size_t{15};
  return chunk < 32 ? 32 : chunk;
}

/// The bytes a std::map/std::set node carries beside its value in libstdc++: colour, parent,
/// left and right (`_Rb_tree_node_base`).
inline constexpr std::size_t rb_tree_links = 32;
/// An unordered container's node: its `next` pointer (the cached hash is not counted).
inline constexpr std::size_t hash_node_links = 8;

inline bool contains(std::string_view text, std::string_view part) noexcept {
  return text.find(part) != std::string_view::npos;
}

inline std::size_t rounded(double x) noexcept {
  return static_cast<std::size_t>(std::llround(x));
}

/// The allocating lines of `snapshot`, by `file:line`, with what the rules need to know about
/// each: the kind of each block from the library functions that allocated it.
inline std::vector<SiteUse> site_uses(const tracemalloc::Snapshot& snapshot) {
  namespace tm = memlens::tracemalloc;
  const auto& data = tm::detail::snapshot_data(snapshot);
  struct ById {
    double bytes = 0, count = 0, overhead = 0;
  };
  std::unordered_map<std::uint32_t, ById> by_id;
  // Sampled tracing: a block stands for 1 / p of its kind (see tracemalloc::TraceOptions).
  const std::size_t mean = data.sample_bytes;
  for (const auto& t : data.traces) {
    const double weight =
        mean == 0 || t.size == 0 ? 1.0 : 1.0 / memlens::detail::trace::sample_probability(t.size, mean);
    ById& b = by_id[t.traceback];
    b.bytes += static_cast<double>(t.size) * weight;
    b.count += weight;
    b.overhead += static_cast<double>(malloc_chunk(t.size) - t.size) * weight;
  }
  std::vector<std::uint32_t> ids;
  ids.reserve(by_id.size());
  for (const auto& [id, b] : by_id) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  const auto& tracebacks = tm::detail::tracebacks_by_id(snapshot);
  const auto functions = tm::detail::allocating_functions(snapshot, ids);
  std::unordered_map<std::string, std::size_t> index;
  std::vector<SiteUse> sites;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const ById& weighed = by_id[ids[i]];
    struct {
      std::size_t bytes, count, overhead;
    } const b{rounded(weighed.bytes), rounded(weighed.count), rounded(weighed.overhead)};
    const tm::Traceback& tb = tracebacks[ids[i]];
    std::string key = tm::to_string(tb);
    auto [it, added] = index.emplace(key, sites.size());
    if (added) sites.push_back(SiteUse{std::move(key), tb});
    SiteUse& s = sites[it->second];
    s.bytes += b.bytes;
    s.count += b.count;
    s.malloc_overhead += b.overhead;
    bool regrown = false, rb_node = false, hash_node = false, buckets = false, object = false;
    for (const std::string& f : functions[i]) {
      regrown = regrown || contains(f, "_M_realloc_insert") || contains(f, "_M_realloc_append") ||
                contains(f, "_M_default_append");
      rb_node = rb_node || contains(f, "_Rb_tree");
      buckets = buckets || contains(f, "_M_allocate_buckets");
      hash_node = hash_node || (contains(f, "_Hashtable_alloc") && contains(f, "_M_allocate_node"));
      object = object || (f.rfind("memlens::make<", 0) == 0);
    }
    if (object) {
      s.object_count += b.count;
    } else if (regrown) {
      s.regrown_bytes += b.bytes;
      s.regrown_count += b.count;
    } else if (buckets) {
      s.bucket_bytes += b.bytes;
      s.bucket_count += b.count;
    } else if (rb_node || hash_node) {
      s.node_bytes += b.bytes;
      s.node_count += b.count;
      s.node_overhead += b.overhead + b.count * (rb_node ? rb_tree_links : hash_node_links);
    } else {
      s.unclassified_bytes += b.bytes;
      s.unclassified_count += b.count;
      s.unclassified_overhead += b.overhead;
    }
  }
  return sites;
}

}  // namespace detail

/**
 * The memory profiler of seed exercise 15: labelled snapshots of the traced allocations and of
 * the live objects by type, a timeline recorded by a sampler thread, growth by type and by line,
 * leaks found by MemoryLeakDetector, suggestions computed from the measurements, and a
 * self-contained HTML report (timeline, tables, flame graphs), an SVG timeline and a terminal
 * sparkline. Built on MemoryProfiler (snapshots, tracing), MemoryLeakDetector (leaks) and
 * sys::type_stats (objects by type).
 *
 * ```cpp
 * memlens::AdvancedMemoryProfiler profiler;
 * profiler.start();
 * profiler.take_snapshot("Initial");
 * run_workload();
 * profiler.take_snapshot("After workload");
 * profiler.stop();
 * for (const auto& s : profiler.suggest_optimizations()) fmt::print("{}\n", s);
 * profiler.generate_report("memory_report.html");
 * ```
 *
 * One thread drives a profiler, under memlens' threading rule (it walks the heap to find
 * leaks); allocations on every thread are traced. The sampler thread reads the traced totals and
 * the resident set size only, and allocates nothing that is traced.
 */
class AdvancedMemoryProfiler {
 public:
  /// Throws ValueError for an option out of range (naming it).
  explicit AdvancedMemoryProfiler(ProfilerOptions options = {})
      : options_(validated(options)) {}
  /// Stops and joins the sampler thread, and stops tracing if start() started it.
  ~AdvancedMemoryProfiler() { stop_sampler(); }
  AdvancedMemoryProfiler(const AdvancedMemoryProfiler&) = delete;
  AdvancedMemoryProfiler& operator=(const AdvancedMemoryProfiler&) = delete;

  /**
   * Starts a profile, forgetting any earlier one: starts tracemalloc with `nframe` frames (and
   * `sample_bytes`) unless it is tracing already, and the sampler thread. Throws memlens::Error
   * when already running.
   */
  void start() {
    if (running_) throw Error("AdvancedMemoryProfiler: start() called twice: already running");
    leaks_at_stop_.reset();
    cycles_.clear();
    {
      std::lock_guard<std::mutex> lock(timeline_mutex_);
      timeline_.clear();
      pending_ = {};
      pending_samples_ = 0;
      stride_ = 1;
    }
    // The detector's snapshots are this profile's: a new one per profile. It sees tracing on
    // and leaves it to the MemoryProfiler.
    detector_.reset();
    profiler_.start(options_.nframe, tracemalloc::TraceOptions{options_.sample_bytes});
    detector_.emplace(LeakDetectorOptions{options_.nframe, options_.min_snapshots, false});
    detector_->start_monitoring();
    start_time_ = std::chrono::steady_clock::now();
    {
      memlens::detail::trace::TracerScope untraced;
      start_types_ = sys::type_stats();
    }
    running_ = true;
    record_point();
    if (options_.sample_interval > std::chrono::nanoseconds::zero()) start_sampler();
  }

  /**
   * Ends the profile: stops the sampler, finds the leaks while the tracer still knows every
   * block (detect_leaks() returns them from now on), and stops tracemalloc if start() started
   * it. Throws memlens::Error when not running.
   */
  void stop() {
    if (!running_) {
      throw Error(stopped_ ? "AdvancedMemoryProfiler: stop() called twice: not running"
                           : "AdvancedMemoryProfiler: stop() before start()");
    }
    stop_sampler();
    record_point();
    if (detector_->snapshots().size() >= options_.min_snapshots) {
      leaks_at_stop_ = detector_->find_leaks();
    }
    end_types_ = types_now();
    summary_ = profiler_.stop();
    detector_->stop_monitoring();
    running_ = false;
    stopped_ = true;
  }

  /**
   * Records the traced allocations, the live objects by type and the resident set size (after
   * gc::collect() when `collect_first`), marks the moment on the timeline and returns the
   * record. An empty label becomes `#n`. Throws memlens::Error when not running and ValueError
   * for a label already taken.
   */
  const ProfileSnapshot& take_snapshot(std::string label = {}) {
    if (!running_) {
      throw Error("AdvancedMemoryProfiler: take_snapshot(\"" + label + "\") " +
                  (stopped_ ? "after stop()" : "before start()"));
    }
    if (label.empty()) label = "#" + std::to_string(profiler_.snapshots().size() + 1);
    if (options_.collect_first) collect_describing_cycles(label);
    const ProfileSnapshot& taken = profiler_.snapshot(label);
    {
      memlens::detail::trace::TracerScope untraced;
      detector_->add_snapshot(LeakSnapshot{taken.label, taken.types, taken.snapshot});
    }
    record_point();
    return taken;
  }

  /**
   * Reference cycles the collections before snapshots freed (with `collect_first`): for each
   * type, the first example found, by types and member names. At most `max_found_cycles`.
   */
  const std::vector<FoundCycle>& found_cycles() const noexcept { return cycles_; }

  /// Types whose cycles found_cycles() describes, at most.
  static constexpr std::size_t max_found_cycles = 20;

  /// The snapshots of the current (or last) profile, in the order taken.
  const std::deque<ProfileSnapshot>& snapshots() const noexcept { return profiler_.snapshots(); }

  /**
   * How memory changed from the first snapshot to the last, by type (sys::type_stats) and by
   * allocating line, largest growth first (a negative size_diff is memory freed). Unchanged
   * types and lines are left out. Throws ValueError with fewer than two snapshots.
   */
  std::vector<Growth> analyze_growth() const {
    if (snapshot_count() < 2) {
      throw ValueError("AdvancedMemoryProfiler: analyze_growth() needs two snapshots, " +
                       std::to_string(snapshot_count()) + " taken");
    }
    const auto& all = detector_->snapshots();
    const SnapshotComparison cmp = MemoryLeakDetector::compare_snapshots(all.front(), all.back());
    std::vector<Growth> out;
    for (const TypeGrowth& g : cmp.by_type) {
      if (g.size_diff == 0 && g.count_diff == 0) continue;
      std::size_t size = 0;
      for (const auto& t : all.back().types) {
        if (t.type_name == g.type_name) size = t.bytes;
      }
      out.push_back(Growth{Growth::Kind::type, g.type_name, g.size_diff, g.count_diff, size,
                           g.count_after, {}});
    }
    for (const auto& d : cmp.by_site) {
      if (d.size_diff == 0 && d.count_diff == 0) continue;
      out.push_back(Growth{Growth::Kind::site,
                           tracemalloc::to_string(d.traceback),
                           d.size_diff, d.count_diff, d.size, d.count, d.traceback});
    }
    std::stable_sort(out.begin(), out.end(), [](const Growth& a, const Growth& b) {
      return a.size_diff > b.size_diff;
    });
    return out;
  }

  /**
   * The types and allocating lines that grew in every interval of the last `min_snapshots`
   * snapshots (MemoryLeakDetector::find_leaks), with where they were made and what keeps them
   * alive. After stop(), the leaks found when it ran. Throws ValueError before `min_snapshots`
   * snapshots.
   */
  std::vector<SuspectedLeak> detect_leaks() {
    if (!running_ && leaks_at_stop_) return *leaks_at_stop_;
    if (!running_ || snapshot_count() < options_.min_snapshots) {
      throw ValueError("AdvancedMemoryProfiler: detect_leaks() needs " +
                       std::to_string(options_.min_snapshots) + " snapshots, " +
                       std::to_string(snapshot_count()) + " taken");
    }
    return detector_->find_leaks();
  }

  /**
   * Changes to the code, each computed from the measurements, largest estimated saving first.
   * The rules (the allocating line's blocks are told apart by the library functions that
   * allocated them, from the tracebacks):
   * - "reserve": vectors at one line that grew by reallocation (push_back without reserve).
   *   While a vector grows, its old block and the new one, twice as large, live together:
   *   saving, half the bytes of those vectors.
   * - "pool": many small blocks from one line (1,000 or more): each pays the allocator's header
   *   and rounding (glibc's chunks): saving, those bytes, which a pool or one array does not pay.
   * - "fixed-layout": many map or set nodes from one line (1,000 or more), as per-object maps
   *   are: each node carries links and the allocator's header beside its value: saving, those
   *   bytes and the bucket arrays, which struct members do not need.
   * - "stream": a line whose bytes at one snapshot were at least twice those at the last, by
   *   1 MiB or more: temporaries materialised whole; saving, the difference.
   * - "leak": each suspected leak (detect_leaks): saving, its growth over the window.
   * - "weak": memlens types whose objects only the cycle collector freed: saving, those
   *   objects' bytes, held until a collection found them.
   */
  std::vector<Suggestion> suggest_optimizations() {
    const auto& all = profiler_.snapshots();
    std::vector<Suggestion> out;
    if (!all.empty()) {
      const auto uses = detail::site_uses(all.back().snapshot);
      for (const auto& s : uses) {
        suggest_reserve(s, out);
        suggest_pool(s, out);
        suggest_fixed_layout(s, out);
      }
      suggest_stream(out);
    }
    if (snapshot_count() >= options_.min_snapshots) {
      for (const SuspectedLeak& leak : detect_leaks()) suggest_leak(leak, out);
    }
    suggest_weak(out);
    std::stable_sort(out.begin(), out.end(), [](const Suggestion& a, const Suggestion& b) {
      return a.estimated_saving > b.estimated_saving;
    });
    return out;
  }

  /// The timeline's points, oldest first: at most `timeline_points` (see ProfilerOptions).
  std::vector<TimelinePoint> timeline() const {
    std::lock_guard<std::mutex> lock(timeline_mutex_);
    return timeline_;
  }

  /**
   * The timeline of traced memory in `width` characters (one Unicode block per column, from
   * ▁ to █, each column the highest value of its span of time), as the examples print it.
   * Empty when the timeline is.
   */
  std::string sparkline(std::size_t width = 60) const {
    const auto points = timeline();
    if (points.empty() || width == 0) return {};
    const auto end = points.back().elapsed;
    std::vector<std::size_t> columns(width, 0);
    std::vector<bool> seen(width, false);
    for (const auto& p : points) {
      std::size_t c = end.count() > 0 ? static_cast<std::size_t>(
                                            static_cast<double>(p.elapsed.count()) /
                                            static_cast<double>(end.count()) *
                                            static_cast<double>(width - 1))
                                      : 0;
      c = std::min(c, width - 1);
      columns[c] = std::max(columns[c], p.traced_current);
      seen[c] = true;
    }
    // A column no sample fell into shows the one before it: memory stayed where it was.
    for (std::size_t c = 1; c < width; ++c) {
      if (!seen[c]) columns[c] = columns[c - 1];
    }
    const std::size_t top = *std::max_element(columns.begin(), columns.end());
    static constexpr const char* blocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    std::string out;
    for (std::size_t v : columns) {
      const std::size_t level =
          top == 0 ? 0
                   : std::min<std::size_t>(7, static_cast<std::size_t>(static_cast<double>(v) /
                                                                       static_cast<double>(top) *
                                                                       8.0));
      out += blocks[level];
    }
    return out;
  }

  /**
   * Writes the report: one self-contained HTML file (inline style, script and SVG; nothing
   * loaded from anywhere) with the summary, the timeline with the snapshots marked, the lines
   * holding the most memory at the last snapshot, growth, suspected leaks with their retaining
   * paths, the reference cycles the collector freed, the suggestions, and flame graphs of live
   * memory by call stack (hover for bytes and counts, click to zoom) at each snapshot and of
   * the difference between any two. The file stays small whatever the capture: the timeline is
   * cut to 2,000 points, the flame graphs keep the `flame_stacks` largest stacks. Written
   * atomically (a temporary file renamed); throws memlens::Error naming the path when it cannot
   * be written. Works while running (the figures so far) and after stop().
   */
  void generate_report(const std::filesystem::path& path) {
    using namespace memlens::detail::report;
    Document doc;
    const auto& snaps = profiler_.snapshots();
    const auto points = timeline();
    const std::string program = program_name();
    doc.title = "Memory report" + (program.empty() ? std::string() : ": " + program);
    const auto end = running_ ? std::chrono::steady_clock::now() - start_time_
                              : summary_ ? summary_->duration : std::chrono::nanoseconds{0};
    std::size_t peak = 0, current = 0, rss_peak = 0;
    for (const auto& p : points) {
      peak = std::max(peak, p.traced_peak);
      rss_peak = std::max(rss_peak, p.rss);
    }
    if (!points.empty()) current = points.back().traced_current;
    if (summary_ && !running_) {
      peak = std::max(peak, summary_->peak);
      current = summary_->current;
    }
    const std::size_t live_blocks =
        snaps.empty() ? 0 : tracemalloc::detail::snapshot_data(snaps.back().snapshot).traces.size();
    doc.summary = {
        {"Program", program.empty() ? std::string("(unknown)") : program},
        {"Duration", memlens::detail::format_milliseconds(end)},
        {"Peak traced", bytes(peak)},
        {running_ ? "Traced now" : "Traced at stop", bytes(current)},
        {"Live allocations", snaps.empty() ? std::string("(no snapshot)")
                                           : fmt::format("{} at \"{}\"", live_blocks,
                                                         snaps.back().label)},
        {"Peak resident set", rss_peak ? bytes(rss_peak) : std::string("(unknown)")},
        {"Snapshots", std::to_string(snaps.size())},
        {"Tracing", options_.sample_bytes == 0
                        ? std::string("every allocation")
                        : "sampled, one per " + bytes(options_.sample_bytes) + " on average"},
    };
    for (const auto& p : points) {
      doc.timeline.push_back(Point{std::chrono::duration<double, std::milli>(p.elapsed).count(),
                                   p.traced_current, p.traced_peak, p.rss});
    }
    for (const auto& s : snaps) {
      doc.markers.push_back(
          Marker{std::chrono::duration<double, std::milli>(s.time - start_time_).count(), s.label});
    }
    doc.sections.push_back(top_sites_section());
    doc.sections.push_back(growth_section());
    doc.sections.push_back(leaks_section());
    doc.sections.push_back(cycles_section());
    doc.sections.push_back(suggestions_section());
    if (!snaps.empty()) {
      std::vector<std::pair<std::string, tracemalloc::Snapshot>> shown;
      std::size_t highest = 0;
      for (std::size_t i = 0; i < snaps.size(); ++i) {
        shown.emplace_back(snaps[i].label, snaps[i].snapshot);
        if (snaps[i].current >= snaps[highest].current) highest = i;
      }
      doc.flame = build_flame(shown, options_.flame_stacks);
      doc.flame_default = highest;
    }
    write_html(doc, path, "AdvancedMemoryProfiler: cannot write the report to");
  }

  /**
   * Writes the timeline as an SVG image: traced current and peak and the resident set size over
   * time, with the snapshots marked (at most 2,000 points). Written atomically; throws
   * memlens::Error naming the path when it cannot be written.
   */
  void plot_memory_timeline(const std::filesystem::path& path) const {
    using namespace memlens::detail::report;
    std::vector<Point> points;
    for (const auto& p : timeline()) {
      points.push_back(Point{std::chrono::duration<double, std::milli>(p.elapsed).count(),
                             p.traced_current, p.traced_peak, p.rss});
    }
    std::vector<Marker> markers;
    for (const auto& s : profiler_.snapshots()) {
      markers.push_back(
          Marker{std::chrono::duration<double, std::milli>(s.time - start_time_).count(), s.label});
    }
    write_timeline_svg(points, markers, path, 1100, 360,
                       "AdvancedMemoryProfiler: cannot write the timeline to");
  }

  /// The options the profiler was made with.
  const ProfilerOptions& options() const noexcept { return options_; }

  /// Whether start() was called and stop() not yet.
  bool is_running() const noexcept { return running_; }

 private:
  static ProfilerOptions validated(ProfilerOptions o) {
    if (o.nframe < 1 || o.nframe > memlens::detail::trace::max_nframe) {
      throw ValueError("AdvancedMemoryProfiler: nframe must be in [1, " +
                       std::to_string(memlens::detail::trace::max_nframe) + "], not " +
                       std::to_string(o.nframe));
    }
    if (o.sample_interval < std::chrono::nanoseconds::zero()) {
      throw ValueError("AdvancedMemoryProfiler: sample_interval must not be negative, got " +
                       std::to_string(o.sample_interval.count()) + " ns");
    }
    if (o.min_snapshots < 2) {
      throw ValueError("AdvancedMemoryProfiler: min_snapshots must be at least 2, not " +
                       std::to_string(o.min_snapshots));
    }
    if (o.sample_bytes > tracemalloc::TraceOptions::max_sample_bytes) {
      throw ValueError("AdvancedMemoryProfiler: sample_bytes must be at most " +
                       std::to_string(tracemalloc::TraceOptions::max_sample_bytes) + ", not " +
                       std::to_string(o.sample_bytes));
    }
    if (o.timeline_points < 2) {
      throw ValueError("AdvancedMemoryProfiler: timeline_points must be at least 2, not " +
                       std::to_string(o.timeline_points));
    }
    if (o.flame_stacks == 0) {
      throw ValueError("AdvancedMemoryProfiler: flame_stacks must be at least 1, not 0");
    }
    return o;
  }

  /**
   * gc::collect(), with a look at what it frees first: the collection keeps its garbage
   * (DEBUG_SAVEALL), one object of each new type is described with the cycle through it, and
   * a second collection frees them. The user's debug flags and garbage are left as they were.
   */
  void collect_describing_cycles(const std::string& label) {
    const int flags = gc::get_debug();
    auto& garbage = gc::garbage();
    const std::size_t before = garbage.size();
    gc::set_debug(flags | gc::DEBUG_SAVEALL);
    try {
      gc::collect();
    } catch (...) {
      gc::set_debug(flags);
      throw;
    }
    gc::set_debug(flags);
    if (garbage.size() == before) return;
    {
      memlens::detail::trace::TracerScope untraced;
      std::unordered_map<std::string, std::size_t> per_type;
      std::vector<std::pair<std::string, std::size_t>> first;  // type, index in garbage
      for (std::size_t i = before; i < garbage.size(); ++i) {
        std::string name = type_name(garbage[i]);
        if (per_type[name]++ == 0) first.emplace_back(std::move(name), i);
      }
      const CircularReferenceDetector detector;
      for (const auto& [type, index] : first) {
        if (cycles_.size() >= max_found_cycles) break;
        const std::string& name = type;  // a lambda cannot capture a structured binding
        const bool known = std::any_of(cycles_.begin(), cycles_.end(),
                                       [&](const FoundCycle& c) { return c.type_name == name; });
        if (known) continue;
        const auto found = detector.find_cycles(garbage[index], 1);
        if (found.empty()) continue;  // garbage only because a cycle refers to it
        std::string path;
        const Cycle& cycle = found.front();
        for (std::size_t i = 0; i < cycle.size(); ++i) {
          const std::string_view edge = cycle.edge_name(i);
          path += type_name(cycle[i]) + (edge.empty() ? " --> " : " -." + std::string(edge) + "-> ");
        }
        path += type_name(cycle.front());
        cycles_.push_back(FoundCycle{name, per_type[name], label, std::move(path)});
      }
    }
    // Let them go: drop the references garbage() held, then collect the cycles for real.
    garbage.erase(garbage.begin() + static_cast<std::ptrdiff_t>(before), garbage.end());
    gc::collect();
  }

  std::size_t snapshot_count() const noexcept {
    return detector_ ? detector_->snapshots().size() : 0;
  }

  // --- timeline ---

  /// Adds the current totals to the timeline. Called by the sampler thread and by the driving
  /// thread (start, snapshots, stop); takes no traced memory.
  void record_point() {
    memlens::detail::trace::TracerScope untraced;
    const auto [current, peak] = tracemalloc::detail::traced_memory_unlocked();
    TimelinePoint p{std::chrono::steady_clock::now() - start_time_, current, peak,
                    detail::resident_bytes()};
    std::lock_guard<std::mutex> lock(timeline_mutex_);
    // Once the timeline is full, each point stands for `stride_` samples: their highest values.
    if (pending_samples_ == 0) {
      pending_ = p;
    } else {
      pending_.elapsed = p.elapsed;
      pending_.traced_current = std::max(pending_.traced_current, p.traced_current);
      pending_.traced_peak = std::max(pending_.traced_peak, p.traced_peak);
      pending_.rss = std::max(pending_.rss, p.rss);
    }
    if (++pending_samples_ < stride_) return;
    pending_samples_ = 0;
    if (timeline_.size() >= options_.timeline_points) {
      // The first point (start()) stays as it is: the timeline begins at zero.
      std::size_t kept = 1;
      for (std::size_t i = 1; i < timeline_.size(); i += 2, ++kept) {
        const TimelinePoint& a = timeline_[i];
        const TimelinePoint& b = i + 1 < timeline_.size() ? timeline_[i + 1] : a;
        timeline_[kept] = TimelinePoint{b.elapsed, std::max(a.traced_current, b.traced_current),
                                        std::max(a.traced_peak, b.traced_peak),
                                        std::max(a.rss, b.rss)};
      }
      timeline_.resize(kept);
      stride_ *= 2;
    }
    timeline_.push_back(pending_);
  }

  void start_sampler() {
    {
      std::lock_guard<std::mutex> lock(sampler_mutex_);
      stop_requested_ = false;
    }
    // Made untraced: the thread's state is the profiler's memory, not the program's.
    memlens::detail::trace::TracerScope untraced;
    sampler_ = std::thread([this] { sample_loop(); });
  }

  void sample_loop() noexcept {
    std::unique_lock<std::mutex> lock(sampler_mutex_);
    while (!sampler_stop_.wait_for(lock, options_.sample_interval,
                                   [this] { return stop_requested_; })) {
      lock.unlock();
      try {
        record_point();
      } catch (...) {  // out of memory for the timeline: it stops growing, the program goes on
        return;
      }
      lock.lock();
    }
  }

  void stop_sampler() noexcept {
    if (!sampler_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(sampler_mutex_);
      stop_requested_ = true;
    }
    sampler_stop_.notify_all();
    sampler_.join();
  }

  // --- the report's sections ---

  static std::string program_name() {
    std::error_code error;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
    return error ? std::string() : exe.filename().string();
  }

  /// A cell that sorts as text.
  static detail::report::Cell text_cell(std::string text) {
    detail::report::Cell cell;
    cell.text = std::move(text);
    return cell;
  }
  static detail::report::Cell size_cell(std::size_t n) {
    return {bytes(n), static_cast<double>(n)};
  }
  static detail::report::Cell delta_cell(std::ptrdiff_t n) {
    return {memlens::detail::format_delta(n), static_cast<double>(n)};
  }
  static detail::report::Cell count_cell(std::ptrdiff_t n, bool sign = false) {
    return {sign ? fmt::format("{:+}", n) : std::to_string(n), static_cast<double>(n)};
  }

  detail::report::Section top_sites_section() const {
    detail::report::Section section{"top-sites", "Top allocation sites", {}, {}, {}, {}};
    const auto& snaps = profiler_.snapshots();
    if (snaps.empty()) {
      section.empty_text = "No snapshot was taken: call take_snapshot() to see lines.";
      return section;
    }
    const auto& last = snaps.back();
    section.intro = fmt::format("The lines holding the most traced memory at \"{}\" ({} in all).",
                                last.label, bytes(last.current));
    section.table.columns = {"Line", "Function", "Size", "Blocks", "Average", "Share"};
    const auto stats = last.snapshot.statistics("lineno");
    // The function is not part of a "lineno" statistic's key: read it from a traceback.
    std::unordered_map<std::string, std::string> function_of;
    for (const auto& st : last.snapshot.statistics("traceback")) {
      if (!st.traceback.empty()) function_of.emplace(tracemalloc::to_string(st.traceback),
                                                    st.traceback.front().function);
      if (function_of.size() > 4 * options_.report_rows) break;
    }
    for (std::size_t i = 0; i < stats.size() && i < options_.report_rows; ++i) {
      const auto& st = stats[i];
      const std::string line = tracemalloc::to_string(st.traceback);
      const auto f = function_of.find(line);
      section.table.rows.push_back(
          {text_cell(line), text_cell(f == function_of.end() ? std::string() : f->second),
           size_cell(st.size), count_cell(static_cast<std::ptrdiff_t>(st.count)),
           size_cell(st.count ? st.size / st.count : 0),
           {fmt::format("{:.1f} %", last.current ? 100.0 * static_cast<double>(st.size) /
                                                       static_cast<double>(last.current)
                                                 : 0.0),
            last.current ? static_cast<double>(st.size) / static_cast<double>(last.current) : 0}});
    }
    section.empty_text = "Nothing was traced at the last snapshot.";
    return section;
  }

  detail::report::Section growth_section() const {
    detail::report::Section section{"growth", "Growth", {}, {}, {}, {}};
    if (snapshot_count() < 2) {
      section.empty_text = "Growth needs two snapshots; " + std::to_string(snapshot_count()) +
                           " taken.";
      return section;
    }
    const auto& snaps = profiler_.snapshots();
    section.intro = fmt::format("From \"{}\" to \"{}\", by memlens type and by line, largest "
                                "growth first.", snaps.front().label, snaps.back().label);
    section.table.columns = {"Kind", "Type or line", "Size change", "Count change", "Size",
                             "Count"};
    const auto growth = analyze_growth();
    for (std::size_t i = 0; i < growth.size() && i < options_.report_rows; ++i) {
      const Growth& g = growth[i];
      section.table.rows.push_back({text_cell(g.kind == Growth::Kind::type ? "type" : "line"),
                                    text_cell(g.label),
                                    delta_cell(g.size_diff),
                                    count_cell(g.count_diff, true),
                                    size_cell(g.size),
                                    count_cell(static_cast<std::ptrdiff_t>(g.count))});
    }
    section.empty_text = "Nothing changed between the first and the last snapshot.";
    return section;
  }

  detail::report::Section leaks_section() {
    detail::report::Section section{"leaks", "Suspected leaks", {}, {}, {}, {}};
    if (!(leaks_at_stop_ && !running_) && snapshot_count() < options_.min_snapshots) {
      section.empty_text = fmt::format("The leak search needs {} snapshots; {} taken.",
                                       options_.min_snapshots, snapshot_count());
      return section;
    }
    section.intro = fmt::format("Types and lines whose live count grew in every interval of the "
                                "last {} snapshots, with what keeps them alive.",
                                options_.min_snapshots);
    section.table.columns = {"Type or line", "Count growth", "Size growth", "Per interval",
                             "Allocated at"};
    for (const SuspectedLeak& leak : detect_leaks()) {
      std::string per;
      for (auto n : leak.count_per_interval) per += (per.empty() ? "" : ", ") + fmt::format("{:+}", n);
      section.table.rows.push_back(
          {text_cell(leak.type_name.empty() ? "(blocks)" : leak.type_name),
           count_cell(leak.count_growth, true), delta_cell(leak.size_growth), text_cell(per),
           text_cell(leak.site.empty() ? std::string("(not traced)") : tracemalloc::to_string(leak.site))});
      section.details.push_back(MemoryLeakDetector::format_leak(leak));
    }
    section.empty_text = "No suspected leak: nothing grew in every interval.";
    return section;
  }

  detail::report::Section cycles_section() const {
    detail::report::Section section{"cycles", "Reference cycles", {}, {}, {}, {}};
    section.intro = "memlens types whose objects only the cycle collector freed while the "
                    "profiler ran, with a cycle it found through one of them.";
    section.table.columns = {"Type", "Freed by the collector", "Bytes", "Example found at",
                             "Cycle"};
    const std::vector<sys::TypeStats> now = types_now();
    for (const auto& t : now) {
      const std::uint64_t collected = t.collected - collected_at_start(t.type_name);
      if (collected == 0) continue;
      const FoundCycle* example = nullptr;
      for (const auto& c : cycles_) {
        if (c.type_name == t.type_name) example = &c;
      }
      section.table.rows.push_back(
          {text_cell(t.type_name), count_cell(static_cast<std::ptrdiff_t>(collected)),
           size_cell(static_cast<std::size_t>(collected) * t.object_size),
           text_cell(example ? example->snapshot : std::string()),
           text_cell(example ? example->path
                             : std::string("(found by the collector between snapshots)"))});
    }
    section.empty_text = options_.collect_first
                             ? "The collector freed no cycle while the profiler ran."
                             : "The collector freed no cycle while the profiler ran "
                               "(collect_first is off: no example cycles are looked for).";
    return section;
  }

  detail::report::Section suggestions_section() {
    detail::report::Section section{"suggestions", "Suggestions", {}, {}, {}, {}};
    section.intro = "Changes to the code, computed from what was measured, largest estimated "
                    "saving first.";
    section.table.columns = {"Rule", "Where", "Estimated saving", "What to change"};
    for (const Suggestion& s : suggest_optimizations()) {
      section.table.rows.push_back(
          {text_cell(s.rule), text_cell(s.site), size_cell(s.estimated_saving), text_cell(s.message)});
    }
    section.empty_text = "No suggestion: no rule found anything to change.";
    return section;
  }

  /// The live objects by type now while running, at stop() after it.
  std::vector<sys::TypeStats> types_now() const {
    if (!running_) return end_types_;
    memlens::detail::trace::TracerScope untraced;
    return sys::type_stats();
  }

  std::uint64_t collected_at_start(const std::string& type) const {
    for (const auto& b : start_types_) {
      if (b.type_name == type) return b.collected;
    }
    return 0;
  }

  // --- suggestion rules ---

  static std::string bytes(std::size_t n) { return memlens::detail::format_bytes(n); }

  static void suggest_reserve(const detail::SiteUse& s, std::vector<Suggestion>& out) {
    if (s.regrown_count == 0 || s.regrown_bytes < reserve_min_bytes) return;
    out.push_back(Suggestion{
        "reserve",
        fmt::format("{} vector{} at {} grew by reallocation ({} live): each growth copies the "
                    "elements into a block twice as large while the old one still lives. "
                    "reserve() the final size first (or build with the size known).",
                    s.regrown_count, s.regrown_count == 1 ? "" : "s", s.key, bytes(s.regrown_bytes)),
        s.key, s.regrown_bytes / 2, s.traceback});
  }

  static void suggest_pool(const detail::SiteUse& s, std::vector<Suggestion>& out) {
    if (s.unclassified_count < many_blocks) return;
    if (s.unclassified_bytes / s.unclassified_count > small_block) return;
    out.push_back(Suggestion{
        "pool",
        fmt::format("{} blocks of {} on average live from {} ({} in all): the allocator adds {} "
                    "of headers and rounding to them. Allocate them from a pool, or keep the "
                    "values in one array.",
                    s.unclassified_count, bytes(s.unclassified_bytes / s.unclassified_count),
                    s.key, bytes(s.unclassified_bytes), bytes(s.unclassified_overhead)),
        s.key, s.unclassified_overhead, s.traceback});
  }

  static void suggest_fixed_layout(const detail::SiteUse& s, std::vector<Suggestion>& out) {
    if (s.node_count < many_blocks && s.bucket_count < many_blocks) return;
    std::string message = fmt::format(
        "{} map or set node{} ({}) live from {}: each carries its links and the allocator's "
        "header ({} in all) beside its value",
        s.node_count, s.node_count == 1 ? "" : "s", bytes(s.node_bytes), s.key,
        bytes(s.node_overhead));
    if (s.bucket_count > 0) {
      message += fmt::format(", and {} bucket arrays take {}", s.bucket_count,
                             bytes(s.bucket_bytes));
    }
    message += ". Fields known in advance belong in a struct (a fixed layout, Python's "
               "__slots__); a lookup table in a sorted vector.";
    out.push_back(Suggestion{"fixed-layout", std::move(message), s.key,
                             s.node_overhead + s.bucket_bytes, s.traceback});
  }

  void suggest_stream(std::vector<Suggestion>& out) const {
    const auto& all = profiler_.snapshots();
    if (all.size() < 2) return;
    struct Seen {
      std::size_t max = 0;
      std::string at;
      tracemalloc::Traceback traceback;
    };
    std::unordered_map<std::string, Seen> seen;
    for (const ProfileSnapshot& p : all) {
      for (const auto& st : p.snapshot.statistics("lineno")) {
        Seen& s = seen[tracemalloc::to_string(st.traceback)];
        if (st.size > s.max) {
          s.max = st.size;
          s.at = p.label;
          s.traceback = st.traceback;
        }
      }
    }
    std::unordered_map<std::string, std::size_t> last;
    for (const auto& st : all.back().snapshot.statistics("lineno")) {
      last[tracemalloc::to_string(st.traceback)] = st.size;
    }
    for (const auto& [key, s] : seen) {
      const auto it = last.find(key);
      const std::size_t now = it == last.end() ? 0 : it->second;
      if (s.max < 2 * now || s.max - now < stream_min_bytes) continue;
      out.push_back(Suggestion{
          "stream",
          fmt::format("{} held {} at \"{}\" and {} at \"{}\": a temporary result materialised "
                      "whole. Process it as it is produced (a loop, a generator, a callback) "
                      "instead of storing all of it first.",
                      key, bytes(s.max), s.at, bytes(now), all.back().label),
          key, s.max - now, s.traceback});
    }
  }

  static void suggest_leak(const SuspectedLeak& leak, std::vector<Suggestion>& out) {
    if (leak.size_growth <= 0) return;
    const std::string where =
        leak.site.empty() ? std::string() : tracemalloc::to_string(leak.site);
    const std::string what = leak.type_name.empty() ? "Blocks allocated at " + where
                                                    : leak.type_name + " objects";
    std::string message = fmt::format(
        "{} grew in every interval ({:+} {}, {}){}", what, leak.count_growth,
        leak.type_name.empty() ? "blocks" : "objects",
        memlens::detail::format_delta(leak.size_growth),
        leak.type_name.empty() || where.empty() ? "" : ", made at " + where);
    if (leak.retaining_path.size() > 1) {
      message += ", kept alive by " + type_name(leak.retaining_path.front().object);
      for (std::size_t i = 1; i < leak.retaining_path.size() && i < 4; ++i) {
        message += leak.retaining_path[i].edge;
      }
    }
    message += ". If they are not needed any more, release them: remove them from what holds "
               "them, bound the collection, or hold them with Weak.";
    out.push_back(Suggestion{"leak", std::move(message),
                             where.empty() ? "type " + leak.type_name : where,
                             static_cast<std::size_t>(leak.size_growth), leak.site});
  }

  void suggest_weak(std::vector<Suggestion>& out) const {
    const std::vector<sys::TypeStats> now = types_now();
    for (const auto& t : now) {
      const std::uint64_t collected = t.collected - collected_at_start(t.type_name);
      if (collected == 0) continue;
      const std::size_t saving = static_cast<std::size_t>(collected) * t.object_size;
      out.push_back(Suggestion{
          "weak",
          fmt::format("{} {} objects ({}) were freed by the cycle collector, not when their last "
                      "reference went: they are in reference cycles, and hold their memory "
                      "until a collection finds them. Make the back reference (parent, owner, "
                      "observer) a memlens::Weak.",
                      collected, t.type_name, bytes(saving)),
          "type " + t.type_name, saving, {}});
    }
  }

  /// A line is "many blocks" from this count on (the pool and fixed-layout rules).
  static constexpr std::size_t many_blocks = 1000;
  /// The pool rule's blocks are at most this large on average.
  static constexpr std::size_t small_block = 256;
  /// The reserve rule's vectors hold at least this much at a line.
  static constexpr std::size_t reserve_min_bytes = 64 * 1024;
  /// The stream rule's temporaries are at least this much larger than what stays.
  static constexpr std::size_t stream_min_bytes = 1 << 20;

  ProfilerOptions options_;
  MemoryProfiler profiler_;
  std::optional<MemoryLeakDetector> detector_;  // made by start()
  bool running_ = false;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point start_time_{};
  std::vector<sys::TypeStats> start_types_;
  std::vector<sys::TypeStats> end_types_;
  std::optional<MemoryProfileReport> summary_;
  std::optional<std::vector<SuspectedLeak>> leaks_at_stop_;
  std::vector<FoundCycle> cycles_;

  mutable std::mutex timeline_mutex_;
  std::vector<TimelinePoint> timeline_;
  TimelinePoint pending_;
  std::size_t pending_samples_ = 0;
  std::size_t stride_ = 1;

  std::mutex sampler_mutex_;
  std::condition_variable sampler_stop_;
  bool stop_requested_ = false;
  std::thread sampler_;
};

/// `"pool" at main.cpp:12 (saves ~1.5 MiB): 100000 blocks of ...`.
inline std::string to_string(const Suggestion& s) {
  return "[" + s.rule + "] " + s.site + " (saves ~" + detail::format_bytes(s.estimated_saving) +
         "): " + s.message;
}

/// `std::vector<int> at main.cpp:12: +3.8 MiB (+100 blocks), 4.2 MiB in 120 blocks`.
inline std::string to_string(const Growth& g) {
  return (g.kind == Growth::Kind::type ? "type " : "line ") + g.label + ": " +
         detail::format_delta(g.size_diff) + " (" + fmt::format("{:+}", g.count_diff) +
         (g.kind == Growth::Kind::type ? " objects" : " blocks") + "), " +
         detail::format_bytes(g.size) + " in " + std::to_string(g.count);
}

}  // namespace memlens

/// A suggestion as memlens::to_string writes it.
template <>
struct fmt::formatter<memlens::Suggestion>
    : memlens::detail::ProfilerFormatter<memlens::Suggestion> {};

/// A growth as memlens::to_string writes it.
template <>
struct fmt::formatter<memlens::Growth> : memlens::detail::ProfilerFormatter<memlens::Growth> {};
