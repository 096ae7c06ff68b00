// Helpers the tracemalloc test files share.
#pragma once

#include <memlens/tracemalloc.hpp>
#include <string>

#include "memlens_test.hpp"

namespace test_tracemalloc_common {

/// Stops tracing when a test ends, pass or fail, so other tests run with the hook idle.
struct Tracing {
  explicit Tracing(int nframe = 1, memlens::tracemalloc::TraceOptions options = {}) {
    memlens::tracemalloc::stop();
    memlens::tracemalloc::start(nframe, options);
  }
  ~Tracing() {
    memlens::tracemalloc::stop();
    memlens::tracemalloc::set_skip_std_frames(true);
  }
  Tracing(const Tracing&) = delete;
  Tracing& operator=(const Tracing&) = delete;
};

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Keeps the optimizer from eliding a new/delete pair nobody observes (C++ allows it, even for
/// a replaced operator new) or turning a call into a tail call that leaves no frame behind.
inline void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

/**
 * Whether this program's frames carry file and line (a -g build, addr2line installed), judged
 * once, on a block allocated right here with no library code in between, never on the frame
 * under test: a frame wrongly blamed on code without debug info (Catch2's runner, libc) must
 * fail its test, not be excused. Starts tracing for the probe when it is off; when it is on, the
 * probe's block is freed before this returns.
 */
inline bool symbolizer_gives_lines() {
  static const bool known = [] {
    namespace tracemalloc = memlens::tracemalloc;
    const bool was_tracing = tracemalloc::is_tracing();
    if (!was_tracing) tracemalloc::start(1);
    char* block = new char[1234];
    escape(block);
    const bool lines = [&] {
      const auto tb = tracemalloc::get_object_traceback(block);
      return tb && !tb->empty() && tb->front().filename != "<unknown>";
    }();
    delete[] block;
    if (!was_tracing) tracemalloc::stop();
    return lines;
  }();
  return known;
}

/**
 * Whether the file:line checks apply. memlens_tests is built with -g and says so
 * (MEMLENS_TESTS_DEBUG_INFO): there a symbolizer that gives no file and line (addr2line missing
 * or broken) fails every test that asks, rather than turning its checks into warnings. Only a
 * build without debug info skips them.
 */
inline bool has_line_info() {
#ifdef MEMLENS_TESTS_DEBUG_INFO
  // No INFO or REQUIRE on the way that passes: Catch2 would allocate inside a traced test.
  if (!symbolizer_gives_lines()) {
    FAIL("built with -g, so tracebacks must carry file and line: is addr2line (binutils) there?");
  }
  return true;
#else
  return symbolizer_gives_lines();
#endif
}

}  // namespace test_tracemalloc_common
