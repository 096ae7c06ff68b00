// Seed exercise 10: an object pool of connections that grows when every connection is out,
// shrinks when they sit idle, replaces a connection that fails its health check, and reports a
// lease nobody gave back with the line that took it. Idle time runs on a clock the program
// moves itself, so the example runs at once.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <memlens/memlens.hpp>
#include <memlens/tools/object_pool.hpp>
#include <vector>

namespace {

struct Connection {
  explicit Connection(int n) : id(n) { fmt::print("    (connection {} opened)\n", id); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { fmt::print("    (connection {} closed)\n", id); }
  int id;
  bool connected = true;
};

void show(const memlens::ObjectPool<Connection>& pool) {
  const auto s = pool.stats();
  fmt::print("  stats: size={} idle={} in_use={} created={} destroyed={} acquires={} "
             "failed_health_checks={}\n",
             s.size, s.idle, s.in_use, s.created, s.destroyed, s.acquires, s.failed_health_checks);
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  std::atomic<std::int64_t> seconds{0};
  int opened = 0;
  memlens::PoolOptions<Connection> options;
  options.health_check = [](const Connection& c) { return c.connected; };
  options.idle_timeout = 60s;
  options.leak_threshold = 30s;
  options.clock = [&] { return memlens::PoolClock::time_point(std::chrono::seconds(seconds.load())); };
  options.leak_sink = [](const memlens::LeaseLeak& leak) {
    fmt::print("  leak report: held {} ms, acquired at {}:{}\n", leak.held.count(),
               leak.acquired_at.empty() ? "?" : leak.acquired_at.front().filename,
               leak.acquired_at.empty() ? 0 : leak.acquired_at.front().lineno);
  };

  fmt::print("pool = ObjectPool(factory, min_size=3, max_size=10)\n");
  memlens::ObjectPool<Connection> pool([&] { return std::make_unique<Connection>(opened++); }, 3,
                                       10, options);
  show(pool);

  fmt::print("\nconn = pool.acquire(); use it; pool.release(conn)\n");
  auto conn = pool.acquire();
  fmt::print("  using connection {}\n", conn->id);
  pool.release(std::move(conn));
  show(pool);

  fmt::print("\nA burst: 6 connections out at once (the pool grows)\n");
  {
    std::vector<memlens::Lease<Connection>> burst;
    for (int i = 0; i < 6; ++i) burst.push_back(pool.acquire());
    show(pool);
  }
  fmt::print("  all 6 back\n");

  fmt::print("\nA minute idle: shrink() closes what is beyond min_size\n");
  pool.shrink();  // notes them idle
  seconds += 60;
  fmt::print("  shrink() -> {} closed\n", pool.shrink());
  show(pool);

  fmt::print("\nA connection drops while idle: the health check replaces it on acquire\n");
  int dropped = -1;
  {
    auto c = pool.acquire();
    dropped = c->id;
    c->connected = false;
  }
  auto fresh = pool.acquire();
  fmt::print("  connection {} failed its check; got connection {}\n", dropped, fresh->id);
  show(pool);

  fmt::print("\nA lease held for 45 s (leak_threshold 30 s): maintain() reports it once\n");
  seconds += 45;
  pool.maintain();
  pool.maintain();
  fresh = memlens::Lease<Connection>();
  show(pool);
  fmt::print("\nThe pool goes out of scope: its connections close\n");
}
