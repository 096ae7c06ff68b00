// memlens::tracemalloc: the Python tracemalloc API over the replaced global operator new
// (tests/unit/tracemalloc_hook.cpp), Allocator, TracingResource and track/untrack.
// Tracebacks name this file and its lines: the test target is built with -g and frame pointers.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memlens/detail/trace_format.hpp>
#include <memlens/gc.hpp>
#include <memlens/tracemalloc.hpp>
#include <memory_resource>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

namespace test_tracemalloc {

using test_tracemalloc_common::ends_with;
using test_tracemalloc_common::escape;
using test_tracemalloc_common::Tracing;

/// A frame of this file, by file name when the build has line information, else a frame with a
/// function name.
bool names_this_file(const tracemalloc::Frame& f) {
  return test_tracemalloc_common::has_line_info() ? ends_with(f.filename, "tracemalloc.cpp")
                                                  : !f.function.empty();
}

// Called from two lines, so "lineno" and "traceback" statistics group differently.
__attribute__((noinline)) char* allocate_in_helper(std::size_t size) {
  char* p = new char[size];  // the helper's line: see kHelperLine
  escape(p);
  return p;
}
constexpr int kHelperLine = __LINE__ - 4;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("memlens_tm_" + std::to_string(getpid()) + "_" + name))
      .string();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Traces an allocation during static initialization, before main: the tracer's state is
/// constant-initialized, so the hook works whatever the order of initialization.
struct BeforeMain {
  BeforeMain() {
    tracemalloc::start();
    char* block = new char[321];
    escape(block);
    traced = tracemalloc::get_traced_memory().current;
    delete[] block;
    tracemalloc::stop();
  }
  std::size_t traced = 0;
};
BeforeMain before_main;

/// Traces allocations during static destruction, after main: the tracer's tables and symbol
/// cache are never destroyed. A crash here fails the run. Armed by the test case below, so that
/// runs which do not select it (one CTest entry each, listings) do not pay for symbolization.
struct AfterMain {
  bool armed = false;
  ~AfterMain() {
    if (!armed) return;
    tracemalloc::start(4);
    std::vector<std::string> strings(100, std::string(100, 'x'));
    auto stats = tracemalloc::take_snapshot().statistics("lineno");
    if (stats.empty() || tracemalloc::get_traced_memory().current == 0) std::abort();
    tracemalloc::stop();
  }
};
AfterMain after_main;

}  // namespace test_tracemalloc

using test_tracemalloc::Tracing;

TEST_CASE("tracemalloc: tracing works before main and after it", "[tracemalloc]") {
  CHECK(test_tracemalloc::before_main.traced >= 321);
  test_tracemalloc::after_main.armed = true;
}

TEST_CASE("tracemalloc: start and stop and is_tracing and get_traceback_limit", "[tracemalloc]") {
  tracemalloc::stop();
  CHECK_FALSE(tracemalloc::is_tracing());
  tracemalloc::start(5);
  CHECK(tracemalloc::is_tracing());
  CHECK(tracemalloc::get_traceback_limit() == 5);
  tracemalloc::start(3);  // already tracing: nothing changes, as in Python
  CHECK(tracemalloc::get_traceback_limit() == 5);
  tracemalloc::stop();
  CHECK_FALSE(tracemalloc::is_tracing());
  CHECK_THROWS_AS(tracemalloc::start(0), memlens::ValueError);
  CHECK_THROWS_WITH(tracemalloc::start(100000), memlens_test::contains("tracemalloc: "));
  CHECK_FALSE(tracemalloc::is_tracing());
  CHECK_THROWS_AS(tracemalloc::take_snapshot(), tracemalloc::TracingError);
}

TEST_CASE("tracemalloc: get_traced_memory is exact with peak and reset_peak", "[tracemalloc]") {
  Tracing tracing;
  auto [current0, peak0] = tracemalloc::get_traced_memory();
  char* block = new char[1000];
  test_tracemalloc::escape(block);
  auto [current1, peak1] = tracemalloc::get_traced_memory();
  char* second = new char[500];
  test_tracemalloc::escape(second);
  delete[] second;
  auto [current2, peak2] = tracemalloc::get_traced_memory();
  tracemalloc::reset_peak();
  auto after_reset = tracemalloc::get_traced_memory();
  delete[] block;
  auto [current3, peak3] = tracemalloc::get_traced_memory();

  CHECK(current1 == current0 + 1000);
  CHECK(peak1 == std::max(peak0, current1));
  CHECK(current2 == current1);
  CHECK(peak2 == std::max(peak0, current1 + 500));
  CHECK(after_reset.peak == after_reset.current);
  CHECK(current3 == current0);
  CHECK(peak3 == after_reset.peak);

  tracemalloc::stop();
  auto [current4, peak4] = tracemalloc::get_traced_memory();
  CHECK(current4 == 0);
  CHECK(peak4 == 0);
}

