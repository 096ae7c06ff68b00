// memlens: seed exercise 11, "build a memory leak detector": which types and allocation sites
// grow in every interval between snapshots, the line that allocated them, and the chain of
// references that keeps one of them alive, in one report, while the program runs.
#pragma once

#include <fmt/core.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "memlens/detail/collector.hpp"
#include "memlens/detail/trace_core.hpp"
#include "memlens/errors.hpp"
#include "memlens/gc.hpp"
#include "memlens/object.hpp"
#include "memlens/sys.hpp"
#include "memlens/tracemalloc.hpp"
#include "memlens/visit.hpp"

namespace memlens {

/// How a MemoryLeakDetector watches.
struct LeakDetectorOptions {
  /// Frames per traceback, when the detector starts tracemalloc itself.
  int nframe = 16;
  /// A leak grows in every interval between the last `min_snapshots` snapshots (at least 2).
  std::size_t min_snapshots = 3;
  /// Run gc::collect() before each snapshot, so that only objects nothing frees count, as
  /// objgraph's show_growth does. What that collection frees is reported apart either way.
  bool collect_first = true;
  /// Retaining paths longer than this many references are not searched for.
  std::size_t max_path_depth = 64;
};

/// One moment the detector recorded.
struct LeakSnapshot {
  /// The label given to take_snapshot.
  std::string label;
  /// The live objects by type (sys::type_stats), after the collection of `collect_first`.
  std::vector<sys::TypeStats> types;
  /// The traces of the live allocations (tracemalloc).
  tracemalloc::Snapshot traces;
};

/// How one type's objects changed from one snapshot to another.
struct TypeGrowth {
  std::string type_name;
  std::size_t count_before = 0;
  std::size_t count_after = 0;
  std::ptrdiff_t count_diff = 0;
  /// Bytes, as sys::TypeStats::bytes counts them.
  std::ptrdiff_t size_diff = 0;
  /// Objects of the type the cycle collector freed in between: cycles that only the collector
  /// frees, a leak in a program that runs with the collector off and a cost in any program.
  std::uint64_t collected = 0;
};

/// What compare_snapshots found.
struct SnapshotComparison {
  /// Types whose count or bytes changed, or whose objects the collector freed: largest count
  /// growth first.
  std::vector<TypeGrowth> by_type;
  /// Allocation sites ("lineno"), as tracemalloc's compare_to gives them.
  std::vector<tracemalloc::StatisticDiff> by_site;
};

/// One object on a retaining path, and how the step before it refers to it.
struct PathStep {
  Ref<Object> object;
  /// The member of the previous object that refers to this one: `.sessions[2999]` where the
  /// type names its members (memlens::named), `[3]` (the fourth reference its traverse
  /// reports) where it does not; empty for the first step.
  std::string edge;
};

/// A type or an allocation site that grew in every interval of the window.
struct SuspectedLeak {
  /// The type's name; empty for an allocation site that is not a memlens type.
  std::string type_name;
  /// Growth over the window (the last `min_snapshots` snapshots).
  std::ptrdiff_t count_growth = 0;
  std::ptrdiff_t size_growth = 0;
  /// The count's growth in each interval of the window.
  std::vector<std::ptrdiff_t> count_per_interval;
  /// Where they were allocated, most recent frame first: the user's line. For a type, the most
  /// common traceback among its objects made during the window; empty when tracemalloc did not
  /// see them.
  tracemalloc::Traceback site;
  /// For a type: from a root (an object referenced from outside the memlens heap) to one of its
  /// objects, made at `site` where one is found. Empty when no tracked object refers to any of
  /// them within `max_path_depth` steps: they are held only from outside the heap (a Ref in a
  /// std container or a global), or they are garbage the collector has not freed yet.
  std::vector<PathStep> retaining_path;
  /// The references to the path's first object from outside the heap.
  std::size_t outside_references = 0;
  /// For an allocation site: the suspected type whose making allocated these blocks (the
  /// type's site is among the site's callers), as a member's buffer made by its constructor.
  std::string made_with;
};

/// A type whose objects the cycle collector had to free in every interval of the window.
struct CollectedType {
  std::string type_name;
  /// Objects freed by the collector in each interval.
  std::vector<std::uint64_t> per_interval;
};

/**
 * Finds memory leaks while the program runs: takes snapshots of the live objects by type
 * (sys::type_stats) and of the traced allocations (tracemalloc), and suspects every type or
 * allocation site that grew in every interval of the last `min_snapshots` snapshots. For each,
 * it tells the line that allocated and the chain of references that keeps one object alive.
 *
 * ```cpp
 * memlens::MemoryLeakDetector detector;
 * detector.start_monitoring();
 * for (int round = 0; round < 3; ++round) {
 *   detector.take_snapshot();
 *   serve_requests();
 * }
 * detector.take_snapshot();
 * fmt::print("{}", detector.report());
 * ```
 *
 * Use it under memlens' threading rule (one thread, or memlens::HeapLock held): it walks the
 * heap. Snapshots are kept while the detector lives.
 */
class MemoryLeakDetector {
 public:
  explicit MemoryLeakDetector(LeakDetectorOptions options = {}) : options_(options) {
    if (options_.min_snapshots < 2) {
      throw ValueError("MemoryLeakDetector: min_snapshots must be at least 2, not " +
                       std::to_string(options_.min_snapshots));
    }
    if (options_.nframe < 1 || options_.nframe > memlens::detail::trace::max_nframe) {
      throw ValueError("MemoryLeakDetector: nframe must be in [1, " +
                       std::to_string(memlens::detail::trace::max_nframe) + "], not " +
                       std::to_string(options_.nframe));
    }
  }
  /// Stops tracemalloc if start_monitoring started it.
  ~MemoryLeakDetector() { stop_monitoring(); }
  MemoryLeakDetector(const MemoryLeakDetector&) = delete;
  MemoryLeakDetector& operator=(const MemoryLeakDetector&) = delete;

