// Tests of memlens/sys.hpp: reference counts, interning, the small-integer cache, the
// unraisable hook.
#include <memlens/sys.hpp>

#include <memlens/weakref.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace test_sys {
struct Thing : memlens::Object {};
inline std::size_t by_value(memlens::Ref<Thing> r) { return memlens::sys::getrefcount(r); }
inline std::size_t by_reference(const memlens::Ref<Thing>& r) {
  return memlens::sys::getrefcount(r);
}
}  // namespace test_sys

using namespace test_sys;
using memlens::sys::getrefcount;

TEST_CASE("getrefcount is exact: no temporary is counted", "[sys]") {
  auto x = memlens::make<Thing>();
  CHECK(getrefcount(x) == 1);  // CPython would say 2
  auto y = x;
  CHECK(getrefcount(x) == 2);
  CHECK(by_value(x) == 3);
  CHECK(by_reference(x) == 2);
  std::vector<memlens::Ref<Thing>> many(5, x);
  CHECK(getrefcount(x) == 7);
  many.clear();
  y.reset();
  CHECK(getrefcount(x) == 1);
  CHECK(getrefcount(memlens::Ref<Thing>()) == 0);
}

TEST_CASE("intern gives one object per distinct string", "[sys]") {
  auto a = memlens::sys::intern("hello");
  auto b = memlens::sys::intern(std::string("hel") + "lo");
  auto c = memlens::sys::intern("world");
  CHECK(memlens::is(a, b));
  CHECK_FALSE(memlens::is(a, c));
  CHECK(*a == "hello");
  auto fresh = memlens::make<const std::string>("hello");
  CHECK(*fresh == *a);
  CHECK_FALSE(memlens::is(fresh, a));  // equal but not identical, unless interned
  CHECK(memlens::is(memlens::sys::intern(*fresh), a));
  CHECK(memlens::is(memlens::sys::intern(""), memlens::sys::intern(std::string())));
}

TEST_CASE("integer caches -5 to 256 as CPython does", "[sys]") {
  using memlens::integer;
  for (long long v : {-5LL, -1LL, 0LL, 1LL, 100LL, 256LL}) {
    CAPTURE(v);
    CHECK(memlens::is(integer(v), integer(v)));
    CHECK(*integer(v) == v);
  }
  for (long long v : {-6LL, 257LL, 1000LL, -1000LL}) {
    CAPTURE(v);
    CHECK_FALSE(memlens::is(integer(v), integer(v)));
    CHECK(*integer(v) == *integer(v));
  }
  auto cached = integer(7);
  CHECK(getrefcount(cached) == 2);  // the cache holds one
}

TEST_CASE("set_unraisablehook installs a hook and returns the previous one", "[sys]") {
  struct Failing : memlens::Object {
    void finalize() override { throw std::runtime_error("finalizer failed"); }
  };
  std::vector<std::string> seen;
  auto previous = memlens::sys::set_unraisablehook([&](const memlens::sys::UnraisableInfo& info) {
    seen.emplace_back(info.err_msg);
    CHECK(info.object != nullptr);
    CHECK_THROWS_WITH(std::rethrow_exception(info.exception), "finalizer failed");
  });
  CHECK_FALSE(previous);
  memlens::make<Failing>().reset();
  auto mine = memlens::sys::set_unraisablehook(nullptr);
  CHECK(mine);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == "Exception ignored in finalizer of");
}
