// AdvancedCache: the policies' orders across shards, the memory limit as an invariant checked
// against the tracer, TTLs with a manual clock, weak values, single-flight loading, threads.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memlens/memlens.hpp>
#include <memlens/testing.hpp>
#include <memlens/tools/advanced_cache.hpp>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace test_advanced_cache {

using memlens::AdvancedCache;
using memlens::CacheOptions;
using memlens::EvictionPolicy;
using namespace std::chrono_literals;

// Values of 20,000 characters: an entry costs about 20 KB, so 0.065 MiB (68,157 bytes) holds
// three of them whatever the cache's own bytes, and never four.
const std::string big(std::size_t fill = 20000, char c = 'x') { return std::string(fill, c); }
constexpr double three_entries_mb = 0.065;

bool has(AdvancedCache<std::string, std::string>& cache, const std::string& key) {
  return cache.get(key).has_value();
}

struct ManualClock {
  std::chrono::steady_clock::time_point now{};
  std::function<std::chrono::steady_clock::time_point()> function() {
    return [this] { return now; };
  }
};

struct Payload : memlens::Object {
  std::vector<int> data = std::vector<int>(10000);
  void memlens_sizeof(memlens::sys::SizeVisitor& size) const { size(data); }
};

// Reports its own death: how a test sees that the cache let go of a value.
struct Sentinel : memlens::Object {
  std::mutex* mutex;
  std::condition_variable* died;
  bool* dead;
  Sentinel(std::mutex* m, std::condition_variable* c, bool* d) : mutex(m), died(c), dead(d) {}
  void memlens_sizeof(memlens::sys::SizeVisitor&) const {}
  ~Sentinel() override {
    {
      std::lock_guard lock(*mutex);
      *dead = true;
    }
    died->notify_all();
  }
};

}  // namespace test_advanced_cache

using namespace test_advanced_cache;

TEST_CASE("AdvancedCache: LRU evicts the least recently used across shards", "[tools][cache]") {
  AdvancedCache<std::string, std::string> cache(three_entries_mb, EvictionPolicy::LRU);
  cache.set("a", big());
  cache.set("b", big());
  cache.set("c", big());
  REQUIRE(cache.get("a"));  // a is now more recent than b and c
  cache.set("d", big());
  CHECK_FALSE(has(cache, "b"));
  CHECK(has(cache, "a"));
  CHECK(has(cache, "c"));
  CHECK(has(cache, "d"));
  CHECK(cache.stats().evictions == 1);
  CHECK(cache.current_memory_usage() <= cache.max_memory_bytes());
}

TEST_CASE("AdvancedCache: FIFO evicts the oldest set whatever was read", "[tools][cache]") {
  AdvancedCache<std::string, std::string> cache(three_entries_mb, EvictionPolicy::FIFO);
  cache.set("a", big());
  cache.set("b", big());
  cache.set("c", big());
  REQUIRE(cache.get("a"));
  cache.set("d", big());
  CHECK_FALSE(has(cache, "a"));
  CHECK(has(cache, "b"));
  CHECK(has(cache, "d"));
}

TEST_CASE("AdvancedCache: LFU evicts the least frequently used", "[tools][cache]") {
  AdvancedCache<std::string, std::string> cache(three_entries_mb, EvictionPolicy::LFU);
  cache.set("a", big());
  cache.set("b", big());
  cache.set("c", big());
  for (int i = 0; i < 3; ++i) REQUIRE(cache.get("a"));
  REQUIRE(cache.get("b"));
  for (int i = 0; i < 2; ++i) REQUIRE(cache.get("c"));
  cache.set("d", big());  // b has the fewest uses (2, with its set)
  CHECK_FALSE(has(cache, "b"));
  CHECK(has(cache, "a"));
  CHECK(has(cache, "c"));
  CHECK(has(cache, "d"));
}