  /// Starts tracemalloc with `nframe` frames unless it is tracing already (then its limit stays
  /// as it is, and the detector leaves it running when it stops).
  void start_monitoring() {
    if (monitoring_) return;
    if (!tracemalloc::is_tracing()) {
      tracemalloc::start(options_.nframe);
      started_tracing_ = true;
    }
    monitoring_ = true;
  }

  /// Stops tracemalloc if start_monitoring started it. The snapshots stay.
  void stop_monitoring() noexcept {
    if (started_tracing_) tracemalloc::stop();
    started_tracing_ = false;
    monitoring_ = false;
  }

  /// Whether start_monitoring was called and stop_monitoring was not.
  bool monitoring() const noexcept { return monitoring_; }

  /// Records the live objects by type and the traced allocations (after a collection when
  /// `collect_first`). Throws memlens::Error outside start_monitoring/stop_monitoring, and
  /// tracemalloc::TracingError if someone stopped tracemalloc meanwhile.
  const LeakSnapshot& take_snapshot(std::string label = {}) {
    if (!monitoring_) {
      throw Error("MemoryLeakDetector: take_snapshot(\"" + label +
                  "\") before start_monitoring(): nothing is being traced");
    }
    if (options_.collect_first) gc::collect();
    LeakSnapshot snapshot{std::move(label), {}, tracemalloc::take_snapshot()};
    // The detector's own memory is not the program's: its snapshots would grow in every
    // interval.
    memlens::detail::trace::TracerScope untraced;
    snapshot.types = sys::type_stats();
    return add_snapshot(std::move(snapshot));
  }

  /**
   * Records a moment another tool measured, as take_snapshot would have (the
   * AdvancedMemoryProfiler shares its snapshots this way rather than take two): `types` and
   * `traces` of one moment, after a collection if the caller wants only what nothing frees.
   * An empty label becomes `#n`. Throws memlens::Error outside start_monitoring/stop_monitoring.
   */
  const LeakSnapshot& add_snapshot(LeakSnapshot snapshot) {
    if (!monitoring_) {
      throw Error("MemoryLeakDetector: add_snapshot(\"" + snapshot.label +
                  "\") before start_monitoring(): nothing is being traced");
    }
    memlens::detail::trace::TracerScope untraced;
    if (snapshot.label.empty()) snapshot.label = "#" + std::to_string(snapshots_.size() + 1);
    return snapshots_.emplace_back(std::move(snapshot));
  }

  /// The options the detector was made with.
  const LeakDetectorOptions& options() const noexcept { return options_; }

  /// The snapshots taken so far, oldest first.
  const std::deque<LeakSnapshot>& snapshots() const noexcept { return snapshots_; }

