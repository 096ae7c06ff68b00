// Seed exercise 6, build a weak cache with TTL: a TTLWeakCache built on WeakValueDictionary
// whose entries also expire, cleaned up on access, with hit, miss and eviction counts.
//   cache = TTLWeakCache(default_ttl=5); cache.set('key1', obj, ttl=10); cache.get('key1')
//   cache.stats()
// The time comes from a clock the tests move by hand, so nothing sleeps.
#include <chrono>
#include <cstddef>
#include <memlens/memlens.hpp>
#include <memlens/tools/ttl_weak_cache.hpp>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace test_e06 {

struct SomeObject : memlens::Object {
  explicit SomeObject(int v = 0) : value(v) {}
  int value;
};

/// A clock that stands still until the test moves it: now() reads a time the test owns.
struct ManualClock {
  using duration = std::chrono::milliseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<ManualClock>;
  static constexpr bool is_steady = true;

  const duration* elapsed = nullptr;
  time_point now() const { return time_point(*elapsed); }
};

/// The time of one test, and clocks that read it.
struct Time {
  ManualClock::duration elapsed{0};
  ManualClock clock() const { return ManualClock{&elapsed}; }
  void advance(ManualClock::duration by) { elapsed += by; }
};

using Cache = memlens::TTLWeakCache<std::string, SomeObject, ManualClock>;

bool balanced(const memlens::TTLCacheStats& s) { return s.evictions == s.expired + s.collected; }

}  // namespace test_e06

using namespace std::chrono_literals;
using memlens::sys::getrefcount;
using memlens::weakref::getweakrefcount;
using test_e06::Cache;
using test_e06::SomeObject;

TEST_CASE("e06: the seed's example: default_ttl=5 and set with ttl=10", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto obj = memlens::make<SomeObject>(7);
  cache.set("key1", obj, 10s);

  REQUIRE(cache.get("key1"));
  CHECK(memlens::is(cache.get("key1"), obj));
  CHECK(cache.get("key1")->value == 7);
  time.advance(9999ms);  // past the default ttl: the entry's own ttl is what counts
  CHECK(memlens::is(cache.get("key1"), obj));
  time.advance(1ms);
  CHECK_FALSE(cache.get("key1"));

  const memlens::TTLCacheStats stats = cache.stats();
  CHECK(stats.hits == 4);
  CHECK(stats.misses == 1);
  CHECK(stats.expired == 1);
  CHECK(stats.collected == 0);
  CHECK(stats.evictions == 1);
}

TEST_CASE("e06: the cache holds its values weakly through WeakValueDictionary", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto obj = memlens::make<SomeObject>();
  memlens::Weak<SomeObject> probe = obj;
  cache.set("key1", obj);
  CHECK(getrefcount(obj) == 1);      // no strong reference added
  CHECK(getweakrefcount(obj) == 2);  // the probe's and the cache's entry's
  obj.reset();                       // the object dies although it is cached
  CHECK(probe.expired());
  CHECK_FALSE(cache.get("key1"));
}

TEST_CASE("e06: an entry set at t with ttl d is there until just before t + d and gone at t + d",
          "[exercise][e06]") {
  test_e06::Time time;
  time.advance(1000ms);  // t = 1000ms
  Cache cache(60s, time.clock());
  auto obj = memlens::make<SomeObject>();
  cache.set("k", obj, 10ms);

  time.advance(9ms);  // t + d - 1ms
  CHECK(cache.contains("k"));
  CHECK(cache.size() == 1);
  CHECK(memlens::is(cache.get("k"), obj));
  time.advance(1ms);  // exactly t + d
  CHECK_FALSE(cache.contains("k"));
  CHECK_FALSE(cache.get("k"));
  CHECK(cache.size() == 0);
}

TEST_CASE("e06: the default ttl applies when set() is given none and a custom one otherwise",
          "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto a = memlens::make<SomeObject>(1);
  auto b = memlens::make<SomeObject>(2);
  auto c = memlens::make<SomeObject>(3);
  cache.set("default", a);
  cache.set("longer", b, 10s);
  cache.set("shorter", c, 2s);
  CHECK(cache.size() == 3);

  time.advance(2s);
  CHECK_FALSE(cache.get("shorter"));
  CHECK(cache.get("default"));
  CHECK(cache.get("longer"));
  time.advance(3s);  // 5s
  CHECK_FALSE(cache.get("default"));
  CHECK(cache.get("longer"));
  time.advance(5s);  // 10s
  CHECK_FALSE(cache.get("longer"));
  CHECK(cache.stats().expired == 3);
  CHECK(cache.size() == 0);
}

