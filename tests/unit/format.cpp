// Tests of memlens/format.hpp: Python-style reprs through fmt.
#include <memlens/format.hpp>

#include <string>

#include "memlens_test.hpp"

namespace test_format {
struct Widget : memlens::Object {};
}  // namespace test_format

TEST_CASE("Refs format as <Type object at 0x...>", "[format]") {
  auto w = memlens::make<test_format::Widget>();
  const std::string text = fmt::format("{}", w);
  CHECK(text == memlens::repr(w));
  CHECK(text == fmt::format("<test_format::Widget object at {}>", fmt::ptr(w.object())));
  CHECK(fmt::format("{}", memlens::Ref<test_format::Widget>()) == "None");
  CHECK(fmt::format("{:>6}", memlens::Ref<test_format::Widget>()) == "  None");
}

TEST_CASE("Weak handles format as Python's weakref repr", "[format]") {
  auto w = memlens::make<test_format::Widget>();
  memlens::Weak<test_format::Widget> weak = w;
  CHECK(fmt::format("{}", weak) == fmt::format("<weakref at {}; to 'test_format::Widget' at {}>",
                                               fmt::ptr(&weak), fmt::ptr(w.object())));
  w.reset();
  CHECK(fmt::format("{}", weak) == fmt::format("<weakref at {}; dead>", fmt::ptr(&weak)));
}

