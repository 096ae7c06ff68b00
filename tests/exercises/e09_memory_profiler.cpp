// Seed exercise 9, create a memory profiler: use tracemalloc to track allocations, identify the
// top memory consumers by line, show memory growth over time, generate a summary report:
//   profiler = MemoryProfiler(); profiler.start()
//   data1 = [i for i in range(100000)]; profiler.snapshot("After list")
//   data2 = {i: str(i) for i in range(50000)}; profiler.snapshot("After dict")
//   report = profiler.stop()
// The global operator new is traced through memlens/track_new.hpp
// (tests/unit/tracemalloc_hook.cpp); tracebacks name this file and its lines (the test target is
// built with -g and frame pointers).
#include <fmt/format.h>

#include <cstddef>
#include <map>
#include <memlens/tools/memory_profiler.hpp>
#include <memlens/tracemalloc.hpp>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

namespace test_e09 {

using test_tracemalloc_common::ends_with;
using test_tracemalloc_common::escape;
using test_tracemalloc_common::has_line_info;
using test_tracemalloc_common::Tracing;

/// Checks that the traceback's most recent frame is this file at `line`. Without line
/// information (no -g, or no addr2line) there is nothing to compare: that is reported, not
/// failed, as in the tracemalloc unit tests.
void check_names_line(const tracemalloc::Traceback& tb, int line) {
  REQUIRE_FALSE(tb.empty());
  const tracemalloc::Frame& frame = tb.front();
  if (!has_line_info()) {
    WARN("no line information for " << frame.function << ": file:line not checked");
    return;
  }
  CHECK(ends_with(frame.filename, "exercises/e09_memory_profiler.cpp"));
  CHECK(frame.lineno == line);
}

/// The seed's program: a list of 100000 ints, then a dict of 50000 int -> str, with a labelled
/// snapshot after each. The containers stay alive in `data1` and `data2`.
///
/// Each allocating line runs in a frame of its own, wholly on that line, so the line checked
/// does not depend on how the symbolizer resolves inlined library code (tests/unit/
/// tracemalloc_inlined.cpp tests that): the lambda's frame, or else its caller's, is the line.
struct SeedRun {
  std::vector<int> data1;
  std::map<int, std::string> data2;
  int list_line = 0;
  int dict_line = 0;

  explicit SeedRun(memlens::MemoryProfiler& profiler) {
    // clang-format off
    list_line = __LINE__ + 1;
    [&]() MEMLENS_NOINLINE { data1.resize(100000); std::iota(data1.begin(), data1.end(), 0); }();
    escape(data1.data());
    profiler.snapshot("After list");

    dict_line = __LINE__ + 1;
    [&]() MEMLENS_NOINLINE { for (int i = 0; i < 50000; ++i) data2[i] = std::to_string(i); }();
    escape(&data2);
    profiler.snapshot("After dict");
    // clang-format on
  }
};

}  // namespace test_e09

TEST_CASE("e09: top_allocations names the lines that hold the most memory",
          "[exercise][e09][tracemalloc]") {
  memlens::MemoryProfiler profiler;
  profiler.start();
  std::vector<int> data1;
  std::vector<char> small;
  // In frames of their own, for -O2: see SeedRun.
  const int list_line = __LINE__ + 1;
  [&]() MEMLENS_NOINLINE { data1.resize(100000); }();
  const int small_line = __LINE__ + 1;
  [&]() MEMLENS_NOINLINE { small.resize(1000); }();
  test_e09::escape(data1.data());
  test_e09::escape(small.data());
  profiler.snapshot("After list");

  CHECK(profiler.started_tracing());
  auto top = profiler.top_allocations();
  REQUIRE(top.size() == 2);  // tracing started with the profiler: nothing else is live
  CHECK(top[0].size == 100000 * sizeof(int));
  CHECK(top[0].count == 1);
  test_e09::check_names_line(top[0].traceback, list_line);
  CHECK(top[1].size == 1000);
  test_e09::check_names_line(top[1].traceback, small_line);

  REQUIRE(profiler.top_allocations(1).size() == 1);
  CHECK(profiler.top_allocations(1)[0].size == top[0].size);
  CHECK(profiler.top_allocations(0).empty());

  // What snapshot() recorded: the traced bytes are those of the snapshot's traces.
  const memlens::ProfileSnapshot& recorded = profiler.at("After list");
  CHECK(recorded.label == "After list");
  CHECK(recorded.current == 100000 * sizeof(int) + 1000);
  CHECK(recorded.peak == recorded.current);
  std::size_t traced = 0;
  for (const auto& trace : recorded.snapshot.traces()) traced += trace.size;
  CHECK(traced == recorded.current);
  REQUIRE(profiler.snapshots().size() == 1);
  CHECK(&profiler.snapshots()[0] == &recorded);
}

