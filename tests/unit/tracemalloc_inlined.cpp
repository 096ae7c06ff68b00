// memlens::tracemalloc in optimized builds: when the standard library's code that allocates
// (std::vector::resize and push_back, std::map::emplace, std::string::append) is inlined into the
// user's function, "lineno" still names the user's line, not the line that called that function.
// Each return address is expanded into its chain of inlined frames (addr2line -i), and the standard
// library's frames are skipped among those. The checks hold at -O0 too, where nothing is inlined;
// they matter at -O2 (RelWithDebInfo). The helpers are plain functions, free to be inlined.
// The global operator new is traced through memlens/track_new.hpp (tracemalloc_hook.cpp).
#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memlens/detail/trace_symbols.hpp>
#include <memlens/tracemalloc.hpp>
#include <memory>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

namespace test_tracemalloc_inlined {

using test_tracemalloc_common::ends_with;
using test_tracemalloc_common::escape;
using test_tracemalloc_common::has_line_info;
using test_tracemalloc_common::Tracing;

/// Checks that `frame` is this file at `line`, and says whether it is. Without line
/// information there is nothing to compare: that is reported, not failed, as in the other
/// tracemalloc tests.
bool check_names_line(const tracemalloc::Frame& frame, int line) {
  if (!has_line_info()) {
    WARN("no line information for " << frame.function << ": file:line not checked");
    return false;
  }
  CHECK(ends_with(frame.filename, "unit/tracemalloc_inlined.cpp"));
  CHECK(frame.lineno == line);
  return ends_with(frame.filename, "unit/tracemalloc_inlined.cpp") && frame.lineno == line;
}

/// The largest entry of statistics("lineno"): the test's own allocation, far above the rest.
tracemalloc::Statistic largest_by_line() {
  auto stats = tracemalloc::take_snapshot().statistics("lineno");
  REQUIRE_FALSE(stats.empty());
  return stats.front();
}

constexpr std::size_t kInts = 100000;
constexpr long kLongs = 20000;
constexpr long kBoxes = 10000;
constexpr int kNodes = 5000;
constexpr std::size_t kChars = 300000;

std::vector<int> resize_vector(int& line) {
  std::vector<int> v;
  line = __LINE__ + 1;
  v.resize(kInts);
  escape(v.data());
  return v;
}

std::vector<long> push_back_vector(int& line) {
  std::vector<long> v;
  line = __LINE__ + 1;
  for (long i = 0; i < kLongs; ++i) v.push_back(i);
  escape(v.data());
  return v;
}

std::vector<std::unique_ptr<long>> box_longs(int& line) {
  std::vector<std::unique_ptr<long>> v;
  line = __LINE__ + 1;
  for (long i = 0; i < kBoxes; ++i) v.push_back(std::make_unique<long>(i));
  escape(v.data());
  return v;
}

std::map<int, int> fill_map(int& line) {
  std::map<int, int> m;
  for (int i = 0; i < kNodes; ++i) {
    line = __LINE__ + 1;
    m.emplace(i, 2 * i);
  }
  escape(&m);
  return m;
}

std::string append_string(int& line) {
  std::string s = "start";
  line = __LINE__ + 1;
  s.append(kChars, 'x');
  escape(s.data());
  return s;
}

/// The line that called resize_vector, for a traceback of two frames.
std::vector<int> call_resize_vector(int& line, int& call_line) {
  call_line = __LINE__ + 1;
  std::vector<int> v = resize_vector(line);
  escape(v.data());
  return v;
}

/// An executable shell script in the temporary directory, removed when the test ends.
struct Script {
  std::string path;
  Script(const std::string& name, const std::string& body)
      : path((std::filesystem::temp_directory_path() /
              ("memlens_tmi_" + std::to_string(getpid()) + "_" + name))
                 .string()) {
    std::ofstream(path) << "#!/bin/sh\n" << body;
    chmod(path.c_str(), 0755);
  }
  ~Script() { std::remove(path.c_str()); }
  Script(const Script&) = delete;
  Script& operator=(const Script&) = delete;
};

/// Exit codes of a child that symbolizes with another addr2line.
enum ChildResult : int { kPass = 0, kUntraced = 2, kNoFrame = 3, kNoFunction = 4, kWrongLine = 5 };

/**
 * Forks a child that symbolizes a fresh allocation with MEMLENS_ADDR2LINE=`tool` (the symbol
 * cache is per process, so the parent's cache is untouched). With `expect_lines` the frame must
 * name this file and the allocating line; otherwise it must be "<unknown>" with some function.
 */
int symbolize_in_child(const std::string& tool, bool expect_lines) {
  pid_t child = fork();
  if (child != 0) {
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
  }
  setenv("MEMLENS_ADDR2LINE", tool.c_str(), 1);
  const int line = __LINE__ + 1;
  char* block = new char[4321];
  escape(block);
  auto tb = tracemalloc::get_object_traceback(block);
  int result = kPass;
  if (!tb) {
    result = kUntraced;
  } else if (tb->empty()) {
    result = kNoFrame;
  } else if (tb->front().function.empty()) {
    result = kNoFunction;
  } else if (expect_lines ? !ends_with(tb->front().filename, "unit/tracemalloc_inlined.cpp") ||
                                tb->front().lineno != line
                          : tb->front().filename != "<unknown>") {
    result = kWrongLine;
  }
  _exit(result);
}

}  // namespace test_tracemalloc_inlined

