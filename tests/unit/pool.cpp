// Tests of memlens/detail/pool.hpp, the small-object allocator behind make().
#include <memlens/detail/pool.hpp>

#include <memlens/object.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "memlens_test.hpp"

namespace test_pool {
namespace pool = memlens::detail::pool;

inline std::size_t live_arenas() {
  std::size_t n = 0;
  for (auto* a = pool::state.arenas; a; a = a->next) ++n;
  return n;
}

struct Block {
  void* p;
  std::size_t size;
  unsigned char fill;
};
}  // namespace test_pool

using namespace test_pool;

TEST_CASE("pool blocks are aligned and disjoint and keep their contents", "[pool]") {
  if (!pool::enabled) {
    WARN("the pool is disabled in this build (sanitizer or MEMLENS_NO_POOL)");
    return;
  }
  std::mt19937 rng(7);
  std::vector<Block> live;
  for (int round = 0; round < 200'000; ++round) {
    if (live.empty() || rng() % 3 != 0) {
      const std::size_t size = 1 + rng() % pool::max_block;
      void* p = pool::allocate(size);
      REQUIRE(reinterpret_cast<std::uintptr_t>(p) % pool::granularity == 0);
      const auto fill = static_cast<unsigned char>(rng());
      std::memset(p, fill, size);
      live.push_back({p, size, fill});
    } else {
      const std::size_t i = rng() % live.size();
      const Block b = live[i];
      const auto* bytes = static_cast<const unsigned char*>(b.p);
      bool intact = true;
      for (std::size_t k = 0; k < b.size; ++k) intact = intact && bytes[k] == b.fill;
      REQUIRE(intact);  // no other block overlapped it
      pool::deallocate(b.p);
      live[i] = live.back();
      live.pop_back();
    }
  }
  for (const auto& b : live) pool::deallocate(b.p);
}

TEST_CASE("pool pages and arenas go back when their blocks do", "[pool]") {
  if (!pool::enabled) {
    WARN("the pool is disabled in this build (sanitizer or MEMLENS_NO_POOL)");
    return;
  }
  const std::size_t before = live_arenas();
  std::vector<void*> blocks;
  for (int i = 0; i < 100'000; ++i) blocks.push_back(pool::allocate(80));  // ~8 MB: many arenas
  CHECK(live_arenas() <= before + 1);  // full arenas leave the list of arenas with free pages
  for (void* p : blocks) pool::deallocate(p);
  CHECK(live_arenas() <= before + 1);  // at most the arena the class still uses
}

TEST_CASE("make uses the pool for small objects and operator new for the rest", "[pool]") {
  struct Small : memlens::Object {
    int x = 1;
  };
  struct Large : memlens::Object {
    char bytes[1024] = {};
  };
  struct alignas(64) Aligned : memlens::Object {};
  using memlens::detail::Access;
  using memlens::detail::flag::pooled;
  auto small = memlens::make<Small>();
  auto large = memlens::make<Large>();
  auto aligned = memlens::make<Aligned>();
  CHECK(static_cast<bool>(Access::flags(small.object()) & pooled) == pool::enabled);
  CHECK_FALSE(Access::flags(large.object()) & pooled);
  CHECK_FALSE(Access::flags(aligned.object()) & pooled);
}