TEST_CASE("e06: a cache made with only a default ttl reads the steady clock", "[exercise][e06]") {
  memlens::TTLWeakCache<std::string, SomeObject> cache(std::chrono::hours(1));
  auto obj = memlens::make<SomeObject>();
  cache.set("k", obj);
  CHECK(memlens::is(cache.get("k"), obj));
  memlens::TTLWeakCache<std::string, SomeObject> sixty_seconds;  // the seed's default_ttl=60
  sixty_seconds.set("k", obj);
  CHECK(sixty_seconds.size() == 1);
}

TEST_CASE("e06: an entry whose object dies before its deadline is collected", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto obj = memlens::make<SomeObject>();
  cache.set("key1", obj, 10s);
  time.advance(1s);
  obj.reset();  // del obj

  CHECK_FALSE(cache.get("key1"));
  CHECK_FALSE(cache.contains("key1"));
  CHECK(cache.size() == 0);
  const memlens::TTLCacheStats stats = cache.stats();
  CHECK(stats.collected == 1);
  CHECK(stats.expired == 0);
  CHECK(stats.evictions == 1);
  CHECK(stats.misses == 1);
  CHECK(stats.hits == 0);
}

TEST_CASE("e06: an entry that died and expired before anyone looked counts as expired",
          "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  cache.set("k", memlens::make<SomeObject>());  // dies at the end of the statement
  time.advance(5s);
  CHECK_FALSE(cache.get("k"));
  CHECK(cache.stats().expired == 1);
  CHECK(cache.stats().collected == 0);
  CHECK(cache.stats().evictions == 1);
}

TEST_CASE("e06: expired entries are removed on access and let go of their objects",
          "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto obj = memlens::make<SomeObject>();
  cache.set("k", obj);
  time.advance(5s);
  CHECK(getweakrefcount(obj) == 1);  // expired, but nobody has looked yet
  CHECK_FALSE(cache.get("k"));
  CHECK(getweakrefcount(obj) == 0);  // the access removed the entry
  CHECK(getrefcount(obj) == 1);      // and left the object alone
}

TEST_CASE("e06: each removed entry is counted once however often it is looked at",
          "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto kept = memlens::make<SomeObject>();
  cache.set("expires", kept);
  cache.set("dies", memlens::make<SomeObject>(), 10s);
  time.advance(6s);
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(cache.get("expires"));
    CHECK_FALSE(cache.get("dies"));
    CHECK_FALSE(cache.contains("expires"));
    CHECK(cache.size() == 0);
    CHECK(cache.purge() == 0);
  }
  const memlens::TTLCacheStats stats = cache.stats();
  CHECK(stats.expired == 1);
  CHECK(stats.collected == 1);
  CHECK(stats.evictions == 2);
  CHECK(stats.misses == 6);
}

TEST_CASE("e06: size() counts only live unexpired entries", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  std::vector<memlens::Ref<SomeObject>> objects;
  for (int i = 0; i < 5; ++i) {
    objects.push_back(memlens::make<SomeObject>(i));
    cache.set(std::to_string(i), objects.back(), std::chrono::seconds(i + 1));  // 1s to 5s
  }
  CHECK(cache.size() == 5);
  objects[3].reset();  // "3" dies (its ttl is 4s)
  CHECK(cache.size() == 4);
  time.advance(2s);  // "0" and "1" expire
  CHECK(cache.size() == 2);
  CHECK(cache.get("2"));
  CHECK(cache.get("4"));
  time.advance(3s);  // so do "2" and "4"
  CHECK(cache.size() == 0);

  const memlens::TTLCacheStats stats = cache.stats();
  CHECK(stats.collected == 1);
  CHECK(stats.expired == 4);
  CHECK(stats.evictions == 5);
  CHECK(test_e06::balanced(stats));
}