TEST_CASE("tracemalloc: every form of operator new is traced", "[tracemalloc]") {
  struct alignas(64) Aligned {
    char bytes[192];
  };
  Tracing tracing;
  auto before = tracemalloc::get_traced_memory().current;
  auto* aligned = new Aligned;
  test_tracemalloc::escape(aligned);
  auto* aligned_array = new Aligned[2];
  test_tracemalloc::escape(aligned_array);
  char* nothrow = new (std::nothrow) char[300];
  test_tracemalloc::escape(nothrow);
  int* one = new int(7);
  test_tracemalloc::escape(one);
  auto during = tracemalloc::get_traced_memory().current;
  CHECK(reinterpret_cast<std::uintptr_t>(aligned) % 64 == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(aligned_array) % 64 == 0);
  delete aligned;
  delete[] aligned_array;
  delete[] nothrow;
  delete one;
  auto after = tracemalloc::get_traced_memory().current;

  CHECK(during == before + 192 + 2 * 192 + 300 + sizeof(int));
  CHECK(after == before);
}

TEST_CASE("tracemalloc: nothing is traced while off and clear_traces forgets", "[tracemalloc]") {
  tracemalloc::stop();
  char* early = new char[4096];  // allocated before start: never traced
  test_tracemalloc::escape(early);
  Tracing tracing;
  auto base = tracemalloc::get_traced_memory();
  delete[] early;  // freeing an untraced block changes nothing
  CHECK(tracemalloc::get_traced_memory().current == base.current);

  char* block = new char[2000];
  test_tracemalloc::escape(block);
  CHECK(tracemalloc::get_traced_memory().current == base.current + 2000);
  tracemalloc::clear_traces();
  auto cleared = tracemalloc::get_traced_memory();
  CHECK(cleared.current == 0);
  CHECK(cleared.peak == 0);
  delete[] block;  // its trace is gone: no underflow
  CHECK(tracemalloc::get_traced_memory().current == 0);
  CHECK(tracemalloc::take_snapshot().traces().empty());
}

TEST_CASE("tracemalloc: the tracer's own memory is not traced", "[tracemalloc]") {
  std::vector<char*> blocks;
  blocks.reserve(5000);  // before start: the vector's buffer is not traced
  Tracing tracing;
  auto base = tracemalloc::get_traced_memory().current;
  auto tracer_before = tracemalloc::get_tracemalloc_memory();
  for (int i = 0; i < 5000; ++i) blocks.push_back(new char[16]);
  auto current = tracemalloc::get_traced_memory().current;
  auto tracer_after = tracemalloc::get_tracemalloc_memory();
  std::size_t after_snapshot = 0;
  std::size_t traces = 0;
  {
    auto snapshot = tracemalloc::take_snapshot();  // allocates under the tracer's lock
    after_snapshot = tracemalloc::get_traced_memory().current;
    traces = snapshot.traces().size();  // symbolizes: the symbol cache is not traced either
  }
  for (char* b : blocks) delete[] b;

  CHECK(tracer_before > 0);
  CHECK(tracer_after > tracer_before);  // the table grew...
  CHECK(current == base + 5000 * 16);   // ...and is not in the traced memory
  CHECK(after_snapshot == current);     // nor is the snapshot's copy of the traces
  CHECK(traces >= 5000);
  CHECK(tracemalloc::get_traced_memory().current == base);
}

TEST_CASE("tracemalloc: track and untrack in a domain and DomainFilter", "[tracemalloc]") {
  tracemalloc::stop();
  int storage[4];
  CHECK_FALSE(tracemalloc::track(storage, 500, 7));  // not tracing
  Tracing tracing;
  auto base = tracemalloc::get_traced_memory().current;
  CHECK(tracemalloc::track(storage, 500, 7));
  CHECK(tracemalloc::track(storage, 64, 0));  // same address, other domain: another trace
  CHECK(tracemalloc::get_traced_memory().current == base + 564);

  {
    auto snapshot = tracemalloc::take_snapshot();
    auto only7 = snapshot.filter_traces({tracemalloc::DomainFilter(true, 7)});
    REQUIRE(only7.traces().size() == 1);
    CHECK(only7.traces()[0].domain == 7);
    CHECK(only7.traces()[0].size == 500);
    auto not7 = snapshot.filter_traces({tracemalloc::DomainFilter(false, 7)});
    CHECK(not7.traces().size() == snapshot.traces().size() - 1);
  }

  CHECK(tracemalloc::untrack(storage, 7));
  CHECK(tracemalloc::get_traced_memory().current == base + 64);
  CHECK(tracemalloc::untrack(storage, 0));
  CHECK(tracemalloc::get_traced_memory().current == base);
}

TEST_CASE("tracemalloc: Allocator<T> traces a std::vector without the global hook",
          "[tracemalloc]") {
  Tracing tracing(4);
  auto base = tracemalloc::get_traced_memory().current;
  std::vector<int, tracemalloc::Allocator<int>> v;
  const int line = __LINE__ + 1;
  v.reserve(1000);
  CHECK(tracemalloc::get_traced_memory().current == base + 1000 * sizeof(int));
  {
    auto snapshot = tracemalloc::take_snapshot();
    auto only = snapshot.filter_traces({tracemalloc::Filter(true, "*", line)});
    auto stats = snapshot.statistics("lineno");
    REQUIRE_FALSE(stats.empty());
    CHECK(stats.front().size == 1000 * sizeof(int));
    if (test_tracemalloc_common::has_line_info()) {
      CHECK(stats.front().traceback.front().lineno == line);
      CHECK(only.traces().size() == 1);
    }
  }
  v = {};
  v.shrink_to_fit();
  CHECK(tracemalloc::get_traced_memory().current == base);
}

