// Tests of memlens/threads.hpp: the documented multi-threaded use (every touch of shared
// objects under HeapLock) is free of data races. Run under ThreadSanitizer by .ci/run.
#include <memlens/threads.hpp>

#include <memlens/object.hpp>
#include <memlens/sys.hpp>
#include <memlens/weakref.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
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

TEST_CASE("with_heap_lock runs a thread's callable and drops its captures under the lock",
          "[threads]") {
  auto shared = memlens::make<Node>();
  std::vector<std::thread> workers;
  {
    memlens::HeapLock lock;  // the captures are copied here, under the lock
    for (int t = 0; t < 4; ++t) {
      workers.emplace_back(memlens::with_heap_lock([shared, t] {
        for (int i = 0; i < 1000; ++i) {
          auto fresh = memlens::make<Node>();
          fresh->next = shared;
          fresh->value = t;
        }
      }));
    }
  }
  for (auto& w : workers) w.join();
  memlens::HeapLock lock;
  CHECK(memlens::sys::getrefcount(shared) == 1);  // every capture was dropped
}

TEST_CASE("a HeapLocked callable that never runs still drops its captures under the lock",
          "[threads]") {
  auto shared = memlens::make<Node>();
  {
    auto callable = memlens::with_heap_lock([shared] { return shared->value; });
    CHECK(memlens::sys::getrefcount(shared) == 2);
    auto moved = std::move(callable);
    CHECK(moved() == 0);
    CHECK(memlens::sys::getrefcount(shared) == 1);  // dropped as it ran
  }
  { auto unused = memlens::with_heap_lock([shared] {}); }
  CHECK(memlens::sys::getrefcount(shared) == 1);
}

TEST_CASE("the heap-lock rule is checked: a Ref dropped by a thread after its lock",
          "[heaplock][threads]") {
  if (!MEMLENS_CHECK_THREADS) {
    WARN("the heap-lock rule is checked in debug builds, or with MEMLENS_CHECK_THREADS=1");
    return;
  }
  const auto outcome = test_child::run_in_child([] {
    auto shared = memlens::make<Node>();
    std::thread worker;
    {
      memlens::HeapLock lock;
      // The trap: the lambda's copy of `shared` is destroyed after its body released the lock.
      worker = std::thread([shared] {
        memlens::HeapLock inner;
        shared->value = 1;
      });
    }
    worker.join();
  });
  INFO(outcome.output);
  CHECK(outcome.killed_by(SIGABRT));
  CHECK(outcome.output.find("a reference count changed without memlens::HeapLock held") !=
        std::string::npos);
}

TEST_CASE("the heap-lock rule is checked: make without the lock while another thread works",
          "[heaplock][threads]") {
  if (!MEMLENS_CHECK_THREADS) {
    WARN("the heap-lock rule is checked in debug builds, or with MEMLENS_CHECK_THREADS=1");
    return;
  }
  const auto outcome = test_child::run_in_child([] {
    std::mutex m;
    std::condition_variable cv;
    bool started = false, done = false;
    std::thread worker([&] {
      {
        memlens::HeapLock lock;
        auto mine = memlens::make<Node>();
      }
      std::unique_lock<std::mutex> guard(m);
      started = true;
      cv.notify_all();
      cv.wait(guard, [&] { return done; });
    });
    {
      std::unique_lock<std::mutex> guard(m);
      cv.wait(guard, [&] { return started; });
    }
    auto unguarded = memlens::make<Node>();  // the worker is alive and has used memlens
    std::fprintf(stderr, "not caught\n");
    {
      std::lock_guard<std::mutex> guard(m);
      done = true;
    }
    cv.notify_all();
    worker.join();
  });
  INFO(outcome.output);
  CHECK(outcome.killed_by(SIGABRT));
  CHECK(outcome.output.find("make was called without memlens::HeapLock held") !=
        std::string::npos);
}

TEST_CASE("fork while another thread holds HeapLock: the child gets a lock of its own",
          "[heaplock][threads]") {
  std::mutex m;
  std::condition_variable cv;
  bool holding = false, release = false;
  std::thread holder([&] {
    memlens::HeapLock lock;
    std::unique_lock<std::mutex> guard(m);
    holding = true;
    cv.notify_all();
    cv.wait(guard, [&] { return release; });
  });
  {
    std::unique_lock<std::mutex> guard(m);
    cv.wait(guard, [&] { return holding; });
  }
  // The alarm in run_in_child turns a deadlock into a SIGALRM.
  const auto outcome = test_child::run_in_child(
      [] {
        memlens::HeapLock lock;
        auto node = memlens::make<Node>();
        node->next = memlens::make<Node>();
      },
      20);
  {
    std::lock_guard<std::mutex> guard(m);
    release = true;
  }
  cv.notify_all();
  holder.join();
  INFO(outcome.output);
  CHECK(outcome.exited_with(0));
}

TEST_CASE("fork while this thread holds HeapLock: the child holds it as often",
          "[heaplock][threads]") {
  memlens::HeapLock outer;
  memlens::HeapLock inner;
  const auto outcome = test_child::run_in_child([] {
    auto node = memlens::make<Node>();
    std::thread other([] {
      const bool free = memlens::heap_mutex().try_lock();
      if (free) memlens::heap_mutex().unlock();
      if (free) _exit(2);  // the child's lock must be held twice by its only thread
    });
    other.join();
  });
  CHECK(outcome.exited_with(0));
}