namespace tmi = test_tracemalloc_inlined;

TEST_CASE("tracemalloc: an inlined std::vector::resize is blamed on its line", "[tracemalloc]") {
  tmi::Tracing tracing;
  int line = 0;
  std::vector<int> v = tmi::resize_vector(line);
  auto top = tmi::largest_by_line();
  CHECK(top.size == tmi::kInts * sizeof(int));
  CHECK(top.count == 1);
  REQUIRE(top.traceback.size() == 1);
  tmi::check_names_line(top.traceback.front(), line);
}

TEST_CASE("tracemalloc: an inlined std::vector::push_back is blamed on its line", "[tracemalloc]") {
  // push_back and emplace_back are both inlined into the user's frame, which then calls the
  // reallocation: two inlined frames above the user's line (GNU addr2line loses them in clang's
  // DWARF 5, llvm-addr2line does not).
  tmi::Tracing tracing;
  int line = 0;
  std::vector<long> v = tmi::push_back_vector(line);
  auto top = tmi::largest_by_line();
  CHECK(top.size == v.capacity() * sizeof(long));
  CHECK(top.count == 1);
  REQUIRE(top.traceback.size() == 1);
  tmi::check_names_line(top.traceback.front(), line);
}

TEST_CASE("tracemalloc: boxes and the vector holding them are blamed on the same line",
          "[tracemalloc]") {
  // Interleaved inlined code (make_unique, push_back) gives the inlined frames address ranges in
  // pieces: what GNU addr2line does not read in clang's DWARF 5.
  tmi::Tracing tracing;
  int line = 0;
  std::vector<std::unique_ptr<long>> v = tmi::box_longs(line);
  auto top = tmi::largest_by_line();
  CHECK(top.size == v.capacity() * sizeof(void*) + tmi::kBoxes * sizeof(long));
  CHECK(top.count == static_cast<std::size_t>(tmi::kBoxes) + 1);
  REQUIRE(top.traceback.size() == 1);
  tmi::check_names_line(top.traceback.front(), line);
}

TEST_CASE("tracemalloc: an inlined std::map::emplace is blamed on its line", "[tracemalloc]") {
  tmi::Tracing tracing;
  int line = 0;
  std::map<int, int> m = tmi::fill_map(line);
  auto top = tmi::largest_by_line();
  CHECK(top.count == static_cast<std::size_t>(tmi::kNodes));
  CHECK(top.size >= tmi::kNodes * (2 * sizeof(int)));
  REQUIRE(top.traceback.size() == 1);
  tmi::check_names_line(top.traceback.front(), line);
}

TEST_CASE("tracemalloc: an inlined std::string::append is blamed on its line", "[tracemalloc]") {
  tmi::Tracing tracing;
  int line = 0;
  std::string s = tmi::append_string(line);
  auto top = tmi::largest_by_line();
  CHECK(top.size > tmi::kChars);
  CHECK(top.count == 1);
  REQUIRE(top.traceback.size() == 1);
  tmi::check_names_line(top.traceback.front(), line);
}

