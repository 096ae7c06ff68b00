// ObjectPool: growth, waiting, health checks, shrinking and retirement on a clock the tests
// move, leak reports with the acquiring stack, a pool destroyed while leases are out, threads.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memlens/memlens.hpp>
#include <memlens/testing.hpp>
#include <memlens/tools/object_pool.hpp>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "memlens_test.hpp"

using memlens::Lease;
using memlens::ObjectPool;
using memlens::PoolOptions;
using memlens_test::contains;
using namespace std::chrono_literals;

namespace test_object_pool {

/// Counts what is alive, so tests see objects being destroyed.
struct Resource {
  explicit Resource(int i, std::atomic<int>* alive_count) : id(i), alive(alive_count) {
    alive->fetch_add(1);
  }
  Resource(const Resource&) = delete;
  Resource& operator=(const Resource&) = delete;
  ~Resource() { alive->fetch_sub(1); }
  int id;
  bool healthy = true;
  std::atomic<int> users{0};  // leases using it at once: never more than one
  std::atomic<int>* alive;
};

/// A factory numbering what it makes, and the count of what is alive.
struct Maker {
  std::atomic<int> made{0};
  std::atomic<int> alive{0};
  std::function<std::unique_ptr<Resource>()> factory() {
    return [this] { return std::make_unique<Resource>(made.fetch_add(1), &alive); };
  }
};

/// A clock the test moves; read by the evictor thread too, hence atomic.
struct ManualClock {
  std::atomic<std::int64_t> ms{0};
  void advance(std::chrono::milliseconds by) { ms.fetch_add(by.count()); }
  std::function<memlens::PoolClock::time_point()> function() {
    return [this] { return memlens::PoolClock::time_point(std::chrono::milliseconds(ms.load())); };
  }
};

/// Waits, yielding, until `done()` holds, for at most 10 s of real time: what a test waits for
/// is an event another thread causes, never a delay.
template <class Done>
bool eventually(Done done) {
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace test_object_pool

using test_object_pool::eventually;
using test_object_pool::Maker;
using test_object_pool::ManualClock;
using test_object_pool::Resource;

TEST_CASE("ObjectPool: bad sizes and options are refused with the values", "[tools][pool]") {
  Maker maker;
  REQUIRE_THROWS_MATCHES(ObjectPool<Resource>(maker.factory(), 5, 3), memlens::ValueError,
                         Catch::Matchers::Message("ObjectPool: min_size (5) is larger than max_size (3)"));
  REQUIRE_THROWS_AS(ObjectPool<Resource>(maker.factory(), 0, 0), memlens::ValueError);
  REQUIRE_THROWS_WITH(ObjectPool<Resource>(nullptr), contains("factory is empty"));
  PoolOptions<Resource> options;
  options.idle_timeout = 0ms;
  REQUIRE_THROWS_WITH(ObjectPool<Resource>(maker.factory(), 1, 2, options),
                      contains("durations must be positive, got 0 ms"));
  CHECK(maker.made == 0);
}

TEST_CASE("ObjectPool: min_size objects exist from the start and are reused", "[tools][pool]") {
  Maker maker;
  ObjectPool<Resource> pool(maker.factory(), 3, 10);
  CHECK(pool.stats().size == 3);
  CHECK(pool.stats().idle == 3);
  int first = -1;
  {
    auto lease = pool.acquire();
    first = lease->id;
    CHECK(pool.stats().in_use == 1);
  }
  // The object this thread gave back is the one it gets next.
  CHECK(pool.acquire()->id == first);
  const auto s = pool.stats();
  CHECK(s.acquires == 2);
  CHECK(s.created == 3);
  CHECK(s.in_use == 0);
  CHECK(maker.made == 3);
}

TEST_CASE("ObjectPool: grows while every object is out up to max_size", "[tools][pool]") {
  Maker maker;
  ObjectPool<Resource> pool(maker.factory(), 1, 3);
  std::vector<Lease<Resource>> leases;
  for (int i = 0; i < 3; ++i) leases.push_back(pool.acquire());
  CHECK(pool.stats().size == 3);
  CHECK(pool.stats().in_use == 3);
  CHECK_FALSE(pool.try_acquire().has_value());
  REQUIRE_THROWS_MATCHES(pool.acquire(5ms), memlens::TimeoutError,
                         Catch::Matchers::Message("ObjectPool: no object came free within 5 ms "
                                                  "(all 3 in use, max_size 3)"));
  const auto s = pool.stats();
  CHECK(s.waits == 1);
  CHECK(s.timeouts == 1);
  CHECK(s.size == 3);
  leases.pop_back();
  auto again = pool.try_acquire();
  REQUIRE(again.has_value());
  CHECK(maker.made == 3);
}

TEST_CASE("ObjectPool: a waiting acquire gets the object released on another thread",
          "[tools][pool][threads]") {
  Maker maker;
  ObjectPool<Resource> pool(maker.factory(), 1, 1);
  auto held = pool.acquire();
  const int id = held->id;
  int got = -1;
  std::thread waiter([&] { got = pool.acquire()->id; });
  REQUIRE(eventually([&] { return pool.stats().waits == 1; }));
  held = Lease<Resource>();
  waiter.join();
  CHECK(got == id);
  CHECK(pool.stats().timeouts == 0);
}

TEST_CASE("ObjectPool: a failing health check on acquire destroys the object and replaces it",
          "[tools][pool]") {
  Maker maker;
  PoolOptions<Resource> options;
  options.health_check = [](const Resource& r) { return r.healthy; };
  ObjectPool<Resource> pool(maker.factory(), 1, 2, options);
  int broken_id = -1;
  {
    auto lease = pool.acquire();
    broken_id = lease->id;
    lease->healthy = false;  // breaks while idle, as a dropped connection does
  }
  auto lease = pool.acquire();
  CHECK(lease->id != broken_id);
  const auto s = pool.stats();
  CHECK(s.failed_health_checks == 1);
  CHECK(s.destroyed == 1);
  CHECK(s.size == 1);
  CHECK(s.acquires == 2);  // the object that failed was never handed out
  CHECK(maker.alive == 1);
  CHECK(pool.health_check(*lease));
}

TEST_CASE("ObjectPool: a new object that fails its health check makes acquire throw",
          "[tools][pool]") {
  Maker maker;
  PoolOptions<Resource> options;
  options.health_check = [](const Resource&) { return false; };
  ObjectPool<Resource> pool(maker.factory(), 0, 2, options);
  REQUIRE_THROWS_WITH(pool.acquire(), contains("newly created object failed its health check"));
  CHECK(pool.stats().size == 0);
  CHECK(maker.alive == 0);
}

TEST_CASE("ObjectPool: a health check that throws destroys the object and throws",
          "[tools][pool]") {
  Maker maker;
  PoolOptions<Resource> options;
  options.health_check = [](const Resource& r) {
    if (r.id == 0) throw std::runtime_error("probe failed");
    return true;
  };
  options.validate_on_acquire = true;
  ObjectPool<Resource> pool(maker.factory(), 1, 2, options);
  REQUIRE_THROWS_WITH(pool.acquire(), "probe failed");
  CHECK(pool.stats().size == 0);
  CHECK(pool.stats().failed_health_checks == 1);
  CHECK(pool.acquire()->id == 1);
}

TEST_CASE("ObjectPool: validate_on_release and invalidate destroy instead of reusing",
          "[tools][pool]") {
  Maker maker;
  PoolOptions<Resource> options;
  options.health_check = [](const Resource& r) { return r.healthy; };
  options.validate_on_acquire = false;
  options.validate_on_release = true;
  ObjectPool<Resource> pool(maker.factory(), 0, 2, options);
  {
    auto lease = pool.acquire();
    lease->healthy = false;
  }
  CHECK(pool.stats().failed_health_checks == 1);
  CHECK(pool.stats().size == 0);
  {
    auto lease = pool.acquire();
    lease.invalidate();
  }
  CHECK(pool.stats().size == 0);
  CHECK(pool.stats().failed_health_checks == 1);
  CHECK(pool.stats().destroyed == 2);
  CHECK(maker.alive == 0);
}

TEST_CASE("ObjectPool: a factory that throws leaves the counts right and wakes a waiter",
          "[tools][pool][threads]") {
  std::atomic<int> alive{0};
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  std::atomic<int> calls{0};
  auto factory = [&]() -> std::unique_ptr<Resource> {
    const int call = calls.fetch_add(1);
    if (call == 1) {  // the second object: blocks until told, then fails
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return go; });
      throw std::runtime_error("connection refused");
    }
    return std::make_unique<Resource>(call, &alive);
  };
  ObjectPool<Resource> pool(factory, 1, 2);
  auto held = pool.acquire();  // the first object
  std::string failure;
  std::thread creator([&] {
    try {
      pool.acquire();
    } catch (const std::runtime_error& e) {
      failure = e.what();
    }
  });
  REQUIRE(eventually([&] { return calls == 2; }));  // the creator is in the factory
  int waited_for = -1;
  std::thread waiter([&] { waited_for = pool.acquire()->id; });
  REQUIRE(eventually([&] { return pool.stats().waits == 1; }));  // no room: it waits
  {
    std::lock_guard lock(m);
    go = true;
  }
  cv.notify_all();
  creator.join();
  waiter.join();  // woken by the failure, it made the object itself
  CHECK(failure == "connection refused");
  CHECK(waited_for == 2);
  const auto s = pool.stats();
  CHECK(s.size == 2);
  CHECK(s.created == 2);
  CHECK(s.in_use == 1);
}

