// Tests of memlens/errors.hpp (included first: it must compile on its own).
#include <memlens/errors.hpp>

#include <memlens/fwd.hpp>
#include <memlens/gc.hpp>
#include <memlens/weakref.hpp>

#include <string>

#include "memlens_test.hpp"

TEST_CASE("every memlens exception is a memlens::Error and a std::runtime_error", "[errors]") {
  STATIC_REQUIRE(std::is_base_of_v<std::runtime_error, memlens::Error>);
  STATIC_REQUIRE(std::is_base_of_v<memlens::Error, memlens::ValueError>);
  STATIC_REQUIRE(std::is_base_of_v<memlens::Error, memlens::ReferenceError>);
  STATIC_REQUIRE(std::is_base_of_v<memlens::Error, memlens::TypeError>);
}

TEST_CASE("error messages name the part and the bad value", "[errors]") {
  try {
    memlens::gc::collect(7);
    FAIL("collect(7) should throw");
  } catch (const memlens::Error& e) {
    CHECK(std::string(e.what()) == "gc: invalid generation 7 (expected 0, 1 or 2)");
  }
  try {
    memlens::WeakValueDictionary<int, int> d;
    d.insert_or_assign(1, memlens::Ref<int>());
    FAIL("a null value should throw");
  } catch (const memlens::ValueError& e) {
    CHECK(std::string(e.what()).rfind("WeakValueDictionary: ", 0) == 0);
  }
}