TEST_CASE("AdvancedCache: LFU breaks ties by recency", "[tools][cache]") {
  AdvancedCache<std::string, std::string> cache(three_entries_mb, EvictionPolicy::LFU);
  cache.set("a", big());
  cache.set("b", big());
  cache.set("c", big());
  REQUIRE(cache.get("a"));
  REQUIRE(cache.get("b"));
  REQUIRE(cache.get("c"));  // all used twice: a is the least recent
  cache.set("d", big());
  CHECK_FALSE(has(cache, "a"));
  CHECK(has(cache, "b"));
}

TEST_CASE("AdvancedCache: the entry being set is never the one evicted", "[tools][cache]") {
  for (auto policy : {EvictionPolicy::LRU, EvictionPolicy::LFU, EvictionPolicy::FIFO,
                      EvictionPolicy::TinyLFU}) {
    AdvancedCache<std::string, std::string> cache(three_entries_mb, policy);
    cache.set("a", big());
    cache.set("b", big());
    cache.set("c", big());
    // Replacing a by a value twice as large makes room from the others, never from a itself.
    cache.set("a", big(40000));
    CAPTURE(static_cast<int>(policy));
    CHECK(cache.get("a") == big(40000));
    CHECK(cache.size() == 2);
    CHECK(cache.current_memory_usage() <= cache.max_memory_bytes());
  }
}

TEST_CASE("AdvancedCache: a replacement that fits evicts nothing", "[tools][cache]") {
  AdvancedCache<std::string, std::string> cache(three_entries_mb);
  cache.set("a", big());
  cache.set("b", big());
  cache.set("c", big());
  cache.set("b", big(20000, 'y'));  // the same size: its old bytes make the room
  CHECK(cache.size() == 3);
  CHECK(cache.stats().evictions == 0);
}

TEST_CASE("AdvancedCache: a replaced key is recent when room is made for it", "[tools][cache]") {
  // With two shards, a and c often share one while b is in the other: the eviction must still
  // take b, the least recent once a is set again, whichever shard holds what.
  for (auto policy : {EvictionPolicy::LRU, EvictionPolicy::LFU, EvictionPolicy::FIFO}) {
    for (int trial = 0; trial < 24; ++trial) {
      CacheOptions options;
      options.max_memory_mb = three_entries_mb;
      options.policy = policy;
      options.shards = 2;
      AdvancedCache<std::string, std::string> cache(options);
      const std::string t = std::to_string(trial);
      cache.set("a" + t, big());
      cache.set("b" + t, big());
      cache.set("c" + t, big());
      cache.set("a" + t, big(28000));
      CAPTURE(static_cast<int>(policy), trial);
      CHECK_FALSE(cache.get("b" + t));
      CHECK(cache.get("c" + t));
      CHECK(cache.get("a" + t));
    }
  }
}

TEST_CASE("AdvancedCache: a ttl beyond the clock's range never expires", "[tools][cache]") {
  AdvancedCache<int, int> cache;
  cache.set(1, 1, std::chrono::steady_clock::duration::max());
  CHECK(cache.get(1) == 1);
}

TEST_CASE("AdvancedCache: TinyLFU keeps a popular set through a scan", "[tools][cache]") {
  // 200 entries of ~1 KB fit; 50 popular keys are read often, then 5,000 keys pass once.
  auto run = [](EvictionPolicy policy) {
    AdvancedCache<int, std::string> cache(0.2, policy);
    for (int round = 0; round < 20; ++round) {
      for (int k = 0; k < 50; ++k) {
        if (!cache.get(k)) cache.set(k, big(1000));
      }
    }
    for (int k = 1000; k < 6000; ++k) {
      if (!cache.get(k)) cache.set(k, big(1000));
    }
    int kept = 0;
    for (int k = 0; k < 50; ++k) kept += cache.get(k) ? 1 : 0;
    return kept;
  };
  CHECK(run(EvictionPolicy::LRU) == 0);
  CHECK(run(EvictionPolicy::TinyLFU) >= 40);
}