TEST_CASE("ObjectPool: a clock that throws while an object is made leaves the counts right",
          "[tools][pool]") {
  Maker maker;
  std::atomic<bool> broken{false};
  PoolOptions<Resource> options;
  options.clock = [&] {
    if (broken) throw std::runtime_error("clock failed");
    return memlens::PoolClock::time_point{};
  };
  ObjectPool<Resource> pool(maker.factory(), 1, 2, options);
  auto first = pool.acquire();
  broken = true;
  REQUIRE_THROWS_WITH(pool.acquire(), "clock failed");
  CHECK(pool.stats().size == 1);
  CHECK(maker.alive == 1);
  broken = false;
  auto second = pool.acquire(std::chrono::seconds(10));  // the slot the failure reserved is free
  CHECK(pool.stats().size == 2);
}

TEST_CASE("ObjectPool: shrink destroys objects idle for idle_timeout beyond min_size",
          "[tools][pool]") {
  Maker maker;
  ManualClock clock;
  PoolOptions<Resource> options;
  options.idle_timeout = 30s;
  options.clock = clock.function();
  ObjectPool<Resource> pool(maker.factory(), 2, 6, options);
  {
    std::vector<Lease<Resource>> leases;
    for (int i = 0; i < 5; ++i) leases.push_back(pool.acquire());
  }
  CHECK(pool.stats().size == 5);
  // The first pass sees them idle and starts their idle time; none has been idle 30 s yet.
  CHECK(pool.shrink() == 0);
  clock.advance(29s);
  CHECK(pool.shrink() == 0);
  // One object is used again: its idle time starts over.
  auto kept = pool.acquire();
  const int kept_id = kept->id;
  kept = Lease<Resource>();
  clock.advance(1s);
  CHECK(pool.shrink() == 3);
  CHECK(pool.stats().size == 2);
  CHECK(maker.alive == 2);
  CHECK(pool.acquire()->id == kept_id);
  clock.advance(1h);
  CHECK(pool.shrink() == 0);  // never below min_size
}

