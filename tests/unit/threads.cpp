// Tests of memlens/threads.hpp: the documented multi-threaded use (every touch of shared
// objects under HeapLock) is free of data races. Run under ThreadSanitizer by .ci/run.
#include <memlens/threads.hpp>

#include <memlens/object.hpp>
#include <memlens/sys.hpp>
#include <memlens/weakref.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "memlens_test.hpp"

namespace test_threads {
struct Node : memlens::Object {
  memlens::Ref<Node> next;
  int value = 0;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};
}  // namespace test_threads

using namespace test_threads;

TEST_CASE("objects shared between threads under HeapLock", "[threads]") {
  constexpr int threads = 4;
  constexpr int rounds = 2000;
  auto shared = memlens::make<Node>();
  memlens::WeakValueDictionary<int, Node> registry;
  std::atomic<int> seen_alive{0};

  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < rounds; ++i) {
        memlens::HeapLock lock;
        memlens::Ref<Node> copy = shared;           // count changes on a shared object
        auto fresh = memlens::make<Node>();          // collector lists are global
        fresh->next = copy;
        fresh->value = i;
        registry.insert_or_assign(t, fresh);         // weak registry is global
        memlens::Weak<Node> weak = copy;
        if (weak.lock()) seen_alive.fetch_add(1, std::memory_order_relaxed);
        auto small = memlens::integer(i % 300);      // cached and fresh integers
        auto name = memlens::sys::intern(i % 2 ? "odd" : "even");
      }
    });
  }
  for (auto& w : workers) w.join();

  memlens::HeapLock lock;
  CHECK(seen_alive.load() == threads * rounds);
  CHECK(memlens::sys::getrefcount(shared) == 1);  // every copy was dropped
  CHECK(registry.size() == 0);                     // every `fresh` died with its scope
  CHECK(memlens::weakref::getweakrefcount(shared) == 0);
}

TEST_CASE("HeapLock is recursive", "[threads]") {
  memlens::HeapLock outer;
  memlens::HeapLock inner;  // would deadlock with a plain mutex
  SUCCEED();
}