TEST_CASE("AdvancedCache: the limit holds after every call under every policy",
          "[tools][cache]") {
  for (auto policy : {EvictionPolicy::LRU, EvictionPolicy::LFU, EvictionPolicy::FIFO,
                      EvictionPolicy::TinyLFU}) {
    CAPTURE(static_cast<int>(policy));
    AdvancedCache<int, std::string> cache(0.05, policy);
    std::mt19937 random(42);
    std::uniform_int_distribution<int> key(0, 300), size(0, 3000), op(0, 9);
    std::size_t over = 0;
    for (int i = 0; i < 20000; ++i) {
      const int k = key(random);
      switch (op(random)) {
        case 0:
          cache.erase(k);
          break;
        case 1:
        case 2:
        case 3:
          cache.get(k);
          break;
        default:
          cache.set(k, std::string(static_cast<std::size_t>(size(random)), 'v'));
      }
      if (cache.current_memory_usage() > cache.max_memory_bytes()) ++over;
    }
    CHECK(over == 0);
    const auto stats = cache.stats();
    CHECK(stats.evictions > 0);
    CHECK(stats.entries == cache.size());
    cache.clear();
    CHECK(cache.current_memory_usage() == 0);
    CHECK(cache.size() == 0);
  }
}

TEST_CASE("AdvancedCache: usage is what the tracer sees the cache holding", "[tools][cache]") {
  for (auto policy : {EvictionPolicy::LRU, EvictionPolicy::LFU, EvictionPolicy::TinyLFU}) {
    CAPTURE(static_cast<int>(policy));
    test_tracemalloc_common::Tracing tracing;
    AdvancedCache<std::string, std::string> cache(2, policy);
    std::mt19937 random(7);
    std::uniform_int_distribution<std::size_t> size(20, 2000);
    std::vector<std::pair<std::string, std::string>> entries;
    for (int i = 0; i < 3000; ++i) {
      entries.emplace_back("key" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 40), 'k'),
                           std::string(size(random), 'v'));
    }
    const std::size_t before = memlens::tracemalloc::get_traced_memory().current;
    for (int i = 0; i < 3000; ++i) {
      cache.set(entries[static_cast<std::size_t>(i)].first,
                entries[static_cast<std::size_t>(i)].second, i % 3 == 0 ? std::optional(1h) : std::nullopt);
      cache.get(entries[static_cast<std::size_t>(i / 2)].first);
    }
    const std::size_t held = memlens::tracemalloc::get_traced_memory().current - before;
    const std::size_t usage = cache.current_memory_usage();
    CHECK(cache.stats().evictions > 0);  // a full cache: the accounting after evictions too
    CHECK(static_cast<double>(usage) >= 0.99 * static_cast<double>(held));
    CHECK(static_cast<double>(usage) <= 1.01 * static_cast<double>(held));
  }
}

TEST_CASE("AdvancedCache: a value larger than the whole limit is refused", "[tools][cache]") {
  AdvancedCache<std::string, std::string> cache(0.01);
  cache.set("small", "value");
  const auto usage = cache.current_memory_usage();
  REQUIRE_THROWS_AS(cache.set("huge", big(20000)), memlens::ValueError);
  REQUIRE_THROWS_WITH(cache.set("huge", big(20000)), memlens_test::contains("larger than the whole limit"));
  CHECK(cache.current_memory_usage() == usage);
  CHECK(cache.get("small") == std::string("value"));
  CHECK_FALSE(cache.get("huge"));
  CHECK(cache.stats().rejected == 2);
}

TEST_CASE("AdvancedCache: bad arguments throw ValueError", "[tools][cache]") {
  CHECK_THROWS_AS((AdvancedCache<int, int>(0)), memlens::ValueError);
  CHECK_THROWS_AS((AdvancedCache<int, int>(-1)), memlens::ValueError);
  CHECK_THROWS_WITH((AdvancedCache<int, std::string>(1, EvictionPolicy::LRU, true)),
                    memlens_test::contains("use_weak_refs"));
  CacheOptions options;
  options.shards = 3;
  CHECK_THROWS_AS((AdvancedCache<int, int>(options)), memlens::ValueError);
  AdvancedCache<int, int> cache;
  CHECK_THROWS_AS(cache.set(1, 1, 0s), memlens::ValueError);
  CHECK_THROWS_AS(cache.set(1, 1, -1s), memlens::ValueError);
  CHECK(cache.size() == 0);
}