TEST_CASE("ObjectPool: max_lifetime retires old objects idle or on lease and refills",
          "[tools][pool]") {
  Maker maker;
  ManualClock clock;
  PoolOptions<Resource> options;
  options.max_lifetime = 10min;
  options.clock = clock.function();
  ObjectPool<Resource> pool(maker.factory(), 2, 4, options);
  auto out = pool.acquire();
  const int out_id = out->id;
  clock.advance(10min);
  CHECK(pool.maintain() == 1);  // the idle one, replaced
  CHECK(pool.stats().size == 2);
  CHECK(maker.made == 3);
  CHECK(out->id == out_id);  // a lease keeps its object until it ends
  out = Lease<Resource>();
  CHECK(pool.stats().size == 1);
  CHECK(maker.alive == 1);
  pool.maintain();
  CHECK(pool.stats().size == 2);
}

TEST_CASE("ObjectPool: maintain destroys idle objects that fail their health check",
          "[tools][pool]") {
  Maker maker;
  PoolOptions<Resource> options;
  options.health_check = [](const Resource& r) { return r.healthy; };
  ObjectPool<Resource> pool(maker.factory(), 2, 4, options);
  { pool.acquire()->healthy = false; }
  CHECK(pool.maintain() == 1);
  const auto s = pool.stats();
  CHECK(s.failed_health_checks == 1);
  CHECK(s.size == 2);  // refilled
  CHECK(maker.made == 3);
}