TEST_CASE("tracemalloc: TracingResource traces a pmr container in its domain", "[tracemalloc]") {
  Tracing tracing;
  tracemalloc::TracingResource resource(tracemalloc::malloc_resource(), 3);
  auto base = tracemalloc::get_traced_memory().current;
  {
    std::pmr::vector<char> v(&resource);
    v.reserve(5000);
    CHECK(tracemalloc::get_traced_memory().current == base + 5000);
    auto domain3 = tracemalloc::take_snapshot().filter_traces({tracemalloc::DomainFilter(true, 3)});
    REQUIRE(domain3.traces().size() == 1);
    CHECK(domain3.traces()[0].size == 5000);
    CHECK(test_tracemalloc::names_this_file(domain3.traces()[0].traceback.front()));
  }  // the snapshot's frames (traced, as Python's snapshot objects) go too
  CHECK(tracemalloc::get_traced_memory().current == base);
}

TEST_CASE("tracemalloc: statistics(\"lineno\") names the line that allocated", "[tracemalloc]") {
  Tracing tracing;
  const int line = __LINE__ + 1;
  char* big = new char[1 << 20];
  test_tracemalloc::escape(big);
  auto snapshot = tracemalloc::take_snapshot();
  auto stats = snapshot.statistics("lineno");
  delete[] big;

  REQUIRE_FALSE(stats.empty());
  const auto& top = stats.front();
  CHECK(top.size == (1 << 20));
  CHECK(top.count == 1);
  REQUIRE(top.traceback.size() == 1);
  const auto& frame = top.traceback.front();
  CHECK_FALSE(frame.function.empty());
  if (test_tracemalloc_common::has_line_info()) {
    CHECK(test_tracemalloc::ends_with(frame.filename, "tests/unit/tracemalloc.cpp"));
    CHECK(frame.lineno == line);
  }
  for (std::size_t i = 1; i < stats.size(); ++i) CHECK(stats[i - 1].size >= stats[i].size);
}

TEST_CASE("tracemalloc: std frames are skipped or kept on request", "[tracemalloc]") {
  Tracing tracing(2);
  std::vector<long> v;
  const int line = __LINE__ + 1;
  v.resize(4096);
  auto skipped = tracemalloc::take_snapshot().statistics("lineno");
  tracemalloc::set_skip_std_frames(false);
  auto kept = tracemalloc::take_snapshot().statistics("lineno");
  REQUIRE_FALSE(skipped.empty());
  REQUIRE_FALSE(kept.empty());
  if (test_tracemalloc_common::has_line_info()) {
    CHECK(skipped.front().traceback.front().lineno == line);
    CHECK(kept.front().traceback.front().filename.find("c++") != std::string::npos);
  }
}

TEST_CASE("tracemalloc: statistics by filename and traceback and cumulative", "[tracemalloc]") {
  Tracing tracing(4);
  char* a = test_tracemalloc::allocate_in_helper(30000);
  const int line_a = __LINE__ - 1;
  char* b = test_tracemalloc::allocate_in_helper(20000);
  const int line_b = __LINE__ - 1;
  auto snapshot = tracemalloc::take_snapshot();
  delete[] a;
  delete[] b;

  auto by_traceback = snapshot.statistics("traceback");
  REQUIRE(by_traceback.size() >= 2);
  CHECK(by_traceback[0].size == 30000);
  CHECK(by_traceback[1].size == 20000);
  CHECK(by_traceback[0].traceback.size() >= 2);

  auto by_line = snapshot.statistics("lineno");
  REQUIRE_FALSE(by_line.empty());
  CHECK(by_line[0].size == 50000);  // both went through the helper's line
  CHECK(by_line[0].count == 2);

  auto by_file = snapshot.statistics("filename");
  REQUIRE_FALSE(by_file.empty());
  CHECK(by_file[0].size >= 50000);
  CHECK(by_file[0].traceback.front().lineno == 0);

  auto cumulative = snapshot.statistics("lineno", true);
  if (test_tracemalloc_common::has_line_info()) {
    CHECK(by_line[0].traceback.front().lineno == test_tracemalloc::kHelperLine);
    CHECK(test_tracemalloc::ends_with(by_file[0].traceback.front().filename, "tracemalloc.cpp"));
    auto size_at = [&](int line) {
      for (const auto& s : cumulative) {
        if (test_tracemalloc::ends_with(s.traceback.front().filename, "tracemalloc.cpp") &&
            s.traceback.front().lineno == line) {
          return s.size;
        }
      }
      return std::size_t{0};
    };
    CHECK(size_at(test_tracemalloc::kHelperLine) == 50000);
    CHECK(size_at(line_a) == 30000);
    CHECK(size_at(line_b) == 20000);
  }
  CHECK_THROWS_AS(snapshot.statistics("traceback", true), memlens::ValueError);
  CHECK_THROWS_WITH(snapshot.statistics("bogus"), memlens_test::contains("'bogus'"));
}

