// Seed exercise 14, a memory-efficient cache: several eviction policies, a memory limit, optional
// weak references, persistence, thread safety, statistics.
//   cache = AdvancedCache(max_memory_mb=50, eviction_policy='LRU', use_weak_refs=True)
//   for i in range(10000): cache.set(f'key{i}', f'value{i}' * 100)
//   # Should evict old items when memory limit reached
//   print(cache.stats())
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memlens/memlens.hpp>
#include <memlens/tools/advanced_cache.hpp>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "memlens_test.hpp"

namespace test_e14 {

using memlens::AdvancedCache;
using memlens::EvictionPolicy;

std::string key(int i) { return "key" + std::to_string(i); }
std::string value(int i) {
  std::string one = "value" + std::to_string(i), out;
  for (int k = 0; k < 100; ++k) out += one;
  return out;
}

// The seed's loop with a limit of 1 MiB, which holds about 960 of its 10,000 entries.
template <class Cache>
std::size_t fill(Cache& cache) {
  std::size_t over = 0;
  for (int i = 0; i < 10000; ++i) {
    cache.set(key(i), value(i));
    if (cache.current_memory_usage() > cache.max_memory_bytes()) ++over;
  }
  return over;
}

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("memlens_e14_" + std::to_string(::getpid()) + "_" + name);
}

}  // namespace test_e14

using namespace test_e14;

TEST_CASE("e14: the seed's scenario evicts old items at the memory limit under every policy",
          "[exercise][e14]") {
  for (auto policy : {EvictionPolicy::LRU, EvictionPolicy::LFU, EvictionPolicy::FIFO,
                      EvictionPolicy::TinyLFU}) {
    CAPTURE(static_cast<int>(policy));
    AdvancedCache<std::string, std::string> cache(1, policy);
    CHECK(fill(cache) == 0);
    const auto stats = cache.stats();
    CHECK(stats.max_memory_bytes == 1048576);
    CHECK(stats.memory_bytes <= stats.max_memory_bytes);
    // The last entries are about 1 KB each: the cache is nearly full, and evicted the rest.
    CHECK(stats.memory_bytes > stats.max_memory_bytes * 9 / 10);
    CHECK(stats.entries > 900);
    CHECK(stats.entries < 2000);
    CHECK(stats.evictions == 10000 - stats.entries);
    CHECK(stats.evicted_bytes > 0);
    CHECK(cache.get(key(9999)) == value(9999));  // the newest stays
    if (policy != EvictionPolicy::TinyLFU) CHECK_FALSE(cache.get(key(0)));  // the oldest went
  }
}

TEST_CASE("e14: an entry costs what its key and value really occupy", "[exercise][e14]") {
  AdvancedCache<std::string, std::string> cache(1);
  cache.set(key(1), value(1));
  const std::size_t one = cache.current_memory_usage();
  // "value1" * 100 is 600 characters in a heap buffer of 601 bytes: the entry costs that, its
  // key and the cache's own bytes, not just the 32 bytes of a std::string.
  CHECK(one > 601);
  CHECK(one < 601 + 400);
  cache.erase(key(1));
  CHECK(cache.current_memory_usage() == 0);
}

TEST_CASE("e14: LRU LFU and FIFO choose different victims", "[exercise][e14]") {
  // Three 20 KB entries fit in 0.065 MiB; the fourth evicts one, chosen by the policy.
  auto victim = [](EvictionPolicy policy) {
    AdvancedCache<std::string, std::string> cache(0.065, policy);
    const std::string big(20000, 'x');
    cache.set("a", big);
    cache.set("b", big);
    cache.set("c", big);
    cache.get("a");
    cache.get("a");
    cache.get("b");
    cache.set("d", big);
    for (const char* k : {"a", "b", "c"}) {
      if (!cache.get(k)) return std::string(k);
    }
    return std::string("none");
  };
  CHECK(victim(EvictionPolicy::LRU) == "c");   // least recently used
  CHECK(victim(EvictionPolicy::LFU) == "c");   // least frequently used (1 use)
  CHECK(victim(EvictionPolicy::FIFO) == "a");  // first in
}

