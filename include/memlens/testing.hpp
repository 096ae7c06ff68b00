// memlens: leak and peak-memory gates for tests, in the spirit of pytest-memray, with Catch2
// (v2 or v3) matchers. Not included by memlens/memlens.hpp: it needs Catch2.
//
//   REQUIRE_THAT(([&] { cache.refresh(); }), memlens::testing::NoLeaks());
//   REQUIRE(memlens::testing::leaks_of([&] { parse(document); }).empty());
//   REQUIRE_THAT(([&] { load(file); }), memlens::testing::PeakMemoryBelow(1 << 20));
#pragma once

#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_tostring.hpp>
#include <catch2/matchers/catch_matchers.hpp>
#define MEMLENS_TESTING_CATCH2_V3 1
#elif __has_include(<catch2/catch.hpp>)
#include <catch2/catch.hpp>
#else
#error "memlens/testing.hpp needs Catch2: <catch2/catch.hpp> (v2) or <catch2/catch_test_macros.hpp> (v3)"
#endif

#include <fmt/format.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "memlens/detail/trace_core.hpp"
#include "memlens/errors.hpp"
#include "memlens/tools/memory_leak_detector.hpp"
#include "memlens/tracemalloc.hpp"

namespace memlens::testing {

/// How leaks_of and NoLeaks run the callable.
struct LeakOptions {
  /// Calls before counting starts, so that caches, pools and one-time initialisation filled by
  /// the first call are not leaks.
  int warmup = 1;
  /// Counted calls. A type or an allocation site leaks only if its live count grew after every
  /// one of them: with repeat = 3, a cache that fills once and stays is not a leak.
  int repeat = 1;
  /// Count only what the calling thread allocates: other threads' allocations are not traced
  /// meanwhile, and a type counts only if the calling thread made its new objects.
  bool current_thread_only = false;
  /// An allocation site that is not a memlens type is reported only when its bytes grew by more
  /// than this (objects are always reported).
  std::size_t site_threshold = 0;
  /// Frames per traceback when tracemalloc is not tracing already.
  int nframe = 16;
};

/// Objects of one type that a callable left alive.
struct ObjectLeak {
  std::string type_name;
  std::ptrdiff_t count = 0;
  std::ptrdiff_t bytes = 0;
  /// Where they were made (empty if tracemalloc did not see it).
  tracemalloc::Traceback site;
  /// What keeps one of them alive, as MemoryLeakDetector's report shows it (`<Registry object
  /// at 0x...> .sessions[2] -> <Session object at 0x...>`), or empty.
  std::string kept_alive_by;
};

/// Blocks from one allocation site that a callable left allocated (not memlens objects).
struct SiteLeak {
  tracemalloc::Traceback site;
  std::ptrdiff_t count = 0;
  std::ptrdiff_t bytes = 0;
};

/// What a callable left behind: objects by type, and bytes by allocation site.
struct LeakSummary {
  std::vector<ObjectLeak> objects;
  std::vector<SiteLeak> sites;
  /// The counted calls.
  int calls = 0;

  /// What empty() returns: a bool that also carries the leaks, so that a failed
  /// `REQUIRE(leaks.empty())` prints them rather than `false`.
  struct Emptiness {
    bool value;
    std::string leaks;  // to_string(), when not empty
    operator bool() const noexcept { return value; }
  };

  /// Whether the callable left nothing behind.
  Emptiness empty() const {
    const bool none = objects.empty() && sites.empty();
    return {none, none ? std::string() : to_string()};
  }