TEST_CASE("tracemalloc: compare_to shows what grew", "[tracemalloc]") {
  Tracing tracing;
  auto first = tracemalloc::take_snapshot();
  const int line = __LINE__ + 1;
  char* grown = new char[70000];
  test_tracemalloc::escape(grown);
  auto second = tracemalloc::take_snapshot();
  delete[] grown;

  auto diffs = second.compare_to(first, "lineno");
  REQUIRE_FALSE(diffs.empty());
  CHECK(diffs[0].size == 70000);
  CHECK(diffs[0].size_diff == 70000);
  CHECK(diffs[0].count == 1);
  CHECK(diffs[0].count_diff == 1);
  if (test_tracemalloc_common::has_line_info()) {
    CHECK(diffs[0].traceback.front().lineno == line);
  }
  auto back = first.compare_to(second, "filename");
  REQUIRE_FALSE(back.empty());
  CHECK(back[0].size_diff <= -70000);
}

TEST_CASE("tracemalloc: filter_traces with fnmatch patterns and lines", "[tracemalloc]") {
  Tracing tracing;
  const int line = __LINE__ + 1;
  char* block = new char[12345];
  test_tracemalloc::escape(block);
  auto snapshot = tracemalloc::take_snapshot();
  delete[] block;
  const auto& all = snapshot.traces();
  REQUIRE_FALSE(all.empty());
  if (!test_tracemalloc_common::has_line_info()) return;

  auto ours = snapshot.filter_traces({tracemalloc::Filter(true, "*/unit/tracemalloc.cpp")});
  CHECK_FALSE(ours.traces().empty());
  for (const auto& t : ours.traces()) {
    CHECK(test_tracemalloc::ends_with(t.traceback.front().filename, "unit/tracemalloc.cpp"));
  }
  auto at_line = snapshot.filter_traces({tracemalloc::Filter(true, "*tracemalloc.c?p", line)});
  REQUIRE(at_line.traces().size() == 1);
  CHECK(at_line.traces()[0].size == 12345);
  auto without = snapshot.filter_traces({tracemalloc::Filter(false, "*tracemalloc.cpp")});
  CHECK(without.traces().size() == all.size() - ours.traces().size());
  auto none = snapshot.filter_traces(
      {tracemalloc::Filter(true, "*tracemalloc.cpp", line), tracemalloc::Filter(false, "*", line)});
  CHECK(none.traces().empty());
  auto all_frames = snapshot.filter_traces({tracemalloc::Filter(true, "*nothing*", {}, true)});
  CHECK(all_frames.traces().empty());
}

TEST_CASE("tracemalloc: dump and load round trip", "[tracemalloc]") {
  Tracing tracing(3);
  char* a = test_tracemalloc::allocate_in_helper(4000);
  char* b = new char[3000];
  test_tracemalloc::escape(b);
  auto snapshot = tracemalloc::take_snapshot();
  delete[] a;
  delete[] b;
  const std::string path = test_tracemalloc::temp_path("round_trip.snap");
  snapshot.dump(path);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(getpid())));
  auto loaded = tracemalloc::Snapshot::load(path);
  std::filesystem::remove(path);

  CHECK(loaded.traceback_limit() == 3);
  REQUIRE(loaded.traces().size() == snapshot.traces().size());
  auto before = snapshot.statistics("traceback");
  auto after = loaded.statistics("traceback");
  REQUIRE(before.size() == after.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    CHECK(before[i].traceback == after[i].traceback);
    CHECK(before[i].size == after[i].size);
    CHECK(before[i].count == after[i].count);
  }
  CHECK(loaded.compare_to(snapshot, "lineno").front().size_diff == 0);
}

