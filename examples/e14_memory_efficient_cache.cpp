// Seed exercise 14: a cache bounded by the memory its entries really occupy, under each eviction
// policy, with weak values, persistence and single-flight loading.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memlens/memlens.hpp>
#include <memlens/tools/advanced_cache.hpp>
#include <string>
#include <vector>

namespace {

using memlens::AdvancedCache;
using memlens::EvictionPolicy;

std::string repeated(const std::string& s, int times) {
  std::string out;
  out.reserve(s.size() * static_cast<std::size_t>(times));
  for (int i = 0; i < times; ++i) out += s;
  return out;
}

const char* name(EvictionPolicy policy) {
  switch (policy) {
    case EvictionPolicy::LRU: return "LRU";
    case EvictionPolicy::LFU: return "LFU";
    case EvictionPolicy::FIFO: return "FIFO";
    case EvictionPolicy::TinyLFU: return "TinyLFU";
  }
  return "?";
}

}  // namespace

int main() {
  fmt::print("The seed's loop: 10,000 entries of f'value{{i}}' * 100, in a cache of 1 MiB\n");
  fmt::print("(the seed's 50 MiB would hold all of them; 1 MiB makes it evict):\n\n");
  fmt::print("  {:<8} {:>8} {:>10} {:>12} {:>14} {:>9}\n", "policy", "entries", "evictions",
             "memory", "evicted bytes", "key0 kept");
  for (auto policy : {EvictionPolicy::LRU, EvictionPolicy::LFU, EvictionPolicy::FIFO,
                      EvictionPolicy::TinyLFU}) {
    AdvancedCache<std::string, std::string> cache(1, policy);
    for (int i = 0; i < 10000; ++i) {
      if (i % 10 == 0) cache.get("key0");  // one key the program keeps asking for
      cache.set("key" + std::to_string(i), repeated("value" + std::to_string(i), 100));
    }
    const auto stats = cache.stats();
    fmt::print("  {:<8} {:>8} {:>10} {:>12} {:>14} {:>9}\n", name(policy), stats.entries,
               stats.evictions, stats.memory_bytes, stats.evicted_bytes,
               cache.get("key0") ? "yes" : "no");
  }
  fmt::print("\n  The limit is {} bytes; an entry costs what deep_sizeof finds in its key and value\n"
             "  plus the cache's own bytes for it. key0, read after every tenth set, stays under\n"
             "  every policy but FIFO, which evicts by age alone.\n",
             1 << 20);

  fmt::print("\nWeak values (use_weak_refs = true): entries go when their last owner drops them.\n");
  {
    AdvancedCache<std::string, memlens::Ref<std::string>> cache(50, EvictionPolicy::LRU, true);
    auto kept = memlens::make<std::string>(repeated("kept", 100));
    cache.set("kept", kept);
    cache.set("dropped", memlens::make<std::string>(repeated("dropped", 100)));
    fmt::print("  memory_usage = {} bytes (keys and the cache's own bytes: values are not its)\n",
               cache.current_memory_usage());
    fmt::print("  get(\"kept\")    -> {}\n", cache.get("kept") ? "found" : "gone");
    fmt::print("  get(\"dropped\") -> {}\n", cache.get("dropped") ? "found" : "gone");
    const auto stats = cache.stats();
    fmt::print("  stats: hits {}, misses {}, collected {}\n", stats.hits, stats.misses,
               stats.collected);
  }

  fmt::print("\nPersistence: save_to_disk, then load_from_disk into a new cache.\n");
  const auto path = std::filesystem::temp_directory_path() / "memlens_e14_example.bin";
  {
    AdvancedCache<std::string, std::vector<int>> cache(10);
    cache.set("primes", {2, 3, 5, 7, 11});
    cache.set("session", {42}, std::chrono::hours(1));  // its deadline is saved as a wall time
    cache.save_to_disk(path);
    fmt::print("  saved {} entries to {} ({} bytes)\n", cache.size(), path.string(),
               std::filesystem::file_size(path));
  }
  {
    AdvancedCache<std::string, std::vector<int>> cache(10);
    cache.load_from_disk(path);
    const auto primes = cache.get("primes");
    fmt::print("  loaded {} entries; primes has {} numbers, the last {}\n", cache.size(),
               primes ? primes->size() : 0, primes ? primes->back() : 0);
  }
  std::filesystem::remove(path);

  fmt::print("\nget_or_set: a miss calls the factory once; the next call is a hit.\n");
  {
    AdvancedCache<int, std::string> cache(1);
    int calls = 0;
    auto load = [&] {
      ++calls;
      return std::string("expensive result");
    };
    cache.get_or_set(7, load);
    cache.get_or_set(7, load);
    const auto stats = cache.stats();
    fmt::print("  factory calls {}, hits {}, misses {}, hit rate {:.0f}%\n", calls, stats.hits,
               stats.misses, 100 * stats.hit_rate());
  }
  return 0;
}