TEST_CASE("e06: statistics count hits and misses and evictions as expired plus collected",
          "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  CHECK(cache.stats().hits == 0);
  CHECK(cache.stats().misses == 0);
  CHECK(cache.stats().evictions == 0);

  auto a = memlens::make<SomeObject>(1);
  auto b = memlens::make<SomeObject>(2);
  auto c = memlens::make<SomeObject>(3);
  cache.set("a", a);                 // expires at 5s
  cache.set("b", b, 20s);            // dies at 1s
  cache.set("c", c, 20s);            // lives
  CHECK_FALSE(cache.get("absent"));  // miss 1
  CHECK(cache.get("a"));             // hit 1
  CHECK(cache.get("c"));             // hit 2
  time.advance(1s);
  b.reset();
  CHECK_FALSE(cache.get("b"));  // miss 2: collected
  time.advance(4s);
  CHECK_FALSE(cache.get("a"));  // miss 3: expired
  CHECK(cache.get("c"));        // hit 3
  CHECK_FALSE(cache.get("b"));  // miss 4: already gone, not counted again

  const memlens::TTLCacheStats stats = cache.stats();
  CHECK(stats.hits == 3);
  CHECK(stats.misses == 4);
  CHECK(stats.expired == 1);
  CHECK(stats.collected == 1);
  CHECK(stats.evictions == 2);
  CHECK(test_e06::balanced(stats));
}

TEST_CASE("e06: a ttl that is not positive is a ValueError that names it", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto obj = memlens::make<SomeObject>(1);
  cache.set("k", obj, 10s);
  auto other = memlens::make<SomeObject>(2);

  CHECK_THROWS_AS(cache.set("k", other, 0ms), memlens::ValueError);
  CHECK_THROWS_WITH(cache.set("k", other, -5ms),
                    memlens_test::contains("TTLWeakCache: ttl must be positive, got -5ms"));
  CHECK_THROWS_AS(cache.set("new", other, -1ms), memlens::ValueError);
  // Nothing was added or replaced.
  CHECK(memlens::is(cache.get("k"), obj));
  CHECK_FALSE(cache.contains("new"));
  time.advance(9s);
  CHECK(cache.contains("k"));  // the deadline is still the first set's

  CHECK_THROWS_AS(Cache(0ms, time.clock()), memlens::ValueError);
  CHECK_THROWS_WITH(
      Cache(-2s, time.clock()),
      memlens_test::contains("TTLWeakCache: default_ttl must be positive, got -2000ms"));
}

TEST_CASE("e06: caching None is an error", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  CHECK_THROWS_AS(cache.set("k", nullptr), memlens::ValueError);
  CHECK_THROWS_WITH(cache.set("k", memlens::Ref<SomeObject>(), 1s),
                    memlens_test::contains("TTLWeakCache: cannot cache a null Ref"));
  CHECK(cache.size() == 0);
}

TEST_CASE("e06: set() again replaces the object and restarts the time to live", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(10s, time.clock());
  auto a = memlens::make<SomeObject>(1);
  auto b = memlens::make<SomeObject>(2);
  cache.set("k", a);
  time.advance(8s);
  cache.set("k", b);  // live until 18s
  CHECK(getweakrefcount(a) == 0);
  time.advance(9s);  // 17s
  CHECK(memlens::is(cache.get("k"), b));
  time.advance(1s);  // 18s
  CHECK_FALSE(cache.get("k"));
  CHECK(cache.stats().expired == 1);  // the replaced entry was live: not an eviction
  CHECK(cache.stats().evictions == 1);
}

TEST_CASE("e06: set() over an entry that had expired counts it", "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto obj = memlens::make<SomeObject>();
  cache.set("k", obj);
  time.advance(5s);
  cache.set("k", obj);
  CHECK(cache.stats().expired == 1);
  CHECK(memlens::is(cache.get("k"), obj));
}

TEST_CASE("e06: erase and clear and purge remove entries without touching their objects",
          "[exercise][e06]") {
  test_e06::Time time;
  Cache cache(5s, time.clock());
  auto a = memlens::make<SomeObject>(1);
  auto b = memlens::make<SomeObject>(2);
  auto c = memlens::make<SomeObject>(3);
  cache.set("a", a);
  cache.set("b", b, 1s);
  cache.set("c", c, 2s);

  CHECK(cache.erase("a"));  // live: removed by request, not an eviction
  CHECK_FALSE(cache.erase("a"));
  CHECK(getrefcount(a) == 1);
  CHECK(cache.stats().evictions == 0);

  time.advance(1s);
  CHECK_FALSE(cache.erase("b"));  // had expired: nothing live to erase, counted as expired
  CHECK(cache.stats().expired == 1);

  cache.set("a", a);
  time.advance(1s);  // "c" expires
  CHECK(cache.purge() == 1);
  CHECK(cache.stats().expired == 2);
  CHECK(cache.size() == 1);

  time.advance(4s);  // "a" expires; clear() counts it before it empties the cache
  cache.clear();
  CHECK(cache.size() == 0);
  CHECK(cache.stats().expired == 3);
  CHECK(getweakrefcount(a) == 0);
  CHECK(getrefcount(a) == 1);
  CHECK(getrefcount(c) == 1);
}