TEST_CASE("ObjectPool: the evictor thread shrinks and checks without being called",
          "[tools][pool][threads]") {
  Maker maker;
  ManualClock clock;
  PoolOptions<Resource> options;
  options.idle_timeout = 1s;
  options.evict_interval = 1ms;
  options.clock = clock.function();
  ObjectPool<Resource> pool(maker.factory(), 1, 4, options);
  {
    std::vector<Lease<Resource>> leases;
    for (int i = 0; i < 4; ++i) leases.push_back(pool.acquire());
  }
  clock.advance(2s);
  // Passes after this point see the objects idle; a second pass 1 s later destroys them.
  REQUIRE(eventually([&] {
    clock.advance(1s);
    return pool.stats().size == 1;
  }));
  CHECK(maker.alive == 1);
}

TEST_CASE("ObjectPool: a lease held past leak_threshold is reported once with where it was "
          "acquired",
          "[tools][pool]") {
  Maker maker;
  ManualClock clock;
  std::vector<memlens::LeaseLeak> leaks;
  PoolOptions<Resource> options;
  options.leak_threshold = 2s;
  options.clock = clock.function();
  options.leak_sink = [&](const memlens::LeaseLeak& leak) { leaks.push_back(leak); };
  ObjectPool<Resource> pool(maker.factory(), 0, 4, options);
  auto returned = pool.acquire();
  auto leaked = pool.acquire();  // the line the report must name
  returned = Lease<Resource>();
  clock.advance(1s);
  pool.maintain();
  CHECK(leaks.empty());
  clock.advance(2s);
  pool.maintain();
  REQUIRE(leaks.size() == 1);
  CHECK(leaks[0].held == 3s);
  CHECK(pool.stats().leaks_reported == 1);
#if MEMLENS_TESTS_DEBUG_INFO
  REQUIRE_FALSE(leaks[0].acquired_at.empty());
  CHECK_THAT(leaks[0].acquired_at.front().filename, contains("object_pool.cpp"));
  CHECK_THAT(leaks[0].to_string(), contains("held for 3000 ms"));
#endif
  pool.maintain();
  CHECK(leaks.size() == 1);  // once
}

TEST_CASE("ObjectPool: destroyed while leases are out the leases stay valid", "[tools][pool]") {
  Maker maker;
  std::optional<Lease<Resource>> survivor;
  {
    ObjectPool<Resource> pool(maker.factory(), 3, 5);
    survivor = pool.acquire();
    CHECK(maker.alive == 3);
  }
  CHECK(maker.alive == 1);  // the idle ones went with the pool
  (*survivor)->id += 100;   // still usable (ASan would see a use after free)
  survivor.reset();
  CHECK(maker.alive == 0);
}