  /// How types and allocation sites changed from `a` to `b`.
  static SnapshotComparison compare_snapshots(const LeakSnapshot& a, const LeakSnapshot& b) {
    SnapshotComparison out;
    std::unordered_map<std::string_view, const sys::TypeStats*> before;
    for (const auto& t : a.types) before.emplace(t.type_name, &t);
    std::unordered_set<std::string_view> seen;
    auto add = [&](const sys::TypeStats* old, const sys::TypeStats* now) {
      const sys::TypeStats empty;
      const sys::TypeStats& o = old ? *old : empty;
      const sys::TypeStats& n = now ? *now : empty;
      TypeGrowth g{now ? n.type_name : o.type_name,
                   o.count,
                   n.count,
                   signed_diff(n.count, o.count),
                   signed_diff(n.bytes, o.bytes),
                   n.collected > o.collected ? n.collected - o.collected : 0};
      if (g.count_diff != 0 || g.size_diff != 0 || g.collected != 0) {
        out.by_type.push_back(std::move(g));
      }
    };
    for (const auto& t : b.types) {
      seen.insert(t.type_name);
      auto it = before.find(t.type_name);
      add(it == before.end() ? nullptr : it->second, &t);
    }
    for (const auto& t : a.types) {
      if (!seen.count(t.type_name)) add(&t, nullptr);
    }
    std::stable_sort(out.by_type.begin(), out.by_type.end(),
                     [](const TypeGrowth& x, const TypeGrowth& y) {
                       if (x.count_diff != y.count_diff) return x.count_diff > y.count_diff;
                       return x.size_diff > y.size_diff;
                     });
    out.by_site = b.traces.compare_to(a.traces, "lineno");
    return out;
  }

  /**
   * The types and allocation sites whose live count grew in every interval of the last
   * `min_snapshots` snapshots, largest size growth first; types first, then sites that no
   * type explains. Walks the heap once (linear) when a type is suspected, to find retaining
   * paths. Throws ValueError before `min_snapshots` snapshots exist.
   */
  std::vector<SuspectedLeak> find_leaks() {
    const auto window = window_or_throw("find_leaks");
    std::vector<SuspectedLeak> leaks;
    std::vector<std::uint32_t> type_ids;  // of each type leak
    const auto ids_by_name = registered_types();
    // Types.
    for (const auto& last : window.back()->types) {
      std::vector<std::ptrdiff_t> steps;
      bool grew = true;
      std::size_t previous = count_in(*window.front(), last.type_name).count;
      for (std::size_t i = 1; i < window.size() && grew; ++i) {
        const std::size_t now = count_in(*window[i], last.type_name).count;
        grew = now > previous;
        steps.push_back(signed_diff(now, previous));
        previous = now;
      }
      if (!grew) continue;
      const sys::TypeStats first = count_in(*window.front(), last.type_name);
      SuspectedLeak leak;
      leak.type_name = last.type_name;
      leak.count_growth = signed_diff(last.count, first.count);
      leak.size_growth = signed_diff(last.bytes, first.bytes);
      leak.count_per_interval = std::move(steps);
      leaks.push_back(std::move(leak));
      const auto id = ids_by_name.find(last.type_name);
      type_ids.push_back(id == ids_by_name.end() ? 0 : id->second);
    }
    // Allocation sites, by the frames a report shows (site_key).
    std::vector<Sites> sites;
    for (const LeakSnapshot* s : window) sites.push_back(sites_of(*s));
    std::vector<std::string> growing_sites;
    for (const auto& [key, last] : sites.back().counts) {
      bool grew = true;
      std::size_t previous = count_of(sites.front(), key).count;
      for (std::size_t i = 1; i < sites.size() && grew; ++i) {
        const std::size_t now = count_of(sites[i], key).count;
        grew = now > previous;
        previous = now;
      }
      if (grew) growing_sites.push_back(key);
    }
    std::sort(growing_sites.begin(), growing_sites.end());
    // Where the leaked types' objects are, who holds them, and where they were made.
    std::unordered_set<std::string> explained;
    if (!leaks.empty()) {
      HeapFindings found = walk_heap(type_ids);
      for (std::size_t k = 0; k < leaks.size(); ++k) {
        explain(leaks[k], type_ids[k], found.objects[k], sites, growing_sites, explained);
      }
    }
    // Sites that no leaked type explains.
    for (const std::string& key : growing_sites) {
      if (explained.count(key)) continue;
      SuspectedLeak leak;
      const SiteCount first = count_of(sites.front(), key);
      const SiteCount last = sites.back().counts.at(key);
      leak.count_growth = signed_diff(last.count, first.count);
      leak.size_growth = signed_diff(last.size, first.size);
      std::size_t previous = first.count;
      for (std::size_t i = 1; i < sites.size(); ++i) {
        const std::size_t now = count_of(sites[i], key).count;
        leak.count_per_interval.push_back(signed_diff(now, previous));
        previous = now;
      }
      leak.site = sites.back().traceback(key);
      for (const auto& type_leak : leaks) {
        if (!type_leak.type_name.empty() && called_from(leak.site, type_leak.site)) {
          leak.made_with = type_leak.type_name;
          break;
        }
      }
      leaks.push_back(std::move(leak));
    }
    std::stable_sort(leaks.begin(), leaks.end(), [](const SuspectedLeak& a, const SuspectedLeak& b) {
      if (a.type_name.empty() != b.type_name.empty()) return b.type_name.empty();
      return a.size_growth > b.size_growth;
    });
    return leaks;
  }

