// Helpers the tracemalloc test files share.
#pragma once

#include <memlens/tracemalloc.hpp>
#include <string>

namespace test_tracemalloc_common {

/// Stops tracing when a test ends, pass or fail, so other tests run with the hook idle.
struct Tracing {
  explicit Tracing(int nframe = 1) {
    memlens::tracemalloc::stop();
    memlens::tracemalloc::start(nframe);
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

}  // namespace test_tracemalloc_common