TEST_CASE("tracemalloc: nframe counts source-level frames with inlined functions included",
          "[tracemalloc]") {
  // resize_vector may be inlined into call_resize_vector, or not: either way the two innermost
  // frames the user can see are its line and the line that called it.
  tmi::Tracing tracing(2);
  int line = 0;
  int call_line = 0;
  std::vector<int> v = tmi::call_resize_vector(line, call_line);
  auto tb = tracemalloc::get_object_traceback(v.data());
  REQUIRE(tb);
  REQUIRE(tb->size() == 2);
  if (tmi::check_names_line((*tb)[0], line)) tmi::check_names_line((*tb)[1], call_line);

  // Without the skipping, the standard library's frames come first, the user's line after them.
  tracemalloc::set_skip_std_frames(false);
  auto kept = tracemalloc::get_object_traceback(v.data());
  REQUIRE(kept);
  REQUIRE(kept->size() == 2);
  if (tmi::has_line_info()) {
    CHECK(kept->front().filename.find("c++") != std::string::npos);
  }
}

TEST_CASE("tracemalloc: addr2line -a -i output is split into inline chains", "[tracemalloc]") {
  namespace t = memlens::detail::trace;
  std::vector<t::InlineChain> chains;
  // GNU addr2line pads the echoed addresses; the first one has an inlined frame.
  std::vector<std::string> gnu = {"0x0000000000004262",
                                  "std::vector<int, std::allocator<int> >::resize(unsigned long)",
                                  "/usr/include/c++/12/bits/stl_vector.h:1011",
                                  "make()",
                                  "/src/repro.cpp:9 (discriminator 2)",
                                  "0x0000000000004300",
                                  "??",
                                  "??:0"};
  REQUIRE(t::parse_addr2line_inlines(gnu, {0x4262, 0x4300}, chains));
  REQUIRE(chains.size() == 2);
  REQUIRE(chains[0].size() == 2);
  CHECK(chains[0][0].filename == "/usr/include/c++/12/bits/stl_vector.h");
  CHECK(chains[0][0].lineno == 1011);
  CHECK(chains[0][1].function == "make()");
  CHECK(chains[0][1].filename == "/src/repro.cpp");
  CHECK(chains[0][1].lineno == 9);
  REQUIRE(chains[1].size() == 1);
  CHECK(chains[1][0].filename == "<unknown>");
  CHECK(chains[1][0].function.empty());

  // llvm-addr2line does not pad; the same address twice is two groups.
  std::vector<std::string> llvm = {"0x10", "f()", "/src/a.cpp:3", "0x10", "f()", "/src/a.cpp:3"};
  REQUIRE(t::parse_addr2line_inlines(llvm, {0x10, 0x10}, chains));
  REQUIRE(chains.size() == 2);
  CHECK(chains[1].size() == 1);

  // Anything else is refused: a missing address, a function without its location, extra lines.
  CHECK_FALSE(t::parse_addr2line_inlines({"0x10", "f()", "/src/a.cpp:3"}, {0x10, 0x20}, chains));
  CHECK_FALSE(t::parse_addr2line_inlines({"0x10", "f()"}, {0x10}, chains));
  CHECK_FALSE(t::parse_addr2line_inlines({"0x10"}, {0x10}, chains));
  CHECK_FALSE(t::parse_addr2line_inlines({"f()", "/src/a.cpp:3"}, {0x10}, chains));
  CHECK_FALSE(t::parse_addr2line_inlines({"0x11", "f()", "/src/a.cpp:3"}, {0x10}, chains));
}

TEST_CASE("tracemalloc: a frame is the standard library's by its file and its function",
          "[tracemalloc]") {
  using memlens::detail::trace::is_std_frame;
  using memlens::detail::trace::SymbolInfo;
  const std::string header = "/usr/include/c++/12/bits/vector.tcc";
  CHECK(is_std_frame(SymbolInfo{header, 123, "std::vector<int, std::allocator<int> >::reserve"
                                             "(unsigned long)"}));
  CHECK(is_std_frame(SymbolInfo{header, 123,
                                "void std::vector<int, std::allocator<int> >::_M_realloc_insert"
                                "<int const&>(__gnu_cxx::__normal_iterator<int*>, int const&)"}));
  CHECK(is_std_frame(SymbolInfo{header, 123, ""}));  // function unknown: by its file
  // std code inlined into a user's function, without the inline record: the user's frame.
  CHECK_FALSE(is_std_frame(SymbolInfo{header, 123, "write_section(std::vector<int>&, int)"}));
  CHECK_FALSE(is_std_frame(SymbolInfo{"/src/app.cpp", 7, "std_like(int)"}));
  CHECK(is_std_frame(SymbolInfo{"<unknown>", 0, "std::__throw_bad_alloc()"}));
  CHECK_FALSE(is_std_frame(SymbolInfo{"<unknown>", 0, "main"}));
}