TEST_CASE("e09: growth from \"After list\" to \"After dict\" is the dict's line",
          "[exercise][e09][tracemalloc]") {
  memlens::MemoryProfiler profiler;
  profiler.start();
  test_e09::SeedRun run(profiler);

  auto diffs = profiler.growth("After list", "After dict");
  REQUIRE(diffs.size() == 2);  // the two lines that allocated: the dict's grew, the list's not
  CHECK(diffs[0].size_diff > 0);
  CHECK(diffs[0].count_diff == 50000);  // a node per entry (short strings need no buffer)
  CHECK(diffs[0].count == 50000);
  CHECK(static_cast<std::size_t>(diffs[0].size_diff) >=
        50000 * (sizeof(int) + sizeof(std::string)));
  CHECK(static_cast<std::size_t>(diffs[0].size_diff) == diffs[0].size);
  test_e09::check_names_line(diffs[0].traceback, run.dict_line);
  CHECK(diffs[1].size_diff == 0);
  CHECK(diffs[1].size == 100000 * sizeof(int));
  test_e09::check_names_line(diffs[1].traceback, run.list_line);

  // The other way round, the dict's memory is freed; `n` keeps the largest changes.
  auto back = profiler.growth("After dict", "After list", 1);
  REQUIRE(back.size() == 1);
  CHECK(back[0].size_diff == -diffs[0].size_diff);
  CHECK(back[0].count_diff == -50000);
  CHECK(back[0].size == 0);
  CHECK(profiler.growth("After list", "After list", 10).front().size_diff == 0);
}

TEST_CASE("e09: growth over time with one step per snapshot", "[exercise][e09][tracemalloc]") {
  memlens::MemoryProfiler profiler;
  profiler.start();
  test_e09::SeedRun run(profiler);
  auto dict_growth = profiler.growth("After list", "After dict", 1).at(0).size_diff;

  auto steps = profiler.growth_over_time(2);
  REQUIRE(steps.size() == 2);
  CHECK(steps[0].label == "After list");
  CHECK(steps[0].current == 100000 * sizeof(int));
  CHECK(steps[0].delta == 100000 * sizeof(int));  // from start(), when nothing was traced
  CHECK(steps[0].peak == steps[0].current);
  CHECK(steps[1].label == "After dict");
  CHECK(steps[1].delta == dict_growth);  // the dict is all that was allocated in between
  CHECK(steps[1].current == steps[0].current + static_cast<std::size_t>(dict_growth));
  CHECK(steps[1].peak >= steps[1].current);
  CHECK(steps[0].elapsed <= steps[1].elapsed);  // a steady clock never goes back

  // Each step names the lines that changed during it, and only those.
  REQUIRE(steps[0].top_growth.size() == 1);
  CHECK(steps[0].top_growth[0].size_diff == 100000 * sizeof(int));
  test_e09::check_names_line(steps[0].top_growth[0].traceback, run.list_line);
  REQUIRE(steps[1].top_growth.size() == 1);
  CHECK(steps[1].top_growth[0].size_diff == dict_growth);
  test_e09::check_names_line(steps[1].top_growth[0].traceback, run.dict_line);

  CHECK(profiler.growth_over_time().at(1).top_growth.empty());  // 0 lines: no symbolization
  CHECK_THAT(memlens::to_string(steps[1]), memlens_test::contains("\"After dict\": "));
  CHECK(fmt::format("{}", steps[1]) == memlens::to_string(steps[1]));
}

