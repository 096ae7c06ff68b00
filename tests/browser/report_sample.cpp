// Writes a memory report page from a real capture, for the browser check
// (tests/browser/check_report.sh; CTest: profile_report.sample). A program allocates from
// several call paths (templates and operators in the names, so that the page must escape
// < > &), takes three snapshots while memory grows then partly shrinks, and renders them with
// a timeline and the profiler's five sections. `report_sample <out.html> [<out.svg>]`.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memlens/detail/profile_report.hpp>
#include <memlens/tracemalloc.hpp>
#include <memlens/track_new.hpp>
#include <string>
#include <utility>
#include <vector>

namespace report_sample {

namespace report = memlens::detail::report;
namespace tracemalloc = memlens::tracemalloc;

std::vector<std::vector<char>*> kept;

/// Keeps the optimizer from removing an allocation nobody reads.
void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

template <class T>
struct Cache {
  __attribute__((noinline)) void fill(std::size_t n, std::size_t bytes) {
    for (std::size_t i = 0; i < n; ++i) {
      kept.push_back(new std::vector<char>(bytes));
      escape(kept.back());
    }
  }
};

struct Parser {
  __attribute__((noinline)) void operator()(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      kept.push_back(new std::vector<char>(700));
      escape(kept.back());
    }
  }
};

__attribute__((noinline)) void load_config(std::size_t n) { Parser()(n); }
__attribute__((noinline)) void warm_cache(std::size_t n) {
  Cache<std::pair<int, double>>().fill(n, 4096);
}
__attribute__((noinline)) void handle_requests(std::size_t n) {
  Cache<std::string>().fill(n, 1500);
  load_config(n / 4);
}

report::Point sample(double ms) {
  const auto [current, peak] = tracemalloc::get_traced_memory();
  return {ms, current, peak, 0};
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: report_sample <out.html> [<out.svg>]\n");
    return 2;
  }
  tracemalloc::start(16);
  report::Document doc;
  doc.title = "Memory report: report_sample <demo> & friends";
  std::vector<std::pair<std::string, tracemalloc::Snapshot>> snapshots;
  double ms = 0;
  auto step = [&](std::size_t n) {
    for (int i = 0; i < 20; ++i) {
      handle_requests(n);
      doc.timeline.push_back(sample(ms += 5));
    }
  };
  load_config(50);
  warm_cache(100);
  doc.timeline.push_back(sample(ms));
  snapshots.emplace_back("start", tracemalloc::take_snapshot());
  doc.markers.push_back({ms, "start"});
  step(40);
  snapshots.emplace_back("after requests", tracemalloc::take_snapshot());
  doc.markers.push_back({ms, "after requests"});
  const auto peak = tracemalloc::get_traced_memory().peak;
  for (std::size_t i = kept.size() / 2; i < kept.size(); ++i) delete kept[i];
  kept.resize(kept.size() / 2);
  doc.timeline.push_back(sample(ms += 5));
  warm_cache(30);
  doc.timeline.push_back(sample(ms += 5));
  snapshots.emplace_back("after <cleanup>", tracemalloc::take_snapshot());
  doc.markers.push_back({ms, "after <cleanup>"});
  const auto current = tracemalloc::get_traced_memory().current;

  doc.flame = report::build_flame(snapshots);
  doc.flame_default = 1;
  doc.summary = {
      {"Duration", "215 ms"},
      {"Peak traced", tracemalloc::detail::format_size(static_cast<double>(peak), false)},
      {"Current traced", tracemalloc::detail::format_size(static_cast<double>(current), false)},
      {"Snapshots", std::to_string(snapshots.size())},
      {"Program", "report_sample --demo <a&b>"}};

  report::Section top{"top-sites",
                      "Top allocation sites",
                      "Where the live memory of the last snapshot was allocated.",
                      {},
                      {},
                      ""};
  top.table.columns = {"Site", "Size", "Count", "Average"};
  for (const auto& stat : snapshots.back().second.statistics("lineno")) {
    if (top.table.rows.size() == 10) break;
    const double size = static_cast<double>(stat.size);
    const double n = static_cast<double>(stat.count);
    top.table.rows.push_back({{tracemalloc::to_string(stat.traceback)},
                              {tracemalloc::detail::format_size(size, false), size},
                              {std::to_string(stat.count), n},
                              {tracemalloc::detail::format_size(size / n, false), size / n}});
  }
  report::Section growth{"growth", "Growth", "From the first snapshot to the last.", {}, {}, ""};
  growth.table.columns = {"Site", "Size diff", "Count diff"};
  for (const auto& diff : snapshots.back().second.compare_to(snapshots.front().second, "lineno")) {
    if (growth.table.rows.size() == 10) break;
    const double d = static_cast<double>(diff.size_diff);
    growth.table.rows.push_back(
        {{tracemalloc::to_string(diff.traceback)},
         {tracemalloc::detail::format_size(d, true), d},
         {std::to_string(diff.count_diff), static_cast<double>(diff.count_diff)}});
  }
  report::Section leaks{"leaks", "Suspected leaks", "", {}, {}, "No type grew in every interval."};
  leaks.details = {"Registry <global>\n  .sessions[41] -> Session"};
  report::Section cycles{"cycles", "Reference cycles", "", {}, {}, "No reference cycle was found."};
  report::Section suggestions{"suggestions", "Suggestions", "", {}, {}, ""};
  suggestions.table.columns = {"Rule", "Message", "Estimated saving"};
  suggestions.table.rows.push_back(
      {{"many-small-vectors"},
       {"Cache<std::string>::fill keeps 800 vectors of 1.5 KiB: reserve once & reuse"},
       {"1.1 MiB", 1.1 * 1048576}});
  doc.sections = {top, growth, leaks, cycles, suggestions};
  report::write_html(doc, argv[1]);
  if (argc > 2) {
    memlens::detail::write_file_atomically(argv[2], report::timeline_svg(doc.timeline, doc.markers),
                                           "report_sample: cannot write");
  }
  tracemalloc::stop();
  for (auto* v : kept) delete v;
  return 0;
}

}  // namespace report_sample

int main(int argc, char** argv) {
  try {
    return report_sample::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "report_sample: %s\n", e.what());
    return 1;
  }
}