  /// One line per leak: type or site, count, bytes, where, and what keeps objects alive.
  std::string to_string() const {
    if (objects.empty() && sites.empty()) return "no leaks";
    std::string out = fmt::format("{} leak{} after {} call{}:", objects.size() + sites.size(),
                                  objects.size() + sites.size() == 1 ? "" : "s", calls,
                                  calls == 1 ? "" : "s");
    const auto where = [](const tracemalloc::Traceback& tb) -> std::string {
      if (tb.size() == 0) return "";
      const tracemalloc::Frame& f = tb.front();
      return ", allocated at " + f.filename + ":" + std::to_string(f.lineno) +
             (f.function.empty() ? "" : " in " + f.function);
    };
    namespace tmd = memlens::tracemalloc::detail;
    for (const auto& o : objects) {
      out += fmt::format("\n  {}: {:+} object{}, {}{}", o.type_name, o.count,
                         o.count == 1 ? "" : "s", tmd::format_size(static_cast<double>(o.bytes), true),
                         where(o.site));
      if (!o.kept_alive_by.empty()) out += "; kept alive by " + o.kept_alive_by;
    }
    for (const auto& s : sites) {
      out += fmt::format("\n  allocations: {:+} block{}, {}{}", s.count, s.count == 1 ? "" : "s",
                         tmd::format_size(static_cast<double>(s.bytes), true), where(s.site));
    }
    return out;
  }
};

/**
 * Runs `callable` `warmup` times, then `repeat` times under tracemalloc with a collection after
 * each call, and reports what grew after every counted call: memlens objects by type (with the
 * line that made them and what keeps one alive) and other allocations by site. Tracing that was
 * on stays on; otherwise it is started for the call and stopped after. Exceptions from the
 * callable propagate. Under memlens' threading rule, as every heap walk.
 */
template <class F>
LeakSummary leaks_of(F&& callable, const LeakOptions& options = {}) {
  if (options.repeat < 1 || options.warmup < 0) {
    throw ValueError("testing::leaks_of: repeat must be at least 1 and warmup at least 0, not " +
                     std::to_string(options.repeat) + " and " + std::to_string(options.warmup));
  }
  std::optional<memlens::detail::trace::ThisThreadOnly> this_thread;
  if (options.current_thread_only) this_thread.emplace();
  MemoryLeakDetector detector({.nframe = options.nframe,
                               .min_snapshots = static_cast<std::size_t>(options.repeat) + 1,
                               .collect_first = true});
  // Traced from the warm-up on: a block the warm-up made and a counted call replaced (a
  // vector that grew) is one block before and after, not a new one.
  detector.start_monitoring();
  // One call site for every call, so that each allocation has the same traceback every time.
  if (options.warmup == 0) detector.take_snapshot();
  for (int i = 0; i < options.warmup + options.repeat; ++i) {
    callable();
    if (i + 1 >= options.warmup) detector.take_snapshot();
  }
  LeakSummary summary;
  summary.calls = options.repeat;
  for (const SuspectedLeak& leak : detector.find_leaks()) {
    if (!leak.type_name.empty()) {
      // Another thread's objects were not traced: no site tells they are the callable's.
      if (options.current_thread_only && leak.site.size() == 0) continue;
      std::string path;
      for (std::size_t i = 0; i < leak.retaining_path.size(); ++i) {
        if (i) path += " " + leak.retaining_path[i].edge + " -> ";
        path += repr(leak.retaining_path[i].object);
      }
      summary.objects.push_back(
          {leak.type_name, leak.count_growth, leak.size_growth, leak.site, std::move(path)});
    } else if (leak.made_with.empty() && leak.size_growth > 0 &&
               static_cast<std::size_t>(leak.size_growth) > options.site_threshold) {
      summary.sites.push_back({leak.site, leak.count_growth, leak.size_growth});
    }
  }
  return summary;
}

/**
 * The most memory the call had allocated at once, in bytes: the traced peak during the call
 * minus what was traced when it began. Starts tracemalloc for the call when it is off; when it
 * is on, its own peak is kept (raised, never lowered).
 */
template <class F>
std::size_t peak_memory_of(F&& callable) {
  namespace tm = memlens::tracemalloc;
  const bool started = !tm::is_tracing();
  if (started) tm::start(1);
  const auto [begin_current, begin_peak] = tm::get_traced_memory();
  struct Restore {
    bool started;
    std::size_t peak;
    ~Restore() {
      if (started) {
        tm::stop();
      } else {
        tm::detail::raise_peak(peak);
      }
    }
  } restore{started, begin_peak};
  tm::reset_peak();
  callable();
  const std::size_t peak = tm::get_traced_memory().peak;
  return peak > begin_current ? peak - begin_current : 0;
}

#ifdef MEMLENS_TESTING_CATCH2_V3
template <class T>
using MatcherBase = Catch::Matchers::MatcherBase<T>;
#else
template <class T>
using MatcherBase = Catch::MatcherBase<T>;
#endif

/// The matcher NoLeaks() returns.
class NoLeaksMatcher final : public MatcherBase<std::function<void()>> {
 public:
  explicit NoLeaksMatcher(LeakOptions options) : options_(options) {}
  bool match(const std::function<void()>& callable) const override {
    found_ = leaks_of(callable, options_);
    return found_.empty();
  }
  std::string describe() const override {
    return found_.empty() ? "leaks nothing" : "leaks nothing; it left " + found_.to_string();
  }

 private:
  LeakOptions options_;
  mutable LeakSummary found_;
};

/// Matches a callable that leaves nothing behind (leaks_of(callable).empty()):
/// `REQUIRE_THAT(([&] { work(); }), memlens::testing::NoLeaks())`.
inline NoLeaksMatcher NoLeaks(LeakOptions options = {}) { return NoLeaksMatcher(options); }

/// The matcher PeakMemoryBelow() returns.
class PeakMemoryBelowMatcher final : public MatcherBase<std::function<void()>> {
 public:
  explicit PeakMemoryBelowMatcher(std::size_t limit) : limit_(limit) {}
  bool match(const std::function<void()>& callable) const override {
    peak_ = peak_memory_of(callable);
    return peak_ < limit_;
  }
  std::string describe() const override {
    return fmt::format("has a traced peak below {} bytes (it was {} bytes)", limit_, peak_);
  }

 private:
  std::size_t limit_;
  mutable std::size_t peak_ = 0;
};

/// Matches a callable whose traced peak (peak_memory_of) stays below `bytes`.
inline PeakMemoryBelowMatcher PeakMemoryBelow(std::size_t bytes) {
  return PeakMemoryBelowMatcher(bytes);
}

}  // namespace memlens::testing

/// A failed `REQUIRE(leaks.empty())` shows what leaked.
template <>
struct Catch::StringMaker<memlens::testing::LeakSummary> {
  static std::string convert(const memlens::testing::LeakSummary& summary) {
    return summary.to_string();
  }
};

/// `REQUIRE(leaks.empty())` fails with the leaks in its message.
template <>
struct Catch::StringMaker<memlens::testing::LeakSummary::Emptiness> {
  static std::string convert(const memlens::testing::LeakSummary::Emptiness& e) {
    return e.value ? "true" : "false (" + e.leaks + ")";
  }
};

/// `fmt::print("{}", summary)`: LeakSummary::to_string().
template <>
struct fmt::formatter<memlens::testing::LeakSummary> : fmt::formatter<std::string> {
  template <class Context>
  auto format(const memlens::testing::LeakSummary& summary, Context& ctx) const {
    return fmt::formatter<std::string>::format(summary.to_string(), ctx);
  }
};

#undef MEMLENS_TESTING_CATCH2_V3