TEST_CASE("AdvancedCache: an entry expires at exactly its deadline", "[tools][cache]") {
  ManualClock clock;
  CacheOptions options;
  options.clock = clock.function();
  AdvancedCache<std::string, std::string> cache(options);
  cache.set("short", "s", 10s);
  cache.set("long", "l", 60s);
  cache.set("forever", "f");
  clock.now += 9s;
  CHECK(cache.get("short") == std::string("s"));
  clock.now += 1s;
  CHECK_FALSE(cache.get("short"));
  CHECK(cache.get("long") == std::string("l"));
  clock.now += 1h;
  CHECK_FALSE(cache.get("long"));
  CHECK(cache.get("forever") == std::string("f"));
  const auto stats = cache.stats();
  CHECK(stats.expirations == 2);
  CHECK(stats.entries == 1);
}

TEST_CASE("AdvancedCache: expired entries give their memory back on any call", "[tools][cache]") {
  ManualClock clock;
  CacheOptions options;
  options.clock = clock.function();
  AdvancedCache<std::string, std::string> cache(options);
  cache.set("a", big(), 5s);
  cache.set("b", "small");
  const auto full = cache.current_memory_usage();
  clock.now += 5s;
  // No write, no get of "a": reading the usage is enough.
  const auto after = cache.current_memory_usage();
  CHECK(after + 20000 < full);
  CHECK(cache.stats().expirations == 1);
  CHECK(cache.stats().expired_bytes >= 20000);
}

TEST_CASE("AdvancedCache: the sweeper frees expired values with no call at all",
          "[tools][cache][threads]") {
  std::mutex mutex;
  std::condition_variable died;
  bool dead = false;
  std::atomic<std::int64_t> offset{0};
  CacheOptions options;
  options.clock = [&] { return std::chrono::steady_clock::time_point{} + std::chrono::seconds(offset.load()); };
  options.sweep_interval = 1ms;
  AdvancedCache<int, memlens::Ref<Sentinel>> cache(options);
  cache.set(1, memlens::make<Sentinel>(&mutex, &died, &dead), 10s);
  offset = 10;
  std::unique_lock lock(mutex);
  CHECK(died.wait_for(lock, 30s, [&] { return dead; }));
}

TEST_CASE("AdvancedCache: weak values vanish with their last owner", "[tools][cache]") {
  AdvancedCache<std::string, memlens::Ref<Payload>> cache(1, EvictionPolicy::LRU, true);
  auto owner = memlens::make<Payload>();
  cache.set("p", owner);
  // The value is not the cache's memory: only the key and the cache's own bytes count.
  CHECK(cache.current_memory_usage() < 1000);
  CHECK(memlens::sys::getrefcount(owner) == 1);
  REQUIRE(cache.get("p"));
  CHECK(memlens::is(*cache.get("p"), owner));
  owner.reset();
  CHECK_FALSE(cache.get("p"));
  CHECK(cache.stats().collected == 1);
  CHECK(cache.size() == 0);
  CHECK(cache.current_memory_usage() == 0);
}

TEST_CASE("AdvancedCache: strong Ref values keep their objects", "[tools][cache]") {
  AdvancedCache<std::string, memlens::Ref<Payload>> cache(1);
  auto owner = memlens::make<Payload>();
  cache.set("p", owner);
  CHECK(cache.current_memory_usage() > 40000);  // the vector of 10,000 ints counts
  owner.reset();
  CHECK(cache.get("p"));
}

TEST_CASE("AdvancedCache: a factory that asks for its own key gets an error",
          "[tools][cache]") {
  AdvancedCache<int, int> cache;
  auto recurse = [&] { return cache.get_or_set(1, [] { return 2; }); };
  CHECK_THROWS_WITH(cache.get_or_set(1, recurse), memlens_test::contains("same key"));
  CHECK_FALSE(cache.get(1));
  CHECK(cache.get_or_set(1, [] { return 3; }) == 3);
  CHECK(cache.get(1) == 3);
}

