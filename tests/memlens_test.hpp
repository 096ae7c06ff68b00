/// Catch2 for every test file: v3 when installed, else v2 (Debian 12 ships 2.13).
/// Also the precompiled header of memlens_tests, so what it includes is paid for once.
#pragma once

#include <string>

#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_exception.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#define MEMLENS_TEST_CATCH2_V3 1
#else
#include <catch2/catch.hpp>
#endif

namespace memlens_test {

/// Matches a string holding `part`, e.g. `REQUIRE_THROWS_WITH(f(), contains("gc: "))`;
/// Catch2 v3 renamed v2's `Contains` to `ContainsSubstring`.
inline auto contains(const std::string& part) {
#ifdef MEMLENS_TEST_CATCH2_V3
  return Catch::Matchers::ContainsSubstring(part);
#else
  return Catch::Matchers::Contains(part);
#endif
}

}  // namespace memlens_test

#undef MEMLENS_TEST_CATCH2_V3