TEST_CASE("e14: weak references let values go with their last owner", "[exercise][e14]") {
  // As the seed's use_weak_refs=True, with values that can be weakly referenced.
  AdvancedCache<std::string, memlens::Ref<std::string>> cache(50, EvictionPolicy::LRU, true);
  std::vector<memlens::Ref<std::string>> owners;
  for (int i = 0; i < 100; ++i) {
    auto v = memlens::make<std::string>(value(i));
    cache.set(key(i), v);
    if (i % 2 == 0) owners.push_back(v);  // the odd ones have no owner but the cache
  }
  int alive = 0;
  for (int i = 0; i < 100; ++i) {
    if (auto v = cache.get(key(i))) {
      ++alive;
      CHECK(**v == value(i));
    }
  }
  CHECK(alive == 50);
  CHECK(cache.stats().collected == 50);
  CHECK(cache.size() == 50);
  // Weakly held values are not the cache's memory: 50 keys, not 50 strings of 600 bytes.
  CHECK(cache.current_memory_usage() < 50 * 200);
  owners.clear();
  CHECK(cache.evict_if_needed() == 50);
  CHECK(cache.size() == 0);
}

TEST_CASE("e14: a strong cache refuses weak references for values that cannot have them",
          "[exercise][e14]") {
  // Python: weakref.ref('a str') raises TypeError; the seed's call with str values would fail.
  CHECK_THROWS_AS((AdvancedCache<std::string, std::string>(50, EvictionPolicy::LRU, true)),
                  memlens::ValueError);
}

TEST_CASE("e14: statistics count hits misses and the hit rate", "[exercise][e14]") {
  AdvancedCache<std::string, std::string> cache(1);
  cache.set("a", "1");
  cache.get("a");
  cache.get("a");
  cache.get("a");
  cache.get("missing");
  const auto stats = cache.stats();
  CHECK(stats.hits == 3);
  CHECK(stats.misses == 1);
  CHECK(stats.hit_rate() == 0.75);
  CHECK(stats.entries == 1);
  CHECK(stats.evictions == 0);
  CHECK(stats.memory_bytes == cache.current_memory_usage());
  cache.clear();
  CHECK(cache.stats().entries == 0);
  CHECK(cache.stats().hits == 3);  // clear() empties the cache, not its history
}

TEST_CASE("e14: save and load keep entries and their order", "[exercise][e14]") {
  const auto path = temp_path("roundtrip.bin");
  {
    AdvancedCache<std::string, std::string> cache(1);
    for (int i = 0; i < 100; ++i) cache.set(key(i), value(i), std::chrono::hours(1));
    cache.get(key(0));  // key0 is now the most recent
    cache.save_to_disk(path);
  }
  // Loaded into a cache with room for about 50: the most recent 50 are kept, key0 among them.
  AdvancedCache<std::string, std::string> small(0.045);
  small.load_from_disk(path);
  CHECK(small.get(key(0)) == value(0));
  CHECK(small.get(key(99)) == value(99));
  CHECK_FALSE(small.get(key(1)));
  CHECK(small.size() > 40);
  CHECK(small.size() < 70);
  std::filesystem::remove(path);
}

TEST_CASE("e14: a corrupt file throws and leaves the cache as it was", "[exercise][e14]") {
  const auto path = temp_path("corrupt.bin");
  {
    AdvancedCache<std::string, std::string> source(1);
    source.set("a", "1");
    source.save_to_disk(path);
  }
  std::string bytes;
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    REQUIRE(f != nullptr);
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) bytes.append(buffer, n);
    std::fclose(f);
  }
  bytes[bytes.size() - 2] = static_cast<char>(bytes[bytes.size() - 2] ^ 0x40);
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  AdvancedCache<std::string, std::string> cache(1);
  cache.set("kept", "yes");
  const auto usage = cache.current_memory_usage();
  CHECK_THROWS_AS(cache.load_from_disk(path), memlens::Error);
  CHECK_THROWS_AS(cache.load_from_disk(temp_path("missing.bin")), memlens::Error);
  CHECK(cache.get("kept") == std::string("yes"));
  CHECK(cache.size() == 1);
  CHECK(cache.current_memory_usage() == usage);
  std::filesystem::remove(path);
}

TEST_CASE("e14: thread-safe under the seed's load from two threads", "[exercise][e14][threads]") {
  AdvancedCache<std::string, std::string> cache(1);
  std::atomic<int> wrong{0};
  auto work = [&](int first) {
    for (int i = first; i < 10000; i += 2) {
      cache.set(key(i), value(i));
      if (auto v = cache.get(key(i / 2)); v && *v != value(i / 2)) ++wrong;
    }
  };
  std::thread even(work, 0), odd(work, 1);
  even.join();
  odd.join();
  CHECK(wrong == 0);
  const auto stats = cache.stats();
  CHECK(stats.memory_bytes <= stats.max_memory_bytes);
  CHECK(stats.evictions + stats.entries == 10000);
}