  /// The types whose objects the cycle collector had to free in every interval of the window:
  /// cycles that only the collector frees. Throws ValueError before `min_snapshots` snapshots.
  std::vector<CollectedType> collected_types() const {
    const auto window = window_or_throw("collected_types");
    std::vector<CollectedType> out;
    for (const auto& last : window.back()->types) {
      CollectedType c{last.type_name, {}};
      std::uint64_t previous = count_in(*window.front(), last.type_name).collected;
      for (std::size_t i = 1; i < window.size(); ++i) {
        const std::uint64_t now = count_in(*window[i], last.type_name).collected;
        c.per_interval.push_back(now - previous);
        previous = now;
      }
      if (std::all_of(c.per_interval.begin(), c.per_interval.end(),
                      [](std::uint64_t n) { return n > 0; })) {
        out.push_back(std::move(c));
      }
    }
    return out;
  }

  /// The diagnosis: suspected leaks first (growth per interval, site, retaining path), then
  /// the types the collector had to free, then the growth from the first snapshot of the
  /// window to the last, by type and by site. With fewer snapshots than `min_snapshots`, says
  /// so and shows the growth between the snapshots there are.
  std::string report() {
    std::string out;
    if (snapshots_.size() < 2) {
      return "MemoryLeakDetector: " + std::to_string(snapshots_.size()) +
             " snapshot(s): take at least " + std::to_string(options_.min_snapshots) +
             " to find leaks\n";
    }
    if (snapshots_.size() < options_.min_snapshots) {
      out += "Leak search needs " + std::to_string(options_.min_snapshots) + " snapshots, " +
             std::to_string(snapshots_.size()) + " taken: growth only.\n";
    } else {
      const auto leaks = find_leaks();
      if (leaks.empty()) out += "No suspected leak over the last " +
                                std::to_string(options_.min_snapshots) + " snapshots.\n";
      for (const auto& leak : leaks) out += format_leak(leak);
      const auto collected = collected_types();
      if (!collected.empty()) {
        out += "\nFreed only by the cycle collector in every interval (a leak with the collector "
               "off):\n";
        for (const auto& c : collected) {
          out += "  " + c.type_name + "  " + per_interval(c.per_interval) + "\n";
        }
      }
    }
    const std::size_t from =
        snapshots_.size() > options_.min_snapshots ? snapshots_.size() - options_.min_snapshots : 0;
    const LeakSnapshot& a = snapshots_[from];
    const LeakSnapshot& b = snapshots_.back();
    const SnapshotComparison cmp = compare_snapshots(a, b);
    out += "\nGrowth by type from " + a.label + " to " + b.label + ":\n";
    std::size_t shown = 0;
    for (const auto& g : cmp.by_type) {
      if (++shown > 10) break;
      out += fmt::format("  {:<40} {:>10} {:>+9} objects {:>12}", g.type_name, g.count_after,
                         g.count_diff, memlens::tracemalloc::detail::format_size(
                                           static_cast<double>(g.size_diff), true));
      if (g.collected) out += fmt::format("  ({} freed by the collector)", g.collected);
      out += "\n";
    }
    if (cmp.by_type.empty()) out += "  (no change)\n";
    out += "\nGrowth by line from " + a.label + " to " + b.label + ":\n";
    shown = 0;
    for (const auto& d : cmp.by_site) {
      if (d.size_diff == 0 && d.count_diff == 0) continue;
      if (++shown > 10) break;
      out += "  " + memlens::tracemalloc::to_string(d) + "\n";
    }
    if (shown == 0) out += "  (no change)\n";
    return out;
  }

 private:
  struct SiteCount {
    std::size_t count = 0;
    std::size_t size = 0;
  };
  /// The traced blocks of one snapshot by site.
  struct Sites {
    const tracemalloc::Snapshot* snapshot = nullptr;
    std::vector<std::string> key_of;                         // by traceback index
    std::unordered_map<std::string, SiteCount> counts;       // by site key
    std::unordered_map<std::string, std::uint32_t> some_id;  // a traceback index of each key