TEST_CASE("AdvancedCache: a factory that throws sets nothing", "[tools][cache]") {
  AdvancedCache<int, int> cache;
  CHECK_THROWS_AS(cache.get_or_set(1, []() -> int { throw std::runtime_error("no"); }),
                  std::runtime_error);
  CHECK_FALSE(cache.get(1));
  CHECK(cache.get_or_set(1, [] { return 5; }) == 5);
}

TEST_CASE("AdvancedCache: 1000 concurrent misses call the factory once",
          "[tools][cache][threads]") {
  AdvancedCache<std::string, std::string> cache;
  constexpr int threads = 1000;
  std::atomic<int> calls{0};
  std::vector<std::string> results(threads);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      results[static_cast<std::size_t>(t)] = cache.get_or_set("key", [&] {
        ++calls;
        // Every other thread has missed and is waiting (each counts its miss under the lock
        // it then waits on): they all get this one value.
        while (cache.stats().misses < threads) std::this_thread::yield();
        return std::string("loaded");
      });
    });
  }
  for (auto& thread : pool) thread.join();
  CHECK(calls == 1);
  for (const auto& r : results) CHECK(r == "loaded");
  const auto stats = cache.stats();
  CHECK(stats.misses == 1);
  CHECK(stats.hits == threads - 1);
}

TEST_CASE("AdvancedCache: waiters get the factory's exception", "[tools][cache][threads]") {
  AdvancedCache<int, int> cache;
  std::atomic<int> calls{0};
  auto factory = [&]() -> int {
    ++calls;
    while (cache.stats().misses < 2) std::this_thread::yield();
    throw std::runtime_error("load failed");
  };
  std::atomic<int> failures{0};
  auto call = [&] {
    try {
      cache.get_or_set(7, factory);
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()) == "load failed") ++failures;
    }
  };
  std::thread first(call), second(call);
  first.join();
  second.join();
  CHECK(calls == 1);
  CHECK(failures == 2);
  CHECK_FALSE(cache.get(7));
}