TEST_CASE("tracemalloc: loading a missing or truncated or corrupt file throws", "[tracemalloc]") {
  using tracemalloc::Snapshot;
  using tracemalloc::SnapshotFileError;
  const std::string missing = test_tracemalloc::temp_path("missing.snap");
  CHECK_THROWS_AS(Snapshot::load(missing), SnapshotFileError);
  CHECK_THROWS_WITH(Snapshot::load(missing), memlens_test::contains(missing));

  std::string good;
  {
    Tracing tracing(2);
    char* block = new char[100];
    test_tracemalloc::escape(block);
    const std::string path = test_tracemalloc::temp_path("good.snap");
    tracemalloc::take_snapshot().dump(path);
    delete[] block;
    good = test_tracemalloc::read_file(path);
    std::filesystem::remove(path);
  }
  REQUIRE(good.size() > 40);

  const std::string path = test_tracemalloc::temp_path("bad.snap");
  auto check_rejected = [&](const std::string& bytes, const std::string& why) {
    test_tracemalloc::write_file(path, bytes);
    CHECK_THROWS_AS(Snapshot::load(path), memlens::Error);
    CHECK_THROWS_WITH(Snapshot::load(path),
                      memlens_test::contains(path) && memlens_test::contains(why));
  };
  check_rejected("", "bad magic");
  check_rejected(good.substr(0, good.size() / 2), "truncated");
  check_rejected(good.substr(0, 14), "truncated");
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  check_rejected(bad_magic, "bad magic");
  std::string bad_version = good;
  bad_version[8] = 99;
  check_rejected(bad_version, "unsupported version 99");
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x5a;
  check_rejected(flipped, "corrupt");
  // Bytes after the last trace, under a checksum that covers them: the checksum cannot tell,
  // the layout must.
  std::string trailing = good.substr(0, good.size() - 8) + "extra";
  const std::uint64_t checksum = tracemalloc::detail::fnv1a(trailing.data(), trailing.size());
  trailing.append(reinterpret_cast<const char*>(&checksum), sizeof checksum);
  check_rejected(trailing, "trailing bytes");

  std::mt19937 random(12345);
  for (int round = 0; round < 50; ++round) {
    std::string garbage(static_cast<std::size_t>(random() % 300), '\0');
    for (auto& c : garbage) c = static_cast<char>(random());
    if (round % 2 == 0 && garbage.size() >= 8) garbage.replace(0, 8, good.substr(0, 8));
    test_tracemalloc::write_file(path, garbage);
    CHECK_THROWS_AS(Snapshot::load(path), SnapshotFileError);
  }
  std::filesystem::remove(path);
}

TEST_CASE("tracemalloc: Traceback::format prints like Python", "[tracemalloc]") {
  const std::string file = test_tracemalloc::temp_path("source.cpp");
  test_tracemalloc::write_file(file, "int f() {\n    return g();  \n}\n");
  tracemalloc::Traceback tb(
      {tracemalloc::Frame{file, 2, "inner"}, tracemalloc::Frame{"/nowhere/outer.cpp", 7, "outer"}});
  auto lines = tb.format();
  auto recent = tb.format(1, true);
  auto oldest = tb.format(-1);
  std::filesystem::remove(file);

  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == "  File \"/nowhere/outer.cpp\", line 7, in outer");
  CHECK(lines[1] == "  File \"" + file + "\", line 2, in inner");
  CHECK(lines[2] == "    return g();");  // the source line, stripped, as linecache gives it
  REQUIRE(recent.size() == 2);
  CHECK(recent[0] == lines[1]);
  CHECK(oldest == std::vector<std::string>{lines[0]});
  CHECK(tracemalloc::to_string(tb) == file + ":2");
}

TEST_CASE("tracemalloc: str() of Statistic and StatisticDiff as Python", "[tracemalloc]") {
  tracemalloc::Traceback tb({tracemalloc::Frame{"a.cpp", 3, "f"}});
  CHECK(tracemalloc::to_string(tracemalloc::Statistic{tb, 1572864, 3}) ==
        "a.cpp:3: size=1536 KiB, count=3, average=512 KiB");
  CHECK(tracemalloc::to_string(tracemalloc::StatisticDiff{tb, 2048, 1024, 2, 1}) ==
        "a.cpp:3: size=2048 B (+1024 B), count=2 (+1), average=1024 B");
  CHECK(tracemalloc::to_string(tracemalloc::StatisticDiff{tb, 0, -20480, 0, -2}) ==
        "a.cpp:3: size=0 B (-20.0 KiB), count=0 (-2)");
  CHECK(tracemalloc::to_string(tracemalloc::Trace{0, 50, tb}) == "a.cpp:3: 50 B");
  CHECK(fmt::format("{}", tracemalloc::Statistic{tb, 1572864, 3}) ==
        "a.cpp:3: size=1536 KiB, count=3, average=512 KiB");
  CHECK(fmt::format("{} | {}", tb, tb.front()) == "a.cpp:3 | a.cpp:3");
}

TEST_CASE("tracemalloc: get_object_traceback", "[tracemalloc]") {
  Tracing tracing(2);
  const int line = __LINE__ + 1;
  int* object = new int(42);
  test_tracemalloc::escape(object);
  auto tb = tracemalloc::get_object_traceback(object);
  int on_stack = 0;
  auto none = tracemalloc::get_object_traceback(&on_stack);
  delete object;
  REQUIRE(tb.has_value());
  REQUIRE_FALSE(tb->empty());
  CHECK(tb->size() <= 2);
  if (test_tracemalloc_common::has_line_info()) CHECK(tb->front().lineno == line);
  CHECK_FALSE(none.has_value());
}

namespace test_tracemalloc {
struct Pooled : memlens::Object {  // small: made from the object pool where it is enabled
  memlens::Ref<Pooled> next;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};
struct Large : memlens::Object {  // beyond the pool's largest block: from operator new
  char payload[4096] = {};
};
}  // namespace test_tracemalloc