TEST_CASE("ObjectPool: a pool destroyed while a lease ends on another thread",
          "[tools][pool][threads]") {
  // The object's destructor runs inside the release; it holds the release open until the pool
  // is being destroyed on the main thread, which must wait for it before freeing its state
  // (ASan sees the use after free otherwise).
  std::atomic<bool> in_destructor{false}, destroying{false};
  struct Slow {
    Slow(std::atomic<bool>* i, std::atomic<bool>* d) : in_destructor(i), destroying(d) {}
    Slow(const Slow&) = delete;
    Slow& operator=(const Slow&) = delete;
    std::atomic<bool>* in_destructor;
    std::atomic<bool>* destroying;
    ~Slow() {
      *in_destructor = true;
      while (!*destroying) std::this_thread::yield();
      for (int i = 0; i < 1000; ++i) std::this_thread::yield();  // widens a broken window
    }
  };
  auto* pool = new ObjectPool<Slow>(
      [&] { return std::make_unique<Slow>(&in_destructor, &destroying); }, 0, 2);
  auto ending = pool->acquire();
  auto kept = pool->acquire();
  ending.invalidate();
  std::thread releaser([&] { ending = Lease<Slow>(); });
  while (!in_destructor) std::this_thread::yield();
  in_destructor = false;  // `kept`'s object will run the destructor again
  destroying = true;
  delete pool;
  releaser.join();
  kept = Lease<Slow>();  // the last lease frees the pool's state
  CHECK(in_destructor);
}

TEST_CASE("ObjectPool: release takes a lease of this pool only", "[tools][pool]") {
  Maker maker;
  ObjectPool<Resource> a(maker.factory(), 0, 2);
  ObjectPool<Resource> b(maker.factory(), 0, 2);
  auto lease = a.acquire();
  REQUIRE_THROWS_WITH(b.release(std::move(lease)), contains("another pool's lease"));
  REQUIRE(lease);  // refused: still held
  a.release(std::move(lease));
  CHECK_FALSE(lease);
  CHECK(a.stats().in_use == 0);
  REQUIRE_THROWS_WITH(a.release(Lease<Resource>()), contains("empty lease"));
}

TEST_CASE("ObjectPool: threads never share an object and the counts add up",
          "[tools][pool][threads]") {
  Maker maker;
  PoolOptions<Resource> options;
  options.health_check = [](const Resource& r) { return r.healthy; };
  options.validate_on_release = true;
  ObjectPool<Resource> pool(maker.factory(), 1, 3, options);
  constexpr int threads = 4, rounds = 5000;
  std::atomic<int> shared{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < rounds; ++i) {
        auto lease = (i % 3 == 0) ? pool.try_acquire() : std::optional(pool.acquire());
        if (!lease) continue;
        if ((*lease)->users.fetch_add(1) != 0) shared.fetch_add(1);
        if ((i + t) % 500 == 0) (*lease)->healthy = false;
        (*lease)->users.fetch_sub(1);
      }
    });
  }
  for (auto& w : workers) w.join();
  CHECK(shared == 0);
  const auto s = pool.stats();
  CHECK(s.in_use == 0);
  CHECK(s.size <= 3);
  CHECK(s.size == s.idle);
  CHECK(s.created - s.destroyed == s.size);
  CHECK(static_cast<int>(s.size) == maker.alive);
  CHECK(s.failed_health_checks == s.destroyed);
}

TEST_CASE("ObjectPool: a pool used and destroyed leaks nothing", "[tools][pool]") {
  REQUIRE_THAT(([] {
                 Maker maker;
                 ObjectPool<Resource> pool(maker.factory(), 2, 4);
                 auto a = pool.acquire();
                 auto b = pool.acquire();
                 auto c = pool.acquire();
                 c.invalidate();
               }),
               memlens::testing::NoLeaks());
}