TEST_CASE("AdvancedCache: mixed operations from four threads", "[tools][cache][threads]") {
  for (auto policy : {EvictionPolicy::LRU, EvictionPolicy::LFU, EvictionPolicy::TinyLFU}) {
    AdvancedCache<int, std::string> cache(0.05, policy);
    std::vector<std::thread> threads;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 random(static_cast<unsigned>(t));
        std::uniform_int_distribution<int> key(0, 200), op(0, 9);
        for (int i = 0; i < 5000; ++i) {
          const int k = key(random);
          const std::string value(static_cast<std::size_t>(k) * 5, static_cast<char>('a' + k % 26));
          switch (op(random)) {
            case 0:
              cache.erase(k);
              break;
            case 1:
              if (cache.get_or_set(k, [&] { return value; }) != value) ++wrong;
              break;
            case 2:
              cache.stats();
              break;
            case 3:
            case 4:
            case 5:
              if (auto v = cache.get(k); v && *v != value) ++wrong;
              break;
            default:
              cache.set(k, value);
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
    CAPTURE(static_cast<int>(policy));
    CHECK(wrong == 0);
    CHECK(cache.current_memory_usage() <= cache.max_memory_bytes());
    CHECK(cache.stats().entries == cache.size());
    cache.clear();
    CHECK(cache.current_memory_usage() == 0);
  }
}

TEST_CASE("AdvancedCache: a filled and emptied cache leaks nothing", "[tools][cache]") {
  REQUIRE_THAT(([] {
                 AdvancedCache<std::string, memlens::Ref<Payload>> cache(0.5, EvictionPolicy::TinyLFU);
                 for (int i = 0; i < 200; ++i) cache.set(std::to_string(i), memlens::make<Payload>());
                 cache.get_or_set("x", [] { return memlens::make<Payload>(); });
               }),
               memlens::testing::NoLeaks());
}

namespace test_advanced_cache {

std::filesystem::path temp_file(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("memlens_cache_" + std::to_string(::getpid()) + "_" + name);
}

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_all(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace test_advanced_cache

TEST_CASE("AdvancedCache: saved values TTLs and LFU counts come back", "[tools][cache]") {
  const auto path = temp_file("roundtrip.bin");
  using Value = std::pair<std::vector<int>, std::optional<memlens::Ref<std::string>>>;
  {
    AdvancedCache<std::string, Value> cache(1, EvictionPolicy::LFU);
    auto shared = memlens::make<std::string>("shared");
    cache.set("often", Value{{1, 2, 3}, shared}, 1h);
    cache.set("once", Value{{4}, std::nullopt});
    for (int i = 0; i < 5; ++i) cache.get("often");
    cache.save_to_disk(path);
  }
  AdvancedCache<std::string, Value> cache(three_entries_mb, EvictionPolicy::LFU);
  cache.load_from_disk(path);
  REQUIRE(cache.size() == 2);
  const auto often = cache.get("often");
  REQUIRE(often);
  CHECK(often->first == std::vector<int>{1, 2, 3});
  REQUIRE(often->second);
  CHECK(**often->second == "shared");
  CHECK_FALSE(cache.get("once")->second);
  // "often" kept its count: two 20 KB newcomers evict "once" (count 2 now), never "often".
  cache.set("x", Value{std::vector<int>(5000), std::nullopt});
  cache.set("y", Value{std::vector<int>(5000), std::nullopt});
  cache.set("z", Value{std::vector<int>(5000), std::nullopt});
  CHECK(cache.get("often"));
  std::filesystem::remove(path);
}

TEST_CASE("AdvancedCache: an expired saved entry is not loaded", "[tools][cache]") {
  const auto path = temp_file("expired.bin");
  ManualClock clock;
  CacheOptions options;
  options.clock = clock.function();
  {
    AdvancedCache<std::string, std::string> cache(options);
    // Deadlines are saved as wall-clock times: an entry with 1 ns left is past by load time.
    cache.set("brief", "b", 1ns);
    cache.set("lasting", "l", 1h);
    cache.save_to_disk(path);
  }
  AdvancedCache<std::string, std::string> cache;
  cache.load_from_disk(path);
  CHECK_FALSE(cache.get("brief"));
  CHECK(cache.get("lasting") == std::string("l"));
  std::filesystem::remove(path);
}

TEST_CASE("AdvancedCache: every damaged file throws and leaves the cache as it was",
          "[tools][cache]") {
  const auto path = temp_file("damaged.bin");
  {
    AdvancedCache<std::string, std::vector<int>> source;
    source.set("a", {1, 2, 3});
    source.set("b", {4, 5}, 1h);
    source.save_to_disk(path);
  }
  const std::string good = read_all(path);
  AdvancedCache<std::string, std::vector<int>> cache;
  cache.set("kept", {7});
  const auto usage = cache.current_memory_usage();
  auto unchanged = [&] {
    return cache.size() == 1 && cache.get("kept") == std::vector<int>{7} &&
           cache.current_memory_usage() == usage;
  };
  for (std::size_t n = 0; n < good.size(); ++n) {
    write_all(path, good.substr(0, n));
    CAPTURE(n);
    CHECK_THROWS_AS(cache.load_from_disk(path), memlens::Error);
    CHECK(unchanged());
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    write_all(path, bad);
    CAPTURE(i);
    CHECK_THROWS_AS(cache.load_from_disk(path), memlens::Error);
    CHECK(unchanged());
  }
  // A valid file of another format version.
  memlens::serial::write_file(path, "memlensC", 2, good.substr(memlens::serial::header_size),
                              "test");
  CHECK_THROWS_WITH(cache.load_from_disk(path), memlens_test::contains("version 2"));
  // A valid file whose entry does not fit this cache.
  {
    AdvancedCache<std::string, std::vector<int>> big;
    big.set("huge", std::vector<int>(100000));
    big.save_to_disk(path);
  }
  AdvancedCache<std::string, std::vector<int>> small(0.1);
  small.set("kept", {7});
  CHECK_THROWS_WITH(small.load_from_disk(path), memlens_test::contains("larger than"));
  CHECK(small.size() == 1);
  CHECK_THROWS_AS(cache.load_from_disk(temp_file("missing.bin")), memlens::Error);
  CHECK(unchanged());
  std::filesystem::remove(path);
}