TEST_CASE("tracemalloc: memlens objects are traced one by one pooled or not", "[tracemalloc]") {
  using test_tracemalloc::Large;
  using test_tracemalloc::Pooled;
  memlens::gc::disable();  // no collection may free or allocate between the two readings
  Tracing tracing(2);
  const std::size_t before = tracemalloc::get_traced_memory().current;
  const int line = __LINE__ + 1;
  auto pooled = memlens::make<Pooled>();
  const int large_line = __LINE__ + 1;
  auto large = memlens::make<Large>();
  const std::size_t with_both = tracemalloc::get_traced_memory().current;
  CHECK(with_both - before >= sizeof(Pooled) + sizeof(Large));

  {
    auto tb = tracemalloc::get_object_traceback(pooled);
    auto large_tb = tracemalloc::get_object_traceback(large);
    REQUIRE(tb.has_value());
    REQUIRE(large_tb.has_value());
    if (test_tracemalloc_common::has_line_info()) {
      CHECK(test_tracemalloc::names_this_file(tb->front()));
      CHECK(tb->front().lineno == line);
      CHECK(large_tb->front().lineno == large_line);
    }
    CHECK_FALSE(tracemalloc::get_object_traceback(memlens::Ref<Pooled>()).has_value());
  }  // the tracebacks' strings were allocated while tracing: gone before the last reading

  pooled.reset();  // freeing forgets the trace
  large.reset();
  CHECK(tracemalloc::get_traced_memory().current == before);
  memlens::gc::enable();
}

TEST_CASE("tracemalloc: the trace table agrees with a reference under random track/untrack",
          "[tracemalloc]") {
  // Fake addresses: clustered (neighbouring blocks), spread (far apart, same low bits) and
  // random (odd, so never a real block), so probing, growth and backward-shift deletion all get
  // exercised, in a custom domain (wide entries) and in domain 0 (compact ones), with some
  // sizes of 4 GiB and more (wide entries in domain 0).
  const unsigned domain = GENERATE(42u, 0u);
  std::mt19937_64 random(2024);
  std::vector<std::pair<std::uintptr_t, std::size_t>> live;
  live.reserve(40000);
  std::size_t expected = 0;
  Tracing tracing;
  auto base = tracemalloc::get_traced_memory().current;
  for (int step = 0; step < 30000; ++step) {
    bool add = live.empty() || random() % 3 != 0;
    if (add) {
      std::uintptr_t address = 0;
      switch (random() % 3) {
        case 0:
          address = 0x10000 + 16 * (random() % 50000);
          break;
        case 1:
          address = (random() % 64 + 1) << 32;
          break;
        default:
          address = (random() | 1) & 0x7fffffffffffULL;
          break;
      }
      auto found =
          std::find_if(live.begin(), live.end(), [&](const auto& e) { return e.first == address; });
      if (found != live.end()) continue;
      std::size_t size = random() % 1000 + 1;
      if (random() % 100 == 0) size += std::size_t{1} << 32;
      tracemalloc::track(reinterpret_cast<void*>(address), size, domain);
      live.emplace_back(address, size);
      expected += size;
    } else {
      std::size_t k = random() % live.size();
      tracemalloc::untrack(reinterpret_cast<void*>(live[k].first), domain);
      expected -= live[k].second;
      live[k] = live.back();
      live.pop_back();
    }
    if (step % 5000 == 0) REQUIRE(tracemalloc::get_traced_memory().current == base + expected);
  }
  CHECK(tracemalloc::get_traced_memory().current == base + expected);
  std::size_t found = 0;
  for (const auto& entry : live) {
    found +=
        tracemalloc::get_object_traceback(reinterpret_cast<void*>(entry.first), domain).has_value();
    tracemalloc::untrack(reinterpret_cast<void*>(entry.first), domain);
  }
  CHECK(found == live.size());
  CHECK(tracemalloc::get_traced_memory().current == base);
}

TEST_CASE("tracemalloc: a block traced again replaces its trace whatever its size",
          "[tracemalloc]") {
  // A free the tracer did not see (a custom allocator that forgot untrack): the new trace
  // replaces the old one, also when one is 4 GiB or more and the other is not.
  Tracing tracing;
  const auto base = tracemalloc::get_traced_memory().current;
  void* fake = reinterpret_cast<void*>(std::uintptr_t{0x12340});
  const std::size_t huge = (std::size_t{1} << 32) + 7;
  REQUIRE(tracemalloc::track(fake, huge));
  CHECK(tracemalloc::get_traced_memory().current == base + huge);
  REQUIRE(tracemalloc::track(fake, 10));
  CHECK(tracemalloc::get_traced_memory().current == base + 10);
  REQUIRE(tracemalloc::track(fake, huge));
  CHECK(tracemalloc::get_traced_memory().current == base + huge);
  CHECK(tracemalloc::get_object_traceback(fake).has_value());
  REQUIRE(tracemalloc::untrack(fake));
  CHECK(tracemalloc::get_traced_memory().current == base);
  CHECK_FALSE(tracemalloc::get_object_traceback(fake).has_value());
}

