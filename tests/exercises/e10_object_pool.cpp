// Seed exercise 10, implement an object pool with auto-scaling and health checks:
//   pool = ObjectPool(lambda: Connection(), min_size=3, max_size=10)
//   conn = pool.acquire(); ...; pool.release(conn)
// Requirements: grows when all objects are in use, shrinks when objects are idle, a health
// check for pooled objects, thread-safe. Idle time runs on a clock the test moves.
#include <atomic>
#include <chrono>
#include <memlens/memlens.hpp>
#include <memlens/tools/object_pool.hpp>
#include <thread>
#include <vector>

#include "memlens_test.hpp"

using namespace std::chrono_literals;

namespace test_e10 {

struct Connection {
  static inline std::atomic<int> open{0};
  Connection() { open.fetch_add(1); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { open.fetch_sub(1); }
  bool connected = true;
  int queries = 0;
  int query() { return ++queries; }
};

struct Clock {
  std::atomic<std::int64_t> seconds{0};
  std::function<memlens::PoolClock::time_point()> function() {
    return [this] { return memlens::PoolClock::time_point(std::chrono::seconds(seconds.load())); };
  }
};

memlens::PoolOptions<Connection> options(Clock& clock) {
  memlens::PoolOptions<Connection> o;
  o.health_check = [](const Connection& c) { return c.connected; };
  o.idle_timeout = 60s;
  o.clock = clock.function();
  return o;
}

}  // namespace test_e10

using test_e10::Connection;

TEST_CASE("e10: the seed's example: acquire then use then release", "[exercise][e10]") {
  test_e10::Clock clock;
  memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 3, 10,
                                       test_e10::options(clock));
  CHECK(Connection::open == 3);
  auto conn = pool.acquire();
  CHECK(conn->query() == 1);
  pool.release(std::move(conn));
  const auto stats = pool.stats();
  CHECK(stats.size == 3);
  CHECK(stats.idle == 3);
  CHECK(stats.in_use == 0);
  CHECK(stats.acquires == 1);
  CHECK(pool.acquire()->queries == 1);  // the same connection, reused
}

TEST_CASE("e10: the pool grows when every object is in use up to max_size", "[exercise][e10]") {
  test_e10::Clock clock;
  memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 3, 10,
                                       test_e10::options(clock));
  std::vector<memlens::Lease<Connection>> leases;
  for (int i = 0; i < 10; ++i) leases.push_back(pool.acquire());
  CHECK(pool.stats().size == 10);
  CHECK(pool.stats().created == 10);
  CHECK_FALSE(pool.try_acquire());
  CHECK_THROWS_AS(pool.acquire(1ms), memlens::TimeoutError);
}

TEST_CASE("e10: the pool shrinks back to min_size when objects stay idle", "[exercise][e10]") {
  test_e10::Clock clock;
  memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 3, 10,
                                       test_e10::options(clock));
  {
    std::vector<memlens::Lease<Connection>> leases;
    for (int i = 0; i < 8; ++i) leases.push_back(pool.acquire());
  }
  CHECK(pool.shrink() == 0);  // idle from now
  clock.seconds += 60;
  CHECK(pool.shrink() == 5);
  CHECK(pool.stats().size == 3);
  CHECK(Connection::open == 3);
}

TEST_CASE("e10: a connection that fails its health check is replaced", "[exercise][e10]") {
  test_e10::Clock clock;
  memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 1, 10,
                                       test_e10::options(clock));
  Connection* dropped = nullptr;
  {
    auto conn = pool.acquire();
    dropped = conn.get();
    conn->connected = false;  // the server closed it while it sat in the pool
  }
  CHECK_FALSE(pool.health_check(*dropped));
  auto conn = pool.acquire();
  CHECK(conn->connected);
  CHECK(pool.stats().failed_health_checks == 1);
  CHECK(pool.stats().size == 1);
}

TEST_CASE("e10: threads share the pool without sharing a connection", "[exercise][e10][threads]") {
  test_e10::Clock clock;
  memlens::ObjectPool<Connection> pool([] { return std::make_unique<Connection>(); }, 3, 10,
                                       test_e10::options(clock));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto conn = pool.acquire();
        conn->query();  // a data race here if two threads held one connection (TSan)
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto stats = pool.stats();
  CHECK(stats.acquires == 8000);
  CHECK(stats.in_use == 0);
  CHECK(stats.size <= 10);
}