TEST_CASE("tracemalloc: without a usable addr2line frames fall back as before", "[tracemalloc]") {
  tmi::Tracing tracing;
  // Missing: no file and line, but a function (dladdr's name, or the address).
  CHECK(tmi::symbolize_in_child("/nonexistent/memlens-addr2line", false) == tmi::kPass);
  // Knows nothing: "??" for every address, as addr2line prints for code without debug info.
  tmi::Script unknown("unknown.sh",
                      "for a in \"$@\"; do case $a in 0x*) echo $a; echo '?\?'; echo '??:0';; "
                      "esac; done\n");
  CHECK(tmi::symbolize_in_child(unknown.path, false) == tmi::kPass);
  // Rejects -a and -i (an old or foreign addr2line): asked again without them, one frame per
  // address, file and line included.
  tmi::Script old("old.sh",
                  "for a in \"$@\"; do case $a in -a|-i) exit 1;; esac; done\n"
                  "exec addr2line \"$@\"\n");
  if (tmi::has_line_info()) {
    CHECK(tmi::symbolize_in_child(old.path, true) == tmi::kPass);
  } else {
    WARN("no line information: the fallback without -a -i is not checked");
  }
}

namespace test_tracemalloc_inlined {

/// A function of this file, kept out of line so that its address is its own.
[[gnu::noinline]] int symbolized_here(int x) {
  escape(&x);
  return x + 1;
}

}  // namespace test_tracemalloc_inlined

TEST_CASE("tracemalloc: addresses in two modules symbolized together each get their own answer",
          "[tracemalloc]") {
  // The runs of addr2line for different modules overlap: each module's answers must still go to
  // that module's addresses. In a child, whose symbol cache is fresh.
  namespace trace = memlens::detail::trace;
  // qsort: libc's, or a sanitizer runtime's interceptor; in another module either way.
  void* in_libc = dlsym(RTLD_DEFAULT, "qsort");
  REQUIRE(in_libc != nullptr);
  Dl_info where{};
  Dl_info here{};
  REQUIRE(dladdr(in_libc, &where) != 0);
  REQUIRE(dladdr(reinterpret_cast<void*>(&tmi::symbolized_here), &here) != 0);
  REQUIRE(where.dli_fbase != here.dli_fbase);
  const bool lines = tmi::has_line_info();
  const auto outcome = test_child::spawn([&] {
    // Return addresses: symbolize looks at the call instruction, one byte before.
    const auto mine_pc = reinterpret_cast<std::uintptr_t>(&tmi::symbolized_here) + 1;
    const auto libc_pc = reinterpret_cast<std::uintptr_t>(in_libc) + 1;
    // What addr2line says of each address alone, in its own module.
    const auto alone = [](std::uintptr_t pc) {
      for (const trace::Module& m : trace::loaded_modules()) {
        for (const auto& [start, end] : m.segments) {
          if (pc - 1 < start || pc - 1 >= end) continue;
          std::vector<trace::InlineChain> out;
          if (!m.path.empty() && trace::run_addr2line(m.path, {pc - 1 - m.bias}, out)) {
            return out.front().back();
          }
        }
      }
      return trace::SymbolInfo{};
    };
    const trace::SymbolInfo mine_alone = alone(mine_pc);
    const trace::SymbolInfo libc_alone = alone(libc_pc);
    const auto chains = trace::symbolize({mine_pc, libc_pc});
    const trace::SymbolInfo& mine = chains[0].back();
    const trace::SymbolInfo& libc = chains[1].back();
    int result = 0;
    if (mine.function.find("symbolized_here") == std::string::npos) result |= 1;
    if (lines && !tmi::ends_with(mine.filename, "unit/tracemalloc_inlined.cpp")) result |= 2;
    if (libc.function.find("qsort") == std::string::npos) result |= 4;
    if (mine.filename != mine_alone.filename || mine.lineno != mine_alone.lineno) result |= 8;
    if (libc.filename != libc_alone.filename || libc.lineno != libc_alone.lineno) result |= 16;
    _exit(result);
  }, 120);
  INFO(outcome.output);
  CHECK(outcome.exited_with(0));
}
