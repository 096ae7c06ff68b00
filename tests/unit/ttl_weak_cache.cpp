// TTLWeakCache beyond the seed's exercise (tests/exercises/e06_ttl_weak_cache.cpp): the sweep
// on set(), the clock's edges, moves, and how a ValueError names a duration.
#include <chrono>
#include <cstddef>
#include <memlens/tools/ttl_weak_cache.hpp>
#include <string>
#include <utility>
#include <vector>

#include "memlens_test.hpp"

namespace test_ttl_weak_cache {

struct Item : memlens::Object {
  explicit Item(int v = 0) : value(v) {}
  int value;
};

/// A clock the test moves by hand; it may stand before its epoch.
struct HandClock {
  using duration = std::chrono::milliseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<HandClock>;
  static constexpr bool is_steady = true;

  const duration* elapsed = nullptr;
  time_point now() const { return time_point(*elapsed); }
};

using Cache = memlens::TTLWeakCache<int, Item, HandClock>;

}  // namespace test_ttl_weak_cache

using namespace std::chrono_literals;
using test_ttl_weak_cache::Cache;
using test_ttl_weak_cache::HandClock;
using test_ttl_weak_cache::Item;

TEST_CASE("TTLWeakCache: set() sweeps expired entries of keys never read again",
          "[tools][ttl_weak_cache]") {
  HandClock::duration now{0};
  Cache cache(1s, HandClock{&now});
  auto obj = memlens::make<Item>();
  for (int key = 0; key < 100; ++key) cache.set(key, obj);
  now += 1s;  // all 100 expire; nothing reads them
  for (int key = 100; key < 1100; ++key) cache.set(key, obj);
  CHECK(cache.stats().expired == 100);
  CHECK(memlens::weakref::getweakrefcount(obj) == 1000);  // the old entries let go of obj
  CHECK(cache.purge() == 0);
  CHECK(cache.size() == 1000);
}

TEST_CASE("TTLWeakCache: a ttl longer than the clock can count never expires",
          "[tools][ttl_weak_cache]") {
  HandClock::duration now{1'000'000};
  Cache cache(1s, HandClock{&now});
  auto obj = memlens::make<Item>();
  cache.set(1, obj, HandClock::duration::max());  // now + ttl would overflow
  cache.set(2, obj, HandClock::duration::max() - 1ms);
  now += 1'000'000h;
  CHECK(cache.get(1));
  CHECK(cache.get(2));
  CHECK(cache.stats().expired == 0);
}

TEST_CASE("TTLWeakCache: a clock before its epoch", "[tools][ttl_weak_cache]") {
  HandClock::duration now{-10s};
  Cache cache(5s, HandClock{&now});
  auto obj = memlens::make<Item>();
  cache.set(1, obj, HandClock::duration::max());
  cache.set(2, obj);
  now += 5s;
  CHECK(cache.get(1));
  CHECK_FALSE(cache.get(2));
}

TEST_CASE("TTLWeakCache: a std clock object works as well as its static now()",
          "[tools][ttl_weak_cache]") {
  memlens::TTLWeakCache<std::string, Item> cache(1h, std::chrono::steady_clock{});
  auto obj = memlens::make<Item>(3);
  cache.set("k", obj, 1h);
  REQUIRE(cache.get("k"));
  CHECK(cache.get("k")->value == 3);
  CHECK_THROWS_WITH(cache.set("k", obj, -1ns),
                    memlens_test::contains("TTLWeakCache: ttl must be positive, got -1ns"));
}

TEST_CASE("TTLWeakCache: values of any type", "[tools][ttl_weak_cache]") {
  HandClock::duration now{0};
  memlens::TTLWeakCache<std::string, std::vector<int>, HandClock> cache(1s, HandClock{&now});
  auto list = memlens::make<std::vector<int>>(std::vector<int>{1, 2, 3});
  cache.set("list", list);
  REQUIRE(cache.get("list"));
  CHECK(*cache.get("list") == std::vector<int>{1, 2, 3});
  list.reset();
  CHECK_FALSE(cache.get("list"));
  CHECK(cache.stats().collected == 1);
}

TEST_CASE("TTLWeakCache: a moved cache keeps its entries deadlines and counts",
          "[tools][ttl_weak_cache]") {
  HandClock::duration now{0};
  Cache cache(5s, HandClock{&now});
  auto obj = memlens::make<Item>();
  cache.set(1, obj);
  CHECK(cache.get(1));
  Cache moved = std::move(cache);
  CHECK(moved.get(1));
  now += 5s;
  CHECK_FALSE(moved.get(1));
  const memlens::TTLCacheStats stats = moved.stats();
  CHECK(stats.hits == 2);
  CHECK(stats.misses == 1);
  CHECK(stats.expired == 1);
}

TEST_CASE("TTLWeakCache: a ValueError names the duration in its own unit",
          "[tools][ttl_weak_cache]") {
  using memlens::detail::duration_text;
  CHECK(duration_text(std::chrono::nanoseconds(-3)) == "-3ns");
  CHECK(duration_text(std::chrono::microseconds(0)) == "0us");
  CHECK(duration_text(std::chrono::milliseconds(-5)) == "-5ms");
  CHECK(duration_text(std::chrono::seconds(0)) == "0s");
  CHECK(duration_text(std::chrono::minutes(-1)) == "-1min");
  CHECK(duration_text(std::chrono::hours(-2)) == "-2h");
  CHECK(duration_text(std::chrono::days(-1)) == "-1[86400]s");
  CHECK(duration_text(std::chrono::duration<int, std::ratio<1, 50>>(-3)) == "-3[1/50]s");
}