TEST_CASE("e09: stop() returns a summary report", "[exercise][e09][tracemalloc]") {
  memlens::MemoryProfiler profiler;
  profiler.start();
  test_e09::SeedRun run(profiler);
  memlens::MemoryProfileReport report = profiler.stop();

  CHECK_FALSE(profiler.is_running());
  CHECK_FALSE(tracemalloc::is_tracing());  // the profiler started tracing, so it stopped it

  REQUIRE(report.growth.size() == 2);
  CHECK(report.growth[0].label == "After list");
  CHECK(report.growth[1].label == "After dict");
  CHECK(report.growth[1].top_growth.size() == 1);
  CHECK(report.top_label == "After dict");
  REQUIRE(report.top_allocations.size() == 2);
  test_e09::check_names_line(report.top_allocations[0].traceback, run.dict_line);
  test_e09::check_names_line(report.top_allocations[1].traceback, run.list_line);
  CHECK(report.start_current == 0);
  CHECK(report.current == report.growth[1].current);  // nothing allocated after the snapshot
  CHECK(report.peak >= report.current);
  CHECK(report.peak >= report.growth[0].peak);
  CHECK(report.peak >= report.growth[1].peak);
  CHECK(report.duration >= report.growth[1].elapsed);

  std::string text = memlens::to_string(report);
  CHECK_THAT(text, memlens_test::contains("Memory profile: 2 snapshots"));
  CHECK_THAT(text, memlens_test::contains("Top 2 lines at \"After dict\""));
  CHECK_THAT(text, memlens_test::contains("\"After list\": "));
  CHECK_THAT(text, memlens_test::contains("\"After dict\": "));
  CHECK_THAT(text, memlens_test::contains("peak " + tracemalloc::detail::format_size(
                                                        static_cast<double>(report.peak), false)));
  CHECK_THAT(text, memlens_test::contains(tracemalloc::to_string(report.top_allocations[0])));
  if (test_e09::has_line_info()) {
    CHECK_THAT(text, memlens_test::contains(
                         "e09_memory_profiler.cpp:" + std::to_string(run.dict_line) + ": size="));
  }
  CHECK(fmt::format("{}", report) == text);

  // The profile stays readable after stop().
  CHECK(profiler.top_allocations(1).at(0).size == report.top_allocations[0].size);
  CHECK(profiler.growth("After list", "After dict", 1).at(0).count_diff == 50000);
  CHECK(profiler.snapshots().size() == 2);
}

TEST_CASE("e09: a report without snapshots says so", "[exercise][e09][tracemalloc]") {
  memlens::MemoryProfiler profiler;
  profiler.start();
  auto report = profiler.stop();
  CHECK(report.growth.empty());
  CHECK(report.top_allocations.empty());
  CHECK(report.top_label.empty());
  CHECK_THAT(memlens::to_string(report), memlens_test::contains("0 snapshots"));
  CHECK_THAT(memlens::to_string(report), memlens_test::contains("No snapshot was taken"));
}

TEST_CASE("e09: start(nframe) sets the traceback limit when it starts tracing",
          "[exercise][e09][tracemalloc]") {
  memlens::MemoryProfiler profiler;
  profiler.start(3);
  CHECK(profiler.is_running());
  CHECK(profiler.started_tracing());
  CHECK(tracemalloc::is_tracing());
  CHECK(tracemalloc::get_traceback_limit() == 3);
  profiler.stop();
  CHECK_FALSE(tracemalloc::is_tracing());
}

TEST_CASE("e09: a trace already running is left running with its peak",
          "[exercise][e09][tracemalloc]") {
  test_e09::Tracing tracing;
  {
    std::vector<char> spike(200000);
    test_e09::escape(spike.data());
  }
  std::vector<char> outer(5000);
  test_e09::escape(outer.data());

  memlens::MemoryProfiler profiler;
  profiler.start(5);
  std::vector<char> inner(3000);
  test_e09::escape(inner.data());
  profiler.snapshot("inner");
  auto report = profiler.stop();

  CHECK_FALSE(profiler.started_tracing());
  CHECK(tracemalloc::is_tracing());
  CHECK(tracemalloc::get_traceback_limit() == 1);  // as tracemalloc::start: the limit stays
  CHECK(report.start_current >= 5000);
  REQUIRE(report.growth.size() == 1);
  CHECK(report.growth[0].delta == 3000);
  // The profile's peak is that of its own span, not the spike before it ...
  CHECK(report.peak == report.start_current + 3000);
  // ... and the trace's own peak survives the profile.
  CHECK(tracemalloc::get_traced_memory().peak >= 200000);
}

TEST_CASE("e09: destroying a running profiler stops the tracing it started",
          "[exercise][e09][tracemalloc]") {
  {
    memlens::MemoryProfiler profiler;
    profiler.start();
    CHECK(tracemalloc::is_tracing());
  }
  CHECK_FALSE(tracemalloc::is_tracing());

  {
    test_e09::Tracing tracing;
    {
      memlens::MemoryProfiler profiler;
      profiler.start();
    }
    CHECK(tracemalloc::is_tracing());  // not its to stop
  }

  // A stopped profiler leaves alone a trace started after its stop().
  {
    memlens::MemoryProfiler profiler;
    profiler.start();
    profiler.stop();
    tracemalloc::start();
  }
  CHECK(tracemalloc::is_tracing());
  tracemalloc::stop();
}