    const std::string* key(std::uint32_t id) const {
      return id < key_of.size() ? &key_of[id] : nullptr;
    }
    tracemalloc::Traceback traceback(const std::string& site) const {
      const auto it = some_id.find(site);
      if (it == some_id.end()) return {};
      return tracemalloc::detail::tracebacks_by_id(*snapshot)[it->second];
    }
  };

  /// What the heap walk found for each leaked type: objects in walk order (nearest a root
  /// first), with the tracked object that refers to each (nullptr for a root), and every
  /// object of the type it saw, for the allocation site.
  struct Found {
    std::vector<std::pair<Object*, Object*>> reached;  // (object, referrer)
    std::vector<const void*> blocks;                  // allocation starts, for the site
    std::vector<Object*> objects;                     // the same objects
  };
  struct HeapFindings {
    std::vector<Found> objects;
  };

  static std::ptrdiff_t signed_diff(std::size_t a, std::size_t b) noexcept {
    return a >= b ? static_cast<std::ptrdiff_t>(a - b) : -static_cast<std::ptrdiff_t>(b - a);
  }

  std::vector<const LeakSnapshot*> window_or_throw(const char* what) const {
    if (snapshots_.size() < options_.min_snapshots) {
      throw ValueError(std::string("MemoryLeakDetector: ") + what + " needs " +
                       std::to_string(options_.min_snapshots) + " snapshots, " +
                       std::to_string(snapshots_.size()) + " taken");
    }
    std::vector<const LeakSnapshot*> window;
    for (std::size_t i = snapshots_.size() - options_.min_snapshots; i < snapshots_.size(); ++i) {
      window.push_back(&snapshots_[i]);
    }
    return window;
  }

  static sys::TypeStats count_in(const LeakSnapshot& s, std::string_view name) {
    for (const auto& t : s.types) {
      if (t.type_name == name) return t;
    }
    return {};
  }

  /// Every registered type's index, by the name type_stats gives it.
  static std::unordered_map<std::string, std::uint32_t> registered_types() {
    std::unordered_map<std::string, std::uint32_t> out;
    const auto& registry = memlens::detail::type_registry;
    for (std::uint32_t id = 1; id <= registry.count; ++id) {
      out.emplace(memlens::detail::demangle(registry.records[id]->shown->name()), id);
    }
    return out;
  }

  /**
   * What makes two tracebacks one allocation site: the frames a report shows (file, line,
   * function), as Python's tracemalloc compares its tracebacks, not the return addresses. An
   * optimizing compiler gives one line several (an unrolled loop, inlined copies of a function),
   * and a frame-pointer walk through code built without frame pointers reads stack garbage
   * beyond it, different at every call: the key stops at the first frame no symbol names. A
   * traceback without any named frame is its own site (the tracer's index).
   */
  static std::string site_key(const tracemalloc::Traceback& traceback, std::uint32_t id) {
    std::string key;
    for (const tracemalloc::Frame& f : traceback) {
      const bool unnamed = f.function.empty() || f.function.rfind("0x", 0) == 0;
      if (f.filename == "<unknown>" && unnamed) break;
      key += f.filename;
      key += ':';
      key += std::to_string(f.lineno);
      key += ' ';
      key += f.function;
      key += '\n';
    }
    return key.empty() ? "#" + std::to_string(id) : key;
  }

  /// The traced blocks of snapshot `s` by site (symbolizes its tracebacks, once per snapshot).
  static Sites sites_of(const LeakSnapshot& s) {
    Sites out;
    out.snapshot = &s.traces;
    const auto& tracebacks = tracemalloc::detail::tracebacks_by_id(s.traces);
    out.key_of.reserve(tracebacks.size());
    for (std::size_t id = 0; id < tracebacks.size(); ++id) {
      const auto index = static_cast<std::uint32_t>(id);
      out.some_id.emplace(out.key_of.emplace_back(site_key(tracebacks[id], index)), index);
    }
    for (const auto& t : tracemalloc::detail::snapshot_data(s.traces).traces) {
      const std::string* key = out.key(t.traceback);
      if (key == nullptr) continue;
      SiteCount& c = out.counts[*key];
      c.count += 1;
      c.size += t.size;
    }
    return out;
  }

  static SiteCount count_of(const Sites& sites, const std::string& key) {
    const auto it = sites.counts.find(key);
    return it == sites.counts.end() ? SiteCount{} : it->second;
  }

  /// Reports each reference's target to `f` (the generic path: names are not needed here).
  template <class F>
  class Targets final : public Visitor {
   public:
    explicit Targets(F f) : f_(std::forward<F>(f)) {}
    void visit_edge(const Edge& edge) override { f_(&edge.referent()); }

   private:
    F f_;
  };

