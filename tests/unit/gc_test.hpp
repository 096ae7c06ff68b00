// Helpers shared by the collector's tests.
#pragma once

#include <memlens/gc.hpp>
#include <memlens/sys.hpp>

#include <cstddef>
#include <exception>
#include <string>
#include <tuple>
#include <vector>

namespace test_gc_support {

/// Turns automatic collection off and starts from an empty young heap; restores the
/// collector's settings (enabled, thresholds, debug flags) afterwards.
struct GcGuard {
  bool enabled = memlens::gc::isenabled();
  std::tuple<std::size_t, std::size_t, std::size_t> thresholds = memlens::gc::get_threshold();
  int debug = memlens::gc::get_debug();
  GcGuard() {
    memlens::gc::disable();
    memlens::gc::set_debug(0);
    memlens::gc::collect();
  }
  GcGuard(const GcGuard&) = delete;
  GcGuard& operator=(const GcGuard&) = delete;
  ~GcGuard() {
    memlens::gc::set_debug(debug);
    memlens::gc::set_threshold(std::get<0>(thresholds), std::get<1>(thresholds),
                               std::get<2>(thresholds));
    memlens::gc::collect();
    if (enabled) memlens::gc::enable();
  }
};

/// Collects the messages of the exceptions the unraisable hook receives, for its scope.
struct UnraisableRecorder {
  std::vector<std::string> reports;
  UnraisableRecorder() {
    memlens::sys::set_unraisablehook([this](const memlens::sys::UnraisableInfo& info) {
      try {
        std::rethrow_exception(info.exception);
      } catch (const std::exception& e) {
        reports.push_back(e.what());
      }
    });
  }
  UnraisableRecorder(const UnraisableRecorder&) = delete;
  UnraisableRecorder& operator=(const UnraisableRecorder&) = delete;
  ~UnraisableRecorder() { memlens::sys::set_unraisablehook(nullptr); }
};

}  // namespace test_gc_support
