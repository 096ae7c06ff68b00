// Seed exercise 15, advanced memory profiling: track allocations by type and location, detect
// leaks automatically, compare snapshots over time, identify optimization opportunities,
// generate detailed reports with graphs, suggest specific code improvements:
//   profiler.start(); profiler.take_snapshot("Initial")
//   for i in range(100):
//       data.append([j for j in range(10000)])
//       if i % 20 == 0: profiler.take_snapshot(f"Iteration {i}")
//   profiler.stop(); analyze_growth(); detect_leaks(); suggest_optimizations()
//   generate_report("memory_report.html"); plot_memory_timeline()
// Each row is a memlens object (a boxed std::vector<int>), as a Python list is an object.
#include <memlens/tools/advanced_memory_profiler.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace test_e15 {

using test_tracemalloc_common::ends_with;
using test_tracemalloc_common::has_line_info;

int make_line = 0;
int append_line = 0;

std::vector<memlens::Ref<std::vector<int>>> run_scenario(memlens::AdvancedMemoryProfiler& p) {
  p.start();
  p.take_snapshot("Initial");
  std::vector<memlens::Ref<std::vector<int>>> data;
  for (int i = 0; i < 100; ++i) {
    make_line = __LINE__ + 1;
    auto row = memlens::make<std::vector<int>>();
    for (int j = 0; j < 10000; ++j) {
      append_line = __LINE__ + 1;
      row->push_back(j);
    }
    data.push_back(row);
    if (i % 20 == 0) p.take_snapshot("Iteration " + std::to_string(i));
  }
  p.stop();
  return data;
}

std::string read(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool at_line(const std::string& site, int line) {
  return ends_with(site, "e15_advanced_memory_profiling.cpp:" + std::to_string(line));
}

}  // namespace test_e15

using namespace test_e15;

TEST_CASE("e15: the seed's scenario gives growth by type and line and leaks and suggestions and a timeline",
          "[exercises][e15][threads]") {
  memlens::AdvancedMemoryProfiler profiler;  // default options: a sampler every 10 ms
  const auto data = run_scenario(profiler);
  const auto& snapshots = profiler.snapshots();
  REQUIRE(snapshots.size() == 6);
  CHECK(snapshots.front().label == "Initial");
  CHECK(snapshots.back().label == "Iteration 80");

  // By type: 81 rows more at the last snapshot than at the first. By line: their buffers.
  const auto growth = profiler.analyze_growth();
  const memlens::Growth* rows = nullptr;
  const memlens::Growth* buffers = nullptr;
  for (const auto& g : growth) {
    if (g.kind == memlens::Growth::Kind::type && g.label.find("std::vector<int") == 0) rows = &g;
    if (g.kind == memlens::Growth::Kind::site && has_line_info() && at_line(g.label, append_line)) {
      buffers = &g;
    }
  }
  REQUIRE(rows != nullptr);
  CHECK(rows->count_diff == 81);
  if (has_line_info()) {
    REQUIRE(buffers != nullptr);
    CHECK(buffers->count_diff == 81);
    CHECK(buffers->size_diff >= static_cast<std::ptrdiff_t>(81 * 10000 * sizeof(int)));
  }

  // Rows grow in every interval: a suspected leak, made at the line that makes them.
  const auto leaks = profiler.detect_leaks();
  REQUIRE_FALSE(leaks.empty());
  CHECK(leaks.front().type_name.find("std::vector<int") == 0);
  CHECK(leaks.front().count_per_interval == std::vector<std::ptrdiff_t>{20, 20});
  if (has_line_info()) {
    REQUIRE_FALSE(leaks.front().site.empty());
    CHECK(leaks.front().site.front().lineno == make_line);
  }

  // What to change: reserve the rows, and the growth itself.
  const auto suggestions = profiler.suggest_optimizations();
  bool reserve = false, leak = false;
  for (const auto& s : suggestions) {
    reserve = reserve || (s.rule == "reserve" && (!has_line_info() || at_line(s.site, append_line)));
    leak = leak || s.rule == "leak";
    CHECK(s.estimated_saving > 0);
    CHECK_FALSE(s.message.empty());
  }
  CHECK(reserve);
  CHECK(leak);
  for (std::size_t i = 1; i < suggestions.size(); ++i) {
    CHECK(suggestions[i - 1].estimated_saving >= suggestions[i].estimated_saving);
  }

  // The timeline: a point at start, one per snapshot, one at stop, and the sampler's.
  const auto timeline = profiler.timeline();
  CHECK(timeline.size() >= 8);
  CHECK(timeline.back().traced_current >= 100 * 10000 * sizeof(int));
  CHECK_FALSE(profiler.sparkline(40).empty());
}

TEST_CASE("e15: the report and the timeline graph", "[exercises][e15][threads]") {
  memlens::AdvancedMemoryProfiler profiler;
  const auto data = run_scenario(profiler);
  const auto dir = std::filesystem::temp_directory_path() / "memlens_e15_test";
  std::filesystem::create_directories(dir);
  profiler.generate_report(dir / "memory_report.html");
  profiler.plot_memory_timeline(dir / "memory_timeline.svg");

  const std::string html = read(dir / "memory_report.html");
  for (const char* id : {"summary", "timeline", "top-sites", "growth", "leaks", "cycles",
                         "suggestions", "flamegraph", "flamegraph-diff"}) {
    CHECK_THAT(html, memlens_test::contains(std::string("id=\"") + id + "\""));
  }
  CHECK_THAT(html, memlens_test::contains("Iteration 80"));
  CHECK(html.find("<script src") == std::string::npos);
  CHECK(html.find("<link rel=\"stylesheet") == std::string::npos);
  // Nothing from the network: the only address is the SVG namespace's name.
  for (std::size_t at = html.find("http"); at != std::string::npos; at = html.find("http", at + 1)) {
    CHECK(html.compare(at, 26, "http://www.w3.org/2000/svg") == 0);
  }
  const std::string svg = read(dir / "memory_timeline.svg");
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK_THAT(svg, memlens_test::contains("Iteration 40"));
  std::filesystem::remove_all(dir);
}