  /**
   * One breadth-first walk from the roots (tracked objects referenced from outside the heap,
   * found with the collector's arithmetic) over every reference tracked objects hold, at most
   * `max_path_depth` deep: linear in the heap. Each tracked object remembers the object it was
   * reached from in its collector head (HeapScan lends it).
   */
  HeapFindings walk_heap(const std::vector<std::uint32_t>& type_ids) {
    namespace d = memlens::detail;
    HeapFindings out;
    out.objects.resize(type_ids.size());
    d::trace::TracerScope untraced;  // the walk's memory is the detector's
    // Leak index by type index: one load per reference on the walk's hot path. Types registered
    // after this point (by a traverse that makes objects) are not wanted.
    constexpr std::size_t none = static_cast<std::size_t>(-1);
    std::vector<std::size_t> wanted_by_type(std::size_t{d::type_registry.count} + 1, none);
    for (std::size_t k = 0; k < type_ids.size(); ++k) {
      if (type_ids[k] != 0 && type_ids[k] < wanted_by_type.size()) wanted_by_type[type_ids[k]] = k;
    }
    const auto wanted = [&](std::uint32_t flags) {
      const std::uint32_t type = flags >> d::flag::type_shift;
      return type < wanted_by_type.size() ? wanted_by_type[type] : none;
    };
    const d::HeapScan scan;
    roots_.clear();
    std::vector<Object*> queue;
    for (d::GcList* list : d::HeapScan::lists()) {
      for (Object* o = list->first(); o != list->end(); o = d::gc_head(o)->next) {
        std::uint32_t& f = d::Access::flags(o);
        if (!(f & d::flag::collecting)) continue;
        if (const std::size_t k = wanted(f); k != none) {
          Found& found = out.objects[k];
          found.blocks.push_back(d::allocation_start(o));
          found.objects.push_back(o);
        }
        if (d::gc_refs(o) > 0) {
          roots_.emplace(o, d::gc_refs(o));
          f |= d::flag::unreachable;  // visited
          d::gc_refs(o) = 0;          // reached from nothing
          queue.push_back(o);
        }
      }
    }
    std::unordered_set<const Object*> untracked_seen;
    Object* from = nullptr;
    auto reach = [&](Object* target) {
      if (d::Access::refcnt(target) == 0) return;  // being destroyed
      std::uint32_t& f = d::Access::flags(target);
      const std::size_t k = wanted(f);
      if (f & d::flag::tracked) {
        if (!(f & d::flag::collecting) || (f & d::flag::unreachable)) return;
        f |= d::flag::unreachable;
        d::gc_refs(target) = reinterpret_cast<std::uintptr_t>(from);
        queue.push_back(target);
        if (k != none) out.objects[k].reached.emplace_back(target, from);
      } else if (k != none && untracked_seen.insert(target).second) {
        Found& found = out.objects[k];
        found.reached.emplace_back(target, from);
        found.blocks.push_back(d::allocation_start(target));
        found.objects.push_back(target);
      }
    };
    Targets<decltype(reach)&> visit(reach);
    // Roots of a wanted type are reached from nothing.
    for (Object* root : queue) {
      if (const std::size_t k = wanted(d::Access::flags(root)); k != none) {
        out.objects[k].reached.emplace_back(root, nullptr);
      }
    }
    std::size_t level_end = queue.size();
    std::size_t depth = 0;
    for (std::size_t i = 0; i < queue.size(); ++i) {
      if (i == level_end) {
        if (++depth >= options_.max_path_depth) break;
        level_end = queue.size();
      }
      from = queue[i];
      from->traverse(visit);
    }
    // The chains, read from the heads before the scan gives them back.
    for (std::size_t k = 0; k < type_ids.size(); ++k) {
      for (auto& [object, referrer] : out.objects[k].reached) {
        chains_[object] = chain_from(referrer);
      }
    }
    return out;
  }

  /// The tracked objects from a root down to `o` (inclusive), read from the walk's links.
  static std::vector<Object*> chain_from(Object* o) {
    std::vector<Object*> chain;
    for (; o != nullptr; o = reinterpret_cast<Object*>(memlens::detail::gc_refs(o))) {
      chain.push_back(o);
    }
    std::reverse(chain.begin(), chain.end());
    return chain;
  }

