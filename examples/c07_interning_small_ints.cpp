// Seed challenge 7: small integers in [-5, 256] are cached; sys::intern shares equal strings.
#include <fmt/format.h>

#include <memlens/memlens.hpp>
#include <string>

int main() {
  using memlens::integer;
  using memlens::is;
  for (long long v : {-6LL, -5LL, 0LL, 256LL, 257LL, 1000LL}) {
    fmt::print("is(integer({0}), integer({0})) -> {1}\n", v, is(integer(v), integer(v)));
  }
  auto x = integer(1000);
  auto y = integer(1000);
  fmt::print("*x == *y for 1000 -> {} (equal values, different objects)\n", *x == *y);

  auto s1 = memlens::sys::intern("hello");
  auto s2 = memlens::sys::intern(std::string("hel") + "lo");
  auto s3 = memlens::make<const std::string>("hello");
  fmt::print("\nis(intern(\"hello\"), intern(\"hel\" + \"lo\")) -> {}\n", is(s1, s2));
  fmt::print("is(intern(\"hello\"), make<const std::string>(\"hello\")) -> {} (not interned)\n",
             is(s1, s3));
  return 0;
}
