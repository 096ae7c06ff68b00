// Seed exercise 6: a weak cache whose entries also expire. An entry goes when its time to live
// is over or when its object dies, whichever comes first, and the cache counts which it was.
// The time comes from a clock the program moves itself, so the example runs at once.
#include <fmt/format.h>

#include <chrono>
#include <memlens/memlens.hpp>
#include <memlens/tools/ttl_weak_cache.hpp>
#include <string>
#include <utility>

namespace {

struct SomeObject : memlens::Object {
  explicit SomeObject(std::string n) : name(std::move(n)) {}
  ~SomeObject() override { fmt::print("    ({} destroyed)\n", name); }
  std::string name;
};

/// Seconds that pass only when the program says so.
struct ManualClock {
  using duration = std::chrono::seconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<ManualClock>;

  const duration* elapsed = nullptr;
  time_point now() const { return time_point(*elapsed); }
};

using Cache = memlens::TTLWeakCache<std::string, SomeObject, ManualClock>;

void show(Cache& cache, const ManualClock::duration& elapsed) {
  fmt::print("  t={:>2}s  size() = {}, keys alive:", elapsed.count(), cache.size());
  for (const char* key : {"key1", "key2", "key3"}) {
    if (cache.contains(key)) fmt::print(" {}", key);
  }
  fmt::print("\n");
}

void get(Cache& cache, const char* key) {
  const memlens::Ref<SomeObject> found = cache.get(key);
  fmt::print("  get(\"{}\") -> {}\n", key, found ? found->name : std::string("None"));
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  ManualClock::duration elapsed{0};
  Cache cache(5s, ManualClock{&elapsed});  // TTLWeakCache(default_ttl=5)

  auto obj = memlens::make<SomeObject>("obj");
  auto short_lived = memlens::make<SomeObject>("short-lived");
  auto other = memlens::make<SomeObject>("other");
  cache.set("key1", obj, 10s);     // cache.set('key1', obj, ttl=10)
  cache.set("key2", short_lived);  // the default ttl: 5 s
  cache.set("key3", other, 20s);
  fmt::print("Three entries: key1 for 10 s, key2 for the default 5 s, key3 for 20 s:\n");
  show(cache, elapsed);
  get(cache, "key1");

  fmt::print("\nThe object of key3 dies long before its time to live is over:\n");
  other.reset();
  show(cache, elapsed);
  get(cache, "key3");

  fmt::print("\n5 s later key2 has expired, although its object is still alive:\n");
  elapsed += 5s;
  get(cache, "key2");
  show(cache, elapsed);
  fmt::print("  short-lived is still alive: {}\n", short_lived->name);

  fmt::print("\nAt 10 s key1 expires too:\n");
  elapsed += 4s;
  get(cache, "key1");
  elapsed += 1s;
  get(cache, "key1");
  show(cache, elapsed);

  const memlens::TTLCacheStats stats = cache.stats();
  fmt::print("\nstats(): hits={}, misses={}, evictions={} (expired={}, collected={})\n", stats.hits,
             stats.misses, stats.evictions, stats.expired, stats.collected);
  return 0;
}