  /// How `from` refers to `to`: its member name and index where `from` names its members.
  static std::string edge_name(Object& from, const Object* to) {
    std::unordered_map<std::string_view, std::size_t> seen;
    std::string found;
    std::size_t found_index = 0;
    std::string_view found_name;
    bool done = false;
    for_each_edge(from, [&](const Edge& e) {
      const std::size_t index = seen[e.name()]++;
      if (!done && &e.referent() == to) {
        done = true;
        found_name = e.name();
        found_index = index;
      }
    });
    if (!done) return "?";
    if (found_name.empty()) return "[" + std::to_string(found_index) + "]";
    found = "." + std::string(found_name);
    if (seen[found_name] > 1) found += "[" + std::to_string(found_index) + "]";
    return found;
  }

  /// Whether `site` was allocated inside the call at `caller`'s first frame: those frames are
  /// its own or its callers', in order, as far as both go. (A member's buffer made by the
  /// object's constructor often shows the same user frames: memlens' and the standard
  /// library's frames in between are not shown.)
  static bool called_from(const tracemalloc::Traceback& site, const tracemalloc::Traceback& caller) {
    if (caller.size() == 0) return false;
    const auto same = [](const tracemalloc::Frame& a, const tracemalloc::Frame& b) {
      return a.filename == b.filename && a.lineno == b.lineno;
    };
    for (std::size_t p = 0; p < site.size(); ++p) {
      if (!same(site[p], caller[0])) continue;
      bool match = true;
      for (std::size_t i = 1; match && p + i < site.size() && i < caller.size(); ++i) {
        match = same(site[p + i], caller[i]);
      }
      if (match) return true;
    }
    return false;
  }

  /// Fills the site and the retaining path of a leaked type from what the walk found.
  void explain(SuspectedLeak& leak, std::uint32_t type_id, const Found& found,
               const std::vector<Sites>& sites, const std::vector<std::string>& growing_sites,
               std::unordered_set<std::string>& explained) {
    namespace d = memlens::detail;
    // The site: the one most of the type's objects come from, weighed by how much it grew
    // over the window, so that old objects made elsewhere do not hide the leaking line.
    const Sites& last_sites = sites.back();
    const std::vector<std::uint32_t> ids = tracemalloc::detail::traceback_ids(found.blocks);
    std::unordered_map<std::string, std::size_t> tally;
    for (std::uint32_t id : ids) {
      if (const std::string* key = last_sites.key(id)) ++tally[*key];
    }
    std::string site;
    std::ptrdiff_t best = -1;
    std::size_t best_count = 0;
    for (const auto& [key, count] : tally) {
      const std::size_t before = count_of(sites.front(), key).count;
      const std::ptrdiff_t grew = std::max<std::ptrdiff_t>(0, signed_diff(count, before));
      if (grew > best || (grew == best && count > best_count) ||
          (grew == best && count == best_count && key < site)) {
        site = key;
        best = grew;
        best_count = count;
      }
    }
    if (site.empty() && type_id != 0) {
      // No object seen (held only from outside the heap): a growing site that made at least
      // as many blocks of the type's size as the type grew, the closest in count; one whose
      // blocks are all of that size first (others may share the line: the vector holding them).
      const std::size_t block = d::type_registry.records[type_id]->size;
      std::pair<bool, std::size_t> best_fit{true, static_cast<std::size_t>(-1)};
      for (const std::string& key : growing_sites) {
        const SiteCount last = last_sites.counts.at(key);
        const SiteCount first = count_of(sites.front(), key);
        const std::ptrdiff_t grew = signed_diff(last.count, first.count);
        const std::ptrdiff_t grew_size = signed_diff(last.size, first.size);
        if (grew <= 0 || grew_size < grew * static_cast<std::ptrdiff_t>(block)) continue;
        const std::pair<bool, std::size_t> fit{
            last.size != last.count * block,
            static_cast<std::size_t>(grew > leak.count_growth ? grew - leak.count_growth
                                                               : leak.count_growth - grew)};
        if (fit < best_fit) {
          best_fit = fit;
          site = key;
        }
      }
    }
    if (!site.empty()) {
      explained.insert(site);
      leak.site = last_sites.traceback(site);
    }
    // The path: to an object made at the site (else any), nearest a root; of those, the last
    // reached, which in a container is the newest.
    Object* target = nullptr;
    std::size_t target_depth = 0;
    bool target_at_site = false;
    std::unordered_map<const Object*, std::uint32_t> id_of;
    for (std::size_t i = 0; i < found.objects.size(); ++i) id_of.emplace(found.objects[i], ids[i]);
    for (const auto& [object, referrer] : found.reached) {
      const auto it = id_of.find(object);
      const std::string* key = it == id_of.end() ? nullptr : last_sites.key(it->second);
      const bool at_site = key != nullptr && !site.empty() && *key == site;
      const std::size_t depth = chains_.at(object).size();
      if (!target || (at_site && !target_at_site) ||
          (at_site == target_at_site && depth <= target_depth)) {
        target = object;
        target_depth = depth;
        target_at_site = at_site;
      }
    }
    if (!target) return;
    std::vector<Object*> objects = chains_.at(target);
    if (objects.empty() || objects.back() != target) objects.push_back(target);
    for (std::size_t i = 0; i < objects.size(); ++i) {
      PathStep step{d::ref_if_alive(objects[i]), i == 0 ? std::string() : edge_name(*objects[i - 1], objects[i])};
      if (!step.object) return leak.retaining_path.clear();
      leak.retaining_path.push_back(std::move(step));
    }
    const auto root = roots_.find(objects.front());
    leak.outside_references = root == roots_.end() ? 0 : root->second;
  }