TEST_CASE("tracemalloc: a forked child can allocate while tracing", "[tracemalloc]") {
  Tracing tracing;
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    char* block = new char[777];
    test_tracemalloc::escape(block);
    bool ok = tracemalloc::get_traced_memory().current >= 777;
    delete[] block;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

// A function at global scope whose name starts like realloc's: the user's, not the allocator's.
[[gnu::noinline]] char* reallocate_buffer_for_tracemalloc_test(std::size_t size) {
  char* p = new char[size];  // the line: see kReallocateLine
  test_tracemalloc_common::escape(p);
  return p;
}
constexpr int kReallocateLine = __LINE__ - 4;

TEST_CASE("tracemalloc: a user's function named like an allocator is the user's frame",
          "[tracemalloc]") {
  if (!test_tracemalloc_common::has_line_info()) {
    WARN("no line information in this build: not checked");
    return;
  }
  Tracing tracing(1);
  char* block = reallocate_buffer_for_tracemalloc_test(4567);
  auto tb = tracemalloc::get_object_traceback(block);
  delete[] block;
  REQUIRE(tb);
  REQUIRE_FALSE(tb->empty());
  CHECK_THAT(tb->front().function,
             Catch::Matchers::StartsWith("reallocate_buffer_for_tracemalloc_test"));
  CHECK(tb->front().lineno == kReallocateLine);
}

namespace test_tracemalloc {
/// One line, two template instantiations: two functions, one (filename, lineno).
template <class T>
[[gnu::noinline]] T* make_array_of(std::size_t n) {
  T* p = new T[n];  // the line: see kMakeArrayLine
  escape(p);
  return p;
}
constexpr int kMakeArrayLine = __LINE__ - 4;

/// The statistics of `snapshot` whose most recent frame is this file at `line`.
template <class Stat>
std::vector<Stat> at_line(const std::vector<Stat>& stats, int line) {
  std::vector<Stat> found;
  for (const Stat& s : stats) {
    if (!s.traceback.empty() && ends_with(s.traceback.front().filename, "unit/tracemalloc.cpp") &&
        s.traceback.front().lineno == line) {
      found.push_back(s);
    }
  }
  return found;
}
}  // namespace test_tracemalloc

TEST_CASE("tracemalloc: statistics group by file and line as Python's do and not by function",
          "[tracemalloc]") {
  using test_tracemalloc::at_line;
  using test_tracemalloc::kMakeArrayLine;
  using test_tracemalloc::make_array_of;
  if (!test_tracemalloc_common::has_line_info()) {
    WARN("no line information in this build: not checked");
    return;
  }
  Tracing tracing(1);
  int* ints = make_array_of<int>(1000);
  auto before = tracemalloc::take_snapshot();
  double* doubles = make_array_of<double>(500);
  auto after = tracemalloc::take_snapshot();
  delete[] ints;
  delete[] doubles;

  for (const char* key : {"lineno", "traceback"}) {
    INFO(key);
    auto stats = at_line(after.statistics(key), kMakeArrayLine);
    REQUIRE(stats.size() == 1);
    CHECK(stats[0].size == 1000 * sizeof(int) + 500 * sizeof(double));
    CHECK(stats[0].count == 2);
    CHECK_FALSE(stats[0].traceback.front().function.empty());  // names kept for display
    auto diffs = at_line(after.compare_to(before, key), kMakeArrayLine);
    REQUIRE(diffs.size() == 1);
    CHECK(diffs[0].size_diff == static_cast<std::ptrdiff_t>(500 * sizeof(double)));
    CHECK(diffs[0].count_diff == 1);
  }
  auto cumulative = at_line(after.statistics("lineno", true), kMakeArrayLine);
  REQUIRE(cumulative.size() == 1);
  CHECK(cumulative[0].count == 2);
}

TEST_CASE("tracemalloc: ties in statistics come in Python's order", "[tracemalloc]") {
  using test_tracemalloc::at_line;
  if (!test_tracemalloc_common::has_line_info()) {
    WARN("no line information in this build: not checked");
    return;
  }
  Tracing tracing(1);
  // Equal size and count: Python sorts (size, count, traceback) largest first, so the later
  // line comes first.
  const int first = __LINE__ + 1;
  char* a = new char[7777];
  char* b = new char[7777];
  char* c = new char[7777];
  test_tracemalloc::escape(a);
  test_tracemalloc::escape(b);
  test_tracemalloc::escape(c);
  auto snapshot = tracemalloc::take_snapshot();
  delete[] a;
  delete[] b;
  delete[] c;
  std::vector<int> lines;
  for (const auto& s : snapshot.statistics("lineno")) {
    if (s.size == 7777 &&
        test_tracemalloc::ends_with(s.traceback.front().filename, "unit/tracemalloc.cpp")) {
      lines.push_back(s.traceback.front().lineno);
    }
  }
  CHECK(lines == std::vector<int>{first + 2, first + 1, first});
}

TEST_CASE("tracemalloc: symbolization works when the program ignores SIGCHLD", "[tracemalloc]") {
  if (!test_tracemalloc_common::has_line_info()) {
    WARN("no line information in this build: not checked");
    return;
  }
  Tracing tracing(1);
  // In a child, so that the parent's disposition and symbol cache stay as they are. Ignored,
  // SIGCHLD makes the kernel reap addr2line itself, and pclose finds no exit status.
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGCHLD, SIG_IGN);
    const int line = __LINE__ + 1;
    char* block = new char[3456];
    test_tracemalloc::escape(block);
    auto tb = tracemalloc::get_object_traceback(block);
    const bool named = tb && !tb->empty() && tb->front().lineno == line &&
                       test_tracemalloc::ends_with(tb->front().filename, "unit/tracemalloc.cpp");
    _exit(named ? 0 : 3);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("tracemalloc: threads dumping to one path each write a whole file",
          "[tracemalloc][threads]") {
  Tracing tracing(1);
  char* block = new char[2345];
  test_tracemalloc::escape(block);
  const auto snapshot = tracemalloc::take_snapshot();
  delete[] block;
  const std::string path = test_tracemalloc::temp_path("shared.snap");
  std::atomic<int> failures{0};
  auto dump_many = [&] {
    for (int i = 0; i < 50; ++i) {
      try {
        snapshot.dump(path);
      } catch (const memlens::tracemalloc::SnapshotFileError&) {
        ++failures;
      }
    }
  };
  std::thread t1(dump_many);
  std::thread t2(dump_many);
  t1.join();
  t2.join();
  CHECK(failures == 0);
  auto loaded = tracemalloc::Snapshot::load(path);
  CHECK(loaded.traces().size() == snapshot.traces().size());
  std::remove(path.c_str());
}

TEST_CASE("tracemalloc: is_hooked in a program that includes track_new.hpp", "[tracemalloc]") {
  // In a child, so that its output is seen: start() must not say that new goes untraced.
  // (tracemalloc.without_track_new checks a program without the hook.)
  const auto outcome = test_child::run_in_child([] {
    tracemalloc::stop();
    std::printf("before start: %d\n", tracemalloc::is_hooked() ? 1 : 0);
    tracemalloc::start();
    std::printf("while tracing: %d\n", tracemalloc::is_hooked() ? 1 : 0);
    tracemalloc::stop();
  });
  INFO(outcome.output);
  CHECK(outcome.exited_with(0));
  CHECK(outcome.output == "before start: 1\nwhile tracing: 1\n");
}

TEST_CASE("tracemalloc: frames without file and line are one row of statistics",
          "[tracemalloc]") {
  // What code built without -g gives: every frame <unknown>:0, functions named from the symbol
  // table. Python's frames are (filename, lineno), so these make one row, not three that read
  // alike; a frame with a file stays a row of its own.
  namespace td = tracemalloc::detail;
  td::SnapshotWriter w;
  w.put_raw(td::snapshot_magic, sizeof td::snapshot_magic);
  w.put(td::snapshot_version);
  w.put(std::uint32_t{1});  // traceback limit
  w.put(std::uint64_t{0});  // sample_bytes: every allocation traced
  const std::vector<tracemalloc::Frame> frames = {{"<unknown>", 0, "build_cache()"},
                                                  {"<unknown>", 0, "load_index()"},
                                                  {"<unknown>", 0, "parse(char const*)"},
                                                  {"main.cpp", 12, "main"}};
  w.put(static_cast<std::uint64_t>(frames.size()));
  for (const auto& f : frames) {
    w.put(std::uint32_t{1});  // one frame
    w.put(std::uint32_t{1});  // total_nframe
    w.put_string(f.filename);
    w.put(static_cast<std::int32_t>(f.lineno));
    w.put_string(f.function);
  }
  w.put(static_cast<std::uint64_t>(frames.size()));
  for (std::uint32_t i = 0; i < frames.size(); ++i) {
    w.put(std::uint32_t{0});                  // domain
    w.put(i);                                 // traceback
    w.put(std::uint64_t{100} * (i + 1));      // size: 100, 200, 300, 400
  }
  w.put(td::fnv1a(w.bytes().data(), w.bytes().size()));
  const std::string path = test_tracemalloc::temp_path("unknown.snap");
  test_tracemalloc::write_file(path, w.bytes());
  const auto snapshot = tracemalloc::Snapshot::load(path);
  std::filesystem::remove(path);

  for (bool cumulative : {false, true}) {
    INFO("cumulative " << cumulative);
    const auto stats = snapshot.statistics("lineno", cumulative);
    REQUIRE(stats.size() == 2);
    CHECK(stats[0].size == 600);  // 100 + 200 + 300
    CHECK(stats[0].count == 3);
    CHECK(tracemalloc::to_string(stats[0]) == "<unknown>:0: size=600 B, count=3, average=200 B");
    CHECK(stats[0].traceback.front().function.empty());  // it gathers three functions
    CHECK(stats[1].size == 400);
    CHECK(stats[1].traceback.front().function == "main");
  }
  CHECK(snapshot.statistics("traceback").size() == 2);
  CHECK(snapshot.statistics("filename").size() == 2);
  CHECK(snapshot.compare_to(tracemalloc::Snapshot(), "lineno").size() == 2);
}
