// memlens::detail::report: the memory profiler's HTML page and SVG timeline. Snapshots are
// made from frames given here (as Snapshot::load makes them), so every number is known.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memlens/detail/profile_report.hpp>
#include <memlens/tracemalloc.hpp>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "memlens_test.hpp"

namespace test_profile_report {

namespace report = memlens::detail::report;
namespace tracemalloc = memlens::tracemalloc;
using memlens_test::contains;

/// One traced allocation of a made-up snapshot: its frames (most recent first) and size.
struct Alloc {
  std::vector<tracemalloc::Frame> frames;
  std::size_t size;
};

/// A snapshot holding `allocs`, one traceback per distinct frame list.
tracemalloc::Snapshot snapshot_of(const std::vector<Alloc>& allocs) {
  auto data = std::make_shared<tracemalloc::detail::SnapshotData>();
  data->traceback_limit = 16;
  std::vector<std::vector<tracemalloc::Frame>> seen;
  for (const Alloc& a : allocs) {
    auto it = std::find(seen.begin(), seen.end(), a.frames);
    if (it == seen.end()) {
      seen.push_back(a.frames);
      data->tracebacks.emplace_back(a.frames);
      it = seen.end() - 1;
    }
    data->traces.push_back({a.size, static_cast<std::uint32_t>(it - seen.begin()), 0});
  }
  std::call_once(data->symbolized_once, [] {});
  return tracemalloc::Snapshot(std::move(data));
}

tracemalloc::Frame frame(const std::string& function, int line = 1) {
  return {"/src/app.cpp", line, function};
}

std::uint64_t total_bytes(const report::FlameSnapshot& s) {
  std::uint64_t total = s.other_bytes;
  for (const auto& x : s.samples) total += x.bytes;
  return total;
}

std::uint64_t total_count(const report::FlameSnapshot& s) {
  std::uint64_t total = s.other_count;
  for (const auto& x : s.samples) total += x.count;
  return total;
}

std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A directory of its own under the system's temporary directory, removed at the end.
struct TempDir {
  TempDir()
      : path(std::filesystem::temp_directory_path() /
             ("memlens_report_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

/// A document with everything: three snapshots, a timeline, and the profiler's sections.
report::Document full_document() {
  report::Document doc;
  doc.title = "Report <of> \"app\" & co";
  doc.summary = {{"Duration", "1.2 s"}, {"Program", "app --flag=<x>"}};
  for (int i = 0; i < 50; ++i) {
    doc.timeline.push_back(
        {i * 10.0, std::uint64_t(i) * 1000, std::uint64_t(i) * 1100, std::uint64_t(i) * 4000});
  }
  doc.markers = {{0, "start"}, {250, "middle <b>"}, {490, "end"}};
  const auto a = frame("std::vector<int>::push_back", 10);
  const auto b = frame("operator<<(std::ostream&, T const&)", 20);
  const auto main_frame = frame("main", 30);
  doc.flame = report::build_flame(
      {{"start", snapshot_of({{{a, main_frame}, 100}})},
       {"middle", snapshot_of({{{a, main_frame}, 100}, {{b, main_frame}, 300}})},
       {"end </script>", snapshot_of({{{b, main_frame}, 50}})}});
  doc.flame_default = 1;
  report::Section top{"top-sites", "Top sites", "Where <memory> goes", {}, {}, "none"};
  top.table.columns = {"Site", "Size"};
  top.table.rows = {{{"app.cpp:10"}, {"100 B", 100}}, {{"app.cpp:20"}, {"1.5 KiB", 1536}}};
  doc.sections = {top,
                  {"growth", "Growth", "", {}, {}, "Nothing grew."},
                  {"leaks", "Leaks", "", {}, {"Registry\n  .items[3] -> <Item>"}, "No leak."},
                  {"cycles", "Cycles", "", {}, {}, "No cycle."},
                  {"suggestions", "Suggestions", "", {}, {}, "No suggestion."}};
  return doc;
}

}  // namespace test_profile_report

TEST_CASE("report: downsample bounds the points and keeps the peaks", "[report]") {
  using namespace test_profile_report;
  std::vector<report::Point> points;
  for (int i = 0; i < 100000; ++i) {
    const auto v = static_cast<std::uint64_t>(1000 + i % 7);
    points.push_back({i * 1.0, v, v + 10, v + 20});
  }
  points[54321].traced_current = 1'000'000;  // a spike one sample wide
  points[77777].rss = 5'000'000;
  const auto shown = report::downsample(points, 2000);
  REQUIRE(shown.size() <= 2000);
  CHECK(shown.size() >= 1900);
  CHECK(shown.front().elapsed_ms == 0);
  CHECK(shown.back().elapsed_ms == 99999);
  auto max_of = [&](std::uint64_t report::Point::*field) {
    std::uint64_t m = 0;
    for (const auto& p : shown) m = std::max(m, p.*field);
    return m;
  };
  CHECK(max_of(&report::Point::traced_current) == 1'000'000);
  CHECK(max_of(&report::Point::rss) == 5'000'000);
  CHECK(std::is_sorted(shown.begin(), shown.end(),
                       [](const auto& x, const auto& y) { return x.elapsed_ms < y.elapsed_ms; }));
  // The spike is drawn where it happened.
  CHECK(std::any_of(shown.begin(), shown.end(), [](const auto& p) {
    return p.traced_current == 1'000'000 && p.elapsed_ms == 54321;
  }));

  for (std::size_t max :
       {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}}) {
    CHECK(report::downsample(points, max).size() <= max);
  }
  const std::vector<report::Point> few(points.begin(), points.begin() + 10);
  CHECK(report::downsample(few, 2000).size() == 10);
}

TEST_CASE("report: html_escape escapes markup and replaces invalid UTF-8", "[report]") {
  using namespace test_profile_report;
  CHECK(report::html_escape("a<b>&\"c\"'") == "a&lt;b&gt;&amp;&quot;c&quot;&#39;");
  CHECK(report::html_escape("caf\xC3\xA9 \xE2\x82\xAC") == "caf\xC3\xA9 \xE2\x82\xAC");
  CHECK(report::html_escape("bad\xFF\xC3") == "bad\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(report::html_escape("tab\tbell\x07") == "tab\tbell\xEF\xBF\xBD");
  CHECK(report::html_escape("\xED\xA0\x80") ==
        "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST_CASE("report: json_escape keeps a script block closed and the JSON valid", "[report]") {
  using namespace test_profile_report;
  CHECK(report::json_escape("</script><!--") == "\\u003c/script\\u003e\\u003c!--");
  CHECK(report::json_escape("a\"b\\c\nd\x01") == "a\\\"b\\\\c\\nd\\u0001");
  CHECK(report::json_escape("x & y") == "x \\u0026 y");
  CHECK(report::json_escape("caf\xC3\xA9") == "caf\xC3\xA9");
  CHECK(report::json_escape("\xE2\x80\xA8") == "\\u2028");
  CHECK(report::json_escape("\xC0\xAF") == "\\ufffd\\ufffd");  // overlong '/'
}

TEST_CASE("report: the timeline is a standalone SVG with its markers", "[report]") {
  using namespace test_profile_report;
  std::vector<report::Point> points;
  for (int i = 0; i < 50000; ++i) {
    points.push_back({i * 0.5, std::uint64_t(i) * 1000, std::uint64_t(i) * 1000, 0});
  }
  const std::string svg =
      report::timeline_svg(points, {{100, "first"}, {20000, "after <load> & co"}}, 900, 300);
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.ends_with("</svg>\n"));
  CHECK_THAT(svg, contains(">first</text>"));
  CHECK_THAT(svg, contains("after &lt;load&gt; &amp; co"));
  CHECK(svg.find("<load>") == std::string::npos);
  CHECK(occurrences(svg, "<g") == occurrences(svg, "</g>"));
  CHECK(occurrences(svg, "<text") == occurrences(svg, "</text>"));
  CHECK_THAT(svg, contains("MiB"));                   // axis in human units
  CHECK_THAT(svg, contains(">10 s</text>"));          // 25 s of samples: a tick every 5 s
  CHECK(svg.find("ms</text>") == std::string::npos);  // one unit on the time axis
  CHECK(svg.find("RSS") == std::string::npos);        // no RSS sample: no RSS line
  // Downsampled: the current line has at most 2000 points.
  const auto line = svg.find("<polyline");
  REQUIRE(line != std::string::npos);
  const auto attr = svg.find("points=\"", line);
  const auto end = svg.find('"', attr + 8);
  const std::string coords = svg.substr(attr + 8, end - attr - 8);
  CHECK(static_cast<std::size_t>(std::count(coords.begin(), coords.end(), ',')) <= 2000);

  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::string odd = report::timeline_svg({{nan, 1, 1, 1}, {5, 100, 100, 0}}, {{nan, "x"}});
  CHECK(odd.find("nan") == std::string::npos);
  CHECK(odd.find(">x</text>") == std::string::npos);

  const std::string empty = report::timeline_svg({}, {}, 400, 200);
  CHECK(empty.rfind("<svg xmlns=", 0) == 0);
  CHECK_THAT(empty, contains("No samples"));
}

TEST_CASE("report: the page references nothing outside itself and has every section", "[report]") {
  using namespace test_profile_report;
  const std::string html = report::render_html(full_document());
  std::string without_namespace = html;
  for (std::string ns = "http://www.w3.org/2000/svg";;) {
    const auto at = without_namespace.find(ns);
    if (at == std::string::npos) break;
    without_namespace.erase(at, ns.size());
  }
  CHECK(without_namespace.find("http://") == std::string::npos);
  CHECK(without_namespace.find("https://") == std::string::npos);
  CHECK(without_namespace.find("src=") == std::string::npos);
  CHECK(without_namespace.find("@import") == std::string::npos);
  for (const char* id : {"summary", "timeline", "top-sites", "growth", "leaks", "cycles",
                         "suggestions", "flamegraph", "flamegraph-diff"}) {
    CHECK_THAT(html, contains("id=\"" + std::string(id) + "\""));
  }
  // One data block, one script; a label with </script> in it stays inside the JSON string.
  CHECK(occurrences(html, "</script>") == 2);
  CHECK_THAT(html, contains("end \\u003c/script\\u003e"));
  CHECK_THAT(html, contains("<title>Report &lt;of&gt; &quot;app&quot; &amp; co</title>"));
  CHECK_THAT(html, contains("Where &lt;memory&gt; goes"));
  CHECK_THAT(html, contains("<pre>Registry\n  .items[3] -&gt; &lt;Item&gt;</pre>"));
  CHECK_THAT(html, contains("Nothing grew."));  // empty_text of a table without rows
  CHECK_THAT(html, contains("<th class=\"num\" scope=\"col\">Size</th>"));
  CHECK_THAT(html, contains("<td class=\"num\" data-sort=\"1536\">1.5 KiB</td>"));
  CHECK_THAT(html, contains("<td>app.cpp:10</td>"));  // a text column has no sort key
  CHECK_THAT(html, contains("2 stacks shown, 0 folded into other (0 B)"));
}

TEST_CASE("report: a frame used by many stacks is stored once", "[report]") {
  using namespace test_profile_report;
  std::vector<Alloc> allocs;
  const auto shared = frame("common::dispatch<Request&>", 7);
  for (int i = 0; i < 200; ++i) {
    allocs.push_back({{frame("leaf_" + std::to_string(i), i + 100), shared, frame("main", 1)},
                      static_cast<std::size_t>(10 + i)});
  }
  const auto flame = report::build_flame({{"one", snapshot_of(allocs)}});
  REQUIRE(flame.stacks.size() == 200);
  CHECK(flame.frames.size() == 202);  // 200 leaves, dispatch and main
  CHECK(std::count_if(flame.frames.begin(), flame.frames.end(), [](const auto& f) {
          return f.function == "common::dispatch<Request&>";
        }) == 1);
  // Root first: main, then dispatch, then the leaf.
  for (const auto& stack : flame.stacks) {
    REQUIRE(stack.size() == 3);
    CHECK(flame.frames[stack[0]].function == "main");
    CHECK(flame.frames[stack[1]].function == "common::dispatch<Request&>");
    CHECK(flame.frames[stack[2]].line >= 100);
  }
  report::Document doc;
  doc.flame = flame;
  const std::string html = report::render_html(doc);
  CHECK(occurrences(html, "common::dispatch\\u003cRequest\\u0026\\u003e") == 1);
  CHECK(occurrences(html, "\"/src/app.cpp\"") == 1);  // files are interned too
}

TEST_CASE("report: stacks beyond the limit fold into other with the totals kept", "[report]") {
  using namespace test_profile_report;
  std::vector<Alloc> before, after;
  std::uint64_t before_total = 0, after_total = 0;
  for (int i = 0; i < 100; ++i) {
    // Statistics key frames by file and line, as Python's: each stack has a line of its own.
    const std::vector<tracemalloc::Frame> stack = {frame("f" + std::to_string(i), 100 + i),
                                                   frame("main")};
    const auto size = static_cast<std::size_t>(1000 + i);
    before.push_back({stack, size});
    before.push_back({stack, size});
    before_total += 2 * size;
  }
  // In the second snapshot one small stack becomes the largest of all.
  for (int i = 0; i < 100; ++i) {
    const auto size = static_cast<std::size_t>(i == 3 ? 1'000'000 : 10);
    after.push_back({{frame("f" + std::to_string(i), 100 + i), frame("main")}, size});
    after_total += size;
  }
  const auto flame =
      report::build_flame({{"before", snapshot_of(before)}, {"after", snapshot_of(after)}}, 10);
  REQUIRE(flame.stacks.size() == 10);
  REQUIRE(flame.snapshots.size() == 2);
  const auto& b = flame.snapshots[0];
  const auto& a = flame.snapshots[1];
  CHECK(b.label == "before");
  CHECK(b.samples.size() == 10);
  CHECK(b.other_stacks == 90);
  CHECK(total_bytes(b) == before_total);
  CHECK(total_count(b) == 200);
  CHECK(total_bytes(a) == after_total);
  CHECK(total_count(a) == 100);
  CHECK(a.samples.size() + a.other_stacks == 100);
  // f3 is kept (largest in "after"), and "before" lists it too, so the diff of f3 is exact.
  auto kept = [&](const report::FlameSnapshot& s, const std::string& name) {
    for (const auto& x : s.samples) {
      if (flame.frames[flame.stacks[x.stack].back()].function == name) return x.bytes;
    }
    return std::uint64_t{0};
  };
  CHECK(kept(a, "f3") == 1'000'000);
  CHECK(kept(b, "f3") == 2 * 1003);
  CHECK(kept(b, "f99") == 2 * 1099);  // the largest of "before" are kept too
  CHECK(kept(b, "f50") == 0);
  CHECK(std::is_sorted(b.samples.begin(), b.samples.end(),
                       [](const auto& x, const auto& y) { return x.bytes > y.bytes; }));

  // A byte budget keeps fewer stacks; the totals still hold.
  const auto small = report::build_flame({{"before", snapshot_of(before)}}, 100, 200);
  CHECK(small.stacks.size() >= 1);
  CHECK(small.stacks.size() < 10);
  CHECK(total_bytes(small.snapshots[0]) == before_total);
}

TEST_CASE("report: a traceback without frames is one unknown frame", "[report]") {
  using namespace test_profile_report;
  const auto flame = report::build_flame({{"s", snapshot_of({{{}, 64}})}});
  REQUIRE(flame.stacks.size() == 1);
  REQUIRE(flame.stacks[0].size() == 1);
  CHECK(flame.frames[flame.stacks[0][0]].function == "<unknown>");
  CHECK(flame.snapshots[0].samples.at(0).bytes == 64);
}

TEST_CASE("report: write_html replaces the file atomically", "[report]") {
  using namespace test_profile_report;
  TempDir dir;
  const auto path = dir.path / "report.html";
  { std::ofstream(path) << "old"; }
  report::write_html(full_document(), path);
  const std::string first = read_file(path);
  CHECK(first.rfind("<!DOCTYPE html>", 0) == 0);
  report::Document other = full_document();
  other.title = "second";
  report::write_html(other, path);
  CHECK_THAT(read_file(path), contains("<title>second</title>"));
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path)) {
    names.push_back(entry.path().filename().string());
  }
  CHECK(names == std::vector<std::string>{"report.html"});  // no temporary file left

  report::write_timeline_svg(other.timeline, other.markers, dir.path / "timeline.svg");
  CHECK(read_file(dir.path / "timeline.svg").rfind("<svg xmlns=", 0) == 0);
  std::filesystem::remove(dir.path / "timeline.svg");

  const auto nowhere = dir.path / "missing-dir" / "report.html";
  CHECK_THROWS_AS(report::write_html(other, nowhere), memlens::Error);
  CHECK_THROWS_WITH(report::write_html(other, nowhere),
                    contains("profiler: cannot write report to '" + nowhere.string() + "'"));
  CHECK_THROWS_WITH(report::write_html(other, nowhere, "AdvancedMemoryProfiler: cannot write"),
                    contains("AdvancedMemoryProfiler: cannot write '" + nowhere.string() + "'"));
}