  /// `(+3 each)` or `(+1, +4, +2)`: a count's change in each interval.
  static std::string per_interval(const std::vector<std::ptrdiff_t>& steps) {
    bool same = std::all_of(steps.begin(), steps.end(), [&](auto s) { return s == steps[0]; });
    if (same && !steps.empty()) return fmt::format("({:+} each)", steps[0]);
    std::string out = "(";
    for (std::size_t i = 0; i < steps.size(); ++i) {
      out += (i ? ", " : "") + fmt::format("{:+}", steps[i]);
    }
    return out + ")";
  }
  static std::string per_interval(const std::vector<std::uint64_t>& steps) {
    std::vector<std::ptrdiff_t> s;
    for (auto n : steps) s.push_back(static_cast<std::ptrdiff_t>(n));
    return per_interval(s);
  }

 public:
  /// One suspected leak as report() writes it: growth per interval, the allocating line and
  /// its callers, and the chain of references that keeps it alive.
  static std::string format_leak(const SuspectedLeak& leak) {
    namespace tm = memlens::tracemalloc;
    const std::size_t intervals = leak.count_per_interval.size();
    std::string what = leak.type_name.empty() ? "allocations" : leak.type_name;
    std::string out = fmt::format(
        "Suspected leak: {}  {:+} {}, {} over {} interval{} {}\n", what, leak.count_growth,
        leak.type_name.empty() ? "blocks" : "objects",
        tm::detail::format_size(static_cast<double>(leak.size_growth), true), intervals,
        intervals == 1 ? "" : "s", per_interval(leak.count_per_interval));
    if (leak.site.size() > 0) {
      const tm::Frame& f = leak.site.front();
      out += "  allocated at  " + f.filename + ":" + std::to_string(f.lineno);
      if (!f.function.empty()) out += " in " + f.function;
      out += "\n";
      // A few callers, up to main: what lies beyond is the C runtime's.
      for (std::size_t i = 1; i < leak.site.size() && i < 4 && leak.site[i - 1].function != "main";
           ++i) {
        const tm::Frame& g = leak.site[i];
        out += "      called from " + g.filename + ":" + std::to_string(g.lineno) +
               (g.function.empty() ? "" : " in " + g.function) + "\n";
      }
    } else {
      out += "  allocated at  (not traced: made before monitoring started, or new is not "
             "traced)\n";
    }
    if (!leak.made_with.empty()) {
      out += "  made while making a " + leak.made_with + " (suspected above): its objects hold them\n";
    }
    if (leak.type_name.empty()) return out;
    if (leak.retaining_path.empty()) {
      out += "  kept alive from outside the heap: no tracked object refers to one (a Ref in a "
             "std container or a global), or garbage the collector has not freed\n";
      return out;
    }
    const PathStep& root = leak.retaining_path.front();
    if (leak.retaining_path.size() == 1) {
      out += fmt::format("  held from outside the heap: {} ({} reference{})\n",
                         repr(root.object), leak.outside_references,
                         leak.outside_references == 1 ? "" : "s");
      return out;
    }
    out += fmt::format("  kept alive by {} ({} reference{} from outside the heap)\n",
                       repr(root.object), leak.outside_references,
                       leak.outside_references == 1 ? "" : "s");
    for (std::size_t i = 1; i < leak.retaining_path.size(); ++i) {
      out += "    " + leak.retaining_path[i].edge + " -> " + repr(leak.retaining_path[i].object) +
             "\n";
    }
    return out;
  }

 private:
  LeakDetectorOptions options_;
  std::deque<LeakSnapshot> snapshots_;
  bool monitoring_ = false;
  bool started_tracing_ = false;
  // Filled by the last heap walk, read by explain.
  std::unordered_map<const Object*, std::size_t> roots_;
  std::unordered_map<const Object*, std::vector<Object*>> chains_;
};

}  // namespace memlens
