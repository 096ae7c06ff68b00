// Seed challenge 7, interning and small integer caching: some equal values are one object.
//   a = 256; b = 256; assert a is b        # cached
//   x = 1000; y = 1000; assert x is not y  # not cached
//   s1 = "hello"; s2 = "hello"; assert s1 is s2  # interned
// memlens::integer copies CPython's cache of [-5, 256]; sys::intern is sys.intern.
#include <memlens/memlens.hpp>
#include <string>

#include "memlens_test.hpp"

using memlens::integer;
using memlens::is;
using memlens::sys::intern;

TEST_CASE("c07: 256 is 256 but 1000 is not 1000", "[challenge][c07]") {
  auto a = integer(256);
  auto b = integer(256);
  CHECK(is(a, b));  // cached

  auto x = integer(1000);
  auto y = integer(1000);
  CHECK_FALSE(is(x, y));  // not cached: two objects...
  CHECK(*x == *y);        // ...with equal values
  CHECK(*x == 1000);
}

TEST_CASE("c07: the small integer cache spans exactly -5 to 256", "[challenge][c07]") {
  CHECK(is(integer(-5), integer(-5)));
  CHECK_FALSE(is(integer(-6), integer(-6)));
  CHECK(is(integer(256), integer(256)));
  CHECK_FALSE(is(integer(257), integer(257)));
  CHECK(is(integer(0), integer(0)));

  bool all_cached = true;
  for (long long v = -5; v <= 256; ++v) {
    auto first = integer(v);
    all_cached = all_cached && is(first, integer(v)) && *first == v;
  }
  CHECK(all_cached);
  // Different cached values are different objects.
  CHECK_FALSE(is(integer(1), integer(2)));
}

TEST_CASE("c07: cached integers outlive their users and others die with them", "[challenge][c07]") {
  memlens::Weak<const long long> cached = integer(7);
  memlens::Weak<const long long> fresh = integer(1000);
  CHECK_FALSE(cached.expired());  // the cache holds it (immortal, as in CPython)
  CHECK(fresh.expired());         // nobody held it past the full expression
}

TEST_CASE("c07: equal strings intern to the same object", "[challenge][c07]") {
  auto s1 = intern("hello");
  auto s2 = intern(std::string("hel") + "lo");  // built at run time, equal text
  CHECK(is(s1, s2));
  CHECK(*s1 == "hello");

  // A string that was not interned is an object of its own, though equal.
  auto built = memlens::make<const std::string>("hello");
  CHECK(*built == *s1);
  CHECK_FALSE(is(built, s1));

  // Different text, different object.
  CHECK_FALSE(is(intern("hello"), intern("world")));
  CHECK_FALSE(is(intern("hello"), intern("Hello")));
}

TEST_CASE("c07: interned strings live on after every user is gone", "[challenge][c07]") {
  auto s = intern("c07: interned strings live on");
  const auto address = memlens::id(s);
  memlens::Weak<const std::string> w = s;
  s.reset();
  CHECK_FALSE(w.expired());
  CHECK(memlens::id(intern("c07: interned strings live on")) == address);
}