TEST_CASE("e09: the profiler's own data is not traced", "[exercise][e09][tracemalloc]") {
  // Labels longer than a string's inline buffer, made before the profile.
  std::vector<std::string> labels;
  for (int i = 0; i < 20; ++i)
    labels.push_back("a label too long to be stored inline #" + std::to_string(i));
  memlens::MemoryProfiler profiler;
  profiler.start();
  std::vector<char> block(777);
  test_e09::escape(block.data());
  auto before = tracemalloc::get_traced_memory();
  for (const auto& label : labels) profiler.snapshot(label);
  auto top = profiler.top_allocations();
  auto diffs = profiler.growth(labels.front(), labels.back());
  auto steps = profiler.growth_over_time(3);
  auto after = tracemalloc::get_traced_memory();
  auto report = profiler.stop();

  CHECK(before.current == 777);
  CHECK(after.current == before.current);  // with the results still held
  CHECK(after.peak == before.peak);
  REQUIRE(top.size() == 1);
  CHECK(top[0].size == 777);
  for (const auto& s : profiler.snapshots()) CHECK(s.current == 777);
  REQUIRE(steps.size() == 20);
  CHECK(steps[0].delta == 777);
  CHECK(steps[0].top_growth.size() == 1);
  for (std::size_t i = 1; i < steps.size(); ++i) {
    CHECK(steps[i].delta == 0);
    CHECK(steps[i].top_growth.empty());
  }
  CHECK(report.peak == 777);
}

TEST_CASE("e09: bad calls throw naming what was wrong", "[exercise][e09][tracemalloc]") {
  using memlens_test::contains;
  memlens::MemoryProfiler profiler;
  CHECK_THROWS_AS(profiler.snapshot("early"), memlens::Error);
  CHECK_THROWS_WITH(profiler.snapshot("early"), "MemoryProfiler: snapshot('early') before start()");
  CHECK_THROWS_WITH(profiler.stop(), "MemoryProfiler: stop() before start()");
  CHECK_THROWS_AS(profiler.top_allocations(), memlens::Error);
  CHECK_THROWS_WITH(profiler.top_allocations(), contains("call snapshot(label) first"));
  CHECK_THROWS_AS(profiler.start(0), memlens::ValueError);
  CHECK_THROWS_WITH(profiler.start(257), contains("range [1; 256], got 257"));
  CHECK_FALSE(profiler.is_running());
  CHECK_FALSE(tracemalloc::is_tracing());

  profiler.start();
  CHECK_THROWS_WITH(profiler.start(), contains("already running"));
  CHECK_THROWS_AS(profiler.snapshot(""), memlens::ValueError);
  profiler.snapshot("one");
  CHECK_THROWS_AS(profiler.snapshot("one"), memlens::ValueError);
  CHECK_THROWS_WITH(profiler.snapshot("one"), "MemoryProfiler: duplicate snapshot label 'one'");
  CHECK_THROWS_AS(profiler.growth("one", "two"), memlens::ValueError);
  CHECK_THROWS_WITH(profiler.growth("one", "two"),
                    "MemoryProfiler: unknown snapshot label 'two' (labels: 'one')");
  CHECK_THROWS_WITH(profiler.growth("zero", "one"), contains("'zero'"));
  CHECK_THROWS_AS(profiler.at("missing"), memlens::ValueError);
  CHECK(profiler.snapshots().size() == 1);  // the failed calls recorded nothing

  profiler.stop();
  CHECK_THROWS_WITH(profiler.stop(), contains("stop() called twice"));
  CHECK_THROWS_WITH(profiler.snapshot("late"), "MemoryProfiler: snapshot('late') after stop()");

  // A new start() begins a new profile: the old labels are free again.
  profiler.start();
  CHECK(profiler.snapshots().empty());
  CHECK_THROWS_WITH(profiler.at("one"), contains("(labels: none)"));
  profiler.snapshot("one");
  CHECK(profiler.snapshots().size() == 1);

  // Tracing stopped behind the profiler's back: tracemalloc's own error.
  tracemalloc::stop();
  CHECK_THROWS_AS(profiler.snapshot("two"), tracemalloc::TracingError);
  CHECK(profiler.stop().growth.size() == 1);
}
