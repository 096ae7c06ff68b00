// WeakEventSystem: weak listeners of every kind, order, filters, re-entrant callbacks, throwing
// listeners, purging of the dead, unsubscribe against a publish running on another thread.
#include <any>
#include <atomic>
#include <deque>
#include <memlens/memlens.hpp>
#include <memlens/testing.hpp>
#include <memlens/tools/weak_event_system.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "memlens_test.hpp"

using memlens::SubscriptionId;
using memlens::WeakEventSystem;
using memlens_test::contains;

namespace test_events {

/// Records what it received, in a log the test owns (it outlives the listener).
struct Recorder : memlens::Object {
  Recorder(std::vector<std::string>* l, std::string n) : log(l), name(std::move(n)) {}
  void handle(const int& value) { log->push_back(name + ":" + std::to_string(value)); }
  std::vector<std::string>* log;
  std::string name;
};

std::vector<std::string>* free_log = nullptr;
void free_listener(const int& value) { free_log->push_back("free:" + std::to_string(value)); }

/// Restores the default unraisable hook when a test ends.
struct HookGuard {
  ~HookGuard() { memlens::sys::set_unraisablehook(nullptr); }
};

}  // namespace test_events

using test_events::Recorder;

TEST_CASE("WeakEventSystem: a listener is held weakly and dropped when it dies",
          "[tools][events]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto listener = memlens::make<Recorder>(&log, "a");
  events.subscribe("update", listener, &Recorder::handle, 1);
  CHECK(memlens::sys::getrefcount(listener) == 1);
  CHECK(events.publish("update", 42) == 1);
  CHECK(events.listener_count("update") == 1);
  listener = nullptr;  // nothing else holds it
  CHECK(events.publish("update", 43) == 0);
  CHECK(log == std::vector<std::string>{"a:42"});
  CHECK(events.listener_count("update") == 0);
  CHECK(events.publish("nobody listens", 1) == 0);
}

TEST_CASE("WeakEventSystem: higher priority first and ties in subscription order and filters",
          "[tools][events]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto low = memlens::make<Recorder>(&log, "low");
  auto high = memlens::make<Recorder>(&log, "high");
  auto mid1 = memlens::make<Recorder>(&log, "mid1");
  auto mid2 = memlens::make<Recorder>(&log, "mid2");
  auto even = memlens::make<Recorder>(&log, "even");
  events.subscribe("e", low, &Recorder::handle, -5);
  events.subscribe("e", mid1, &Recorder::handle, 0);
  events.subscribe("e", high, &Recorder::handle, 10);
  events.subscribe("e", mid2, &Recorder::handle);
  events.subscribe("e", even, &Recorder::handle, 0, [](const int& v) { return v % 2 == 0; });
  CHECK(events.publish("e", 1) == 4);
  CHECK(log == std::vector<std::string>{"high:1", "mid1:1", "mid2:1", "low:1"});
  log.clear();
  CHECK(events.publish("e", 2) == 5);
  CHECK(log == std::vector<std::string>{"high:2", "mid1:2", "mid2:2", "even:2", "low:2"});
}

TEST_CASE("WeakEventSystem: WeakMethods and free functions and callables tied to an owner",
          "[tools][events]") {
  std::vector<std::string> log;
  test_events::free_log = &log;
  WeakEventSystem<int> events;
  auto a = memlens::make<Recorder>(&log, "a");
  auto b = memlens::make<Recorder>(&log, "b");
  auto c = memlens::make<Recorder>(&log, "c");
  events.subscribe("e", memlens::WeakMethod(a, &Recorder::handle), 3);
  events.subscribe("e", &test_events::free_listener, 2);
  events.subscribe("e", b, [](Recorder& self, const int& v) { self.handle(v * 10); }, 1);
  events.subscribe("e", c, [&log](const int& v) { log.push_back("c-owned:" + std::to_string(v)); });
  CHECK(events.publish("e", 1) == 4);
  CHECK(log == std::vector<std::string>{"a:1", "free:1", "b:10", "c-owned:1"});
  a = b = c = nullptr;
  log.clear();
  CHECK(events.publish("e", 2) == 1);
  CHECK(log == std::vector<std::string>{"free:2"});
  CHECK(events.listener_count("e") == 1);
}

TEST_CASE("WeakEventSystem: a callable holding a Ref to its owner keeps it alive but the safe "
          "form does not",
          "[tools][events]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto trapped = memlens::make<Recorder>(&log, "trapped");
  memlens::Weak<Recorder> watch_trapped(trapped);
  events.subscribe("e", trapped, [trapped](const int& v) { trapped->handle(v); });
  auto safe = memlens::make<Recorder>(&log, "safe");
  memlens::Weak<Recorder> watch_safe(safe);
  events.subscribe("e", safe, [](Recorder& self, const int& v) { self.handle(v); });
  trapped = safe = nullptr;
  CHECK_FALSE(watch_trapped.expired());  // the subscription owns it: the classic leak
  CHECK(watch_safe.expired());
}

TEST_CASE("WeakEventSystem: unsubscribe ends a subscription once", "[tools][events]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto a = memlens::make<Recorder>(&log, "a");
  auto b = memlens::make<Recorder>(&log, "b");
  const SubscriptionId ia = events.subscribe("e", a, &Recorder::handle);
  const SubscriptionId ib = events.subscribe("e", b, &Recorder::handle);
  CHECK(ia != ib);
  CHECK(events.unsubscribe("e", ia));
  CHECK_FALSE(events.unsubscribe("e", ia));
  CHECK_FALSE(events.unsubscribe("other", ib));
  CHECK(events.publish("e", 7) == 1);
  CHECK(log == std::vector<std::string>{"b:7"});
  b = nullptr;
  CHECK_FALSE(events.unsubscribe("e", ib));  // its listener died: nothing live to end
}

TEST_CASE("WeakEventSystem: listeners may subscribe and unsubscribe and publish from a callback",
          "[tools][events]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto late = memlens::make<Recorder>(&log, "late");
  auto victim = memlens::make<Recorder>(&log, "victim");
  auto driver = memlens::make<Recorder>(&log, "driver");
  SubscriptionId self_id{};
  SubscriptionId victim_id{};
  self_id = events.subscribe(
      "e", driver,
      [&](Recorder& self, const int& v) {
        self.handle(v);
        if (v == 1) {
          events.subscribe("e", late, &Recorder::handle, -1);  // from the next publish on
          CHECK(events.unsubscribe("e", victim_id));            // later in this publish
          CHECK(events.unsubscribe("e", self_id));              // itself
          CHECK(events.publish("nested", v) == 1);
        }
      },
      10);
  victim_id = events.subscribe("e", victim, &Recorder::handle);
  events.subscribe("nested", victim, [&log](const int&) { log.push_back("nested"); });
  CHECK(events.publish("e", 1) == 1);
  CHECK(log == std::vector<std::string>{"driver:1", "nested"});
  log.clear();
  CHECK(events.publish("e", 2) == 1);
  CHECK(log == std::vector<std::string>{"late:2"});
  CHECK(events.listener_count("e") == 1);
}

TEST_CASE("WeakEventSystem: a filter that unsubscribes its own listener keeps it from being called",
          "[tools][events]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto a = memlens::make<Recorder>(&log, "a");
  SubscriptionId id{};
  id = events.subscribe("e", a, &Recorder::handle, 0, [&](const int&) {
    events.unsubscribe("e", id);
    return true;
  });
  CHECK(events.publish("e", 1) == 0);
  CHECK(log.empty());
  CHECK(events.listener_count("e") == 0);
}

TEST_CASE("WeakEventSystem: a callable whose destruction calls the system back", "[tools][events]") {
  // Erasing a subscription destroys its callable; here that runs code which reads the same
  // channel and subscribes to a new one, while the erase would be half done.
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  struct CallsBack {
    WeakEventSystem<int>* events = nullptr;
    std::vector<std::string>* log = nullptr;
    memlens::Ref<Recorder> other;
    ~CallsBack() {
      if (events == nullptr) return;
      log->push_back("live: " + std::to_string(events->listener_count("e")));
      events->subscribe("new", other, &Recorder::handle);
    }
  };
  auto owner = memlens::make<Recorder>(&log, "owner");
  auto b = memlens::make<Recorder>(&log, "b");
  auto hook = std::make_shared<CallsBack>();
  hook->events = &events;
  hook->log = &log;
  hook->other = b;
  const SubscriptionId id =
      events.subscribe("e", owner, [hook](Recorder&, const int&) {});
  hook.reset();  // the subscription's callable holds the last reference
  events.subscribe("e", b, &Recorder::handle);
  events.subscribe("e", memlens::make<Recorder>(&log, "c"), &Recorder::handle);
  CHECK(events.unsubscribe("e", id));
  CHECK(log == std::vector<std::string>{"live: 1"});
  CHECK(events.listener_count("new") == 1);
  CHECK(events.publish("e", 3) == 1);
}

TEST_CASE("WeakEventSystem: a listener that throws is reported and the others still run",
          "[tools][events]") {
  test_events::HookGuard guard;
  std::vector<std::string> reports;
  memlens::sys::set_unraisablehook([&](const memlens::sys::UnraisableInfo& info) {
    try {
      std::rethrow_exception(info.exception);
    } catch (const std::exception& e) {
      reports.push_back(std::string(info.err_msg) + ": " + e.what());
    }
  });
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto thrower = memlens::make<Recorder>(&log, "thrower");
  auto after = memlens::make<Recorder>(&log, "after");
  events.subscribe("e", thrower, [](Recorder&, const int&) { throw std::runtime_error("boom"); }, 1);
  events.subscribe("e", after, &Recorder::handle, 0,
                   [](const int& v) -> bool { return v > 0 ? true : throw std::logic_error("bad filter"); });
  CHECK(events.publish("e", 5) == 2);
  CHECK(log == std::vector<std::string>{"after:5"});
  CHECK(events.publish("e", -1) == 1);
  REQUIRE(reports.size() == 3);
  CHECK(reports[0] == "Exception ignored in WeakEventSystem listener for 'e': boom");
  CHECK(reports[2] == "Exception ignored in WeakEventSystem filter for 'e': bad filter");
}

TEST_CASE("WeakEventSystem: dead listeners are purged on subscribe and publish and cleanup",
          "[tools][events]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  std::vector<memlens::Ref<Recorder>> listeners;
  for (int i = 0; i < 100; ++i) {
    listeners.push_back(memlens::make<Recorder>(&log, std::to_string(i)));
    events.subscribe("e", listeners.back(), &Recorder::handle);
  }
  listeners.resize(10);
  CHECK(events.cleanup() == 90);
  CHECK(events.cleanup() == 0);
  listeners.resize(5);
  auto fresh = memlens::make<Recorder>(&log, "fresh");
  events.subscribe("e", fresh, &Recorder::handle);  // finds the 5 dead on its way
  CHECK(events.cleanup() == 0);
  listeners.resize(2);
  CHECK(events.publish("e", 0) == 3);  // 2 + fresh; the 3 dead found and dropped
  CHECK(events.cleanup() == 0);
  listeners.clear();
  fresh = nullptr;
  CHECK(events.cleanup() == 3);
  CHECK(events.listener_count("e") == 0);
}

TEST_CASE("WeakEventSystem: bad subscriptions are refused", "[tools][events]") {
  WeakEventSystem<int> events;
  memlens::Ref<Recorder> none;
  REQUIRE_THROWS_WITH(events.subscribe("e", none, &Recorder::handle),
                      "WeakEventSystem: cannot subscribe a null listener to 'e'");
  REQUIRE_THROWS_AS(events.subscribe("e", static_cast<void (*)(const int&)>(nullptr)),
                    memlens::ValueError);
  CHECK(events.listener_count("e") == 0);
}

TEST_CASE("WeakEventSystem: std::any events as the seed has them", "[tools][events]") {
  struct Listener : memlens::Object {
    int received = 0;
    void handle(const std::any& data) { received = std::any_cast<int>(data); }
  };
  WeakEventSystem<> events;
  auto listener = memlens::make<Listener>();
  events.subscribe("update", listener, &Listener::handle);
  CHECK(events.publish("update", 42) == 1);
  CHECK(listener->received == 42);
}

TEST_CASE("WeakEventSystem: members called while holding HeapLock do not deadlock",
          "[tools][events][threads]") {
  std::vector<std::string> log;
  WeakEventSystem<int> events;
  auto a = memlens::make<Recorder>(&log, "a");
  events.subscribe("e", a, &Recorder::handle);
  std::size_t called_there = 0;
  std::thread other(memlens::with_heap_lock([&] {
    events.subscribe("e", a, &Recorder::handle);
    called_there = events.publish("e", 1);
  }));
  other.join();
  CHECK(called_there == 2);
  memlens::HeapLock lock;
  CHECK(events.publish("e", 2) == 2);
  CHECK(log.size() == 4);
}

TEST_CASE("WeakEventSystem: once unsubscribe returns a publish running on another thread "
          "calls that listener no more",
          "[tools][events][threads]") {
  WeakEventSystem<int> events;
  std::atomic<bool> in_call{false}, unsubscribing{false}, unsubscribed{false};
  std::atomic<int> late_calls{0};
  std::atomic<bool> first_call_finished{false};
  std::vector<std::string> log;
  memlens::Ref<Recorder> slow, watched;
  {
    memlens::HeapLock lock;
    slow = memlens::make<Recorder>(&log, "slow");
    watched = memlens::make<Recorder>(&log, "watched");
  }
  // The slow listener holds the publish open until the other thread is inside unsubscribe.
  events.subscribe(
      "e", slow,
      [&](Recorder&, const int&) {
        in_call = true;
        while (!unsubscribing) std::this_thread::yield();
        for (int i = 0; i < 1000; ++i) std::this_thread::yield();  // widens a broken window
        first_call_finished = true;
      },
      1);
  const SubscriptionId id = events.subscribe("e", watched, [&](Recorder&, const int&) {
    if (unsubscribed) late_calls.fetch_add(1);
  });
  std::thread publisher(memlens::with_heap_lock([&] { events.publish("e", 1); }));
  while (!in_call) std::this_thread::yield();
  unsubscribing = true;
  const bool ended = events.unsubscribe("e", id);
  unsubscribed = true;
  CHECK(first_call_finished);  // it waited for the publish that was running
  publisher.join();
  CHECK(ended);
  CHECK(late_calls == 0);
  memlens::HeapLock lock;
  slow = watched = nullptr;
}

TEST_CASE("WeakEventSystem: publishers and subscribers and dying listeners on three threads",
          "[tools][events][threads]") {
  WeakEventSystem<int> events;
  std::atomic<int> calls{0}, violations{0}, failed_unsubscribes{0};
  struct Counter : memlens::Object {
    std::atomic<int>* calls;
    std::atomic<bool> ended{false};
    std::atomic<int>* violations;
    Counter(std::atomic<int>* c, std::atomic<int>* v) : calls(c), violations(v) {}
    void handle(const int&) {
      if (ended) violations->fetch_add(1);
      calls->fetch_add(1);
    }
  };
  std::atomic<bool> done{false};
  std::atomic<int> publishes{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < 2; ++p) {
    threads.emplace_back([&] {
      // Until the subscriber is done, and at least 100 times; publish takes HeapLock itself.
      for (int i = 0; i < 100 || !done; ++i) {
        events.publish("e", i);
        publishes.fetch_add(1);
      }
    });
  }
  threads.emplace_back([&] {
    // A window of 8 live listeners; the oldest leaves each round, by unsubscribe or by dying.
    std::deque<std::pair<memlens::Ref<Counter>, SubscriptionId>> live;
    for (int i = 0; i <= 300; ++i) {
      // Lets a publish in between rounds (the heap mutex is not fair).
      for (const int seen = publishes; publishes == seen;) std::this_thread::yield();
      memlens::HeapLock lock;
      auto c = memlens::make<Counter>(&calls, &violations);
      live.emplace_back(c, events.subscribe("e", c, &Counter::handle, i % 3));
      if (live.size() <= 8) continue;
      auto [old, id] = std::move(live.front());
      live.pop_front();
      if (i % 2 == 0) {
        if (!events.unsubscribe("e", id)) failed_unsubscribes.fetch_add(1);
        old->ended = true;  // no call may come after this
      }
      // Else it dies here, under the lock, with its subscription still in place.
    }
    memlens::HeapLock lock;
    for (auto& [c, id] : live) {
      if (!events.unsubscribe("e", id)) failed_unsubscribes.fetch_add(1);
      c->ended = true;
    }
    live.clear();
    done = true;
  });
  for (auto& t : threads) t.join();
  CHECK(violations == 0);
  CHECK(failed_unsubscribes == 0);
  CHECK(calls > 0);
  CHECK(events.cleanup() == 0);  // the dead were purged as they were found
  CHECK(events.listener_count("e") == 0);
}

TEST_CASE("WeakEventSystem: a system used and destroyed leaks nothing", "[tools][events]") {
  REQUIRE_THAT(([] {
                 std::vector<std::string> log;
                 WeakEventSystem<int> events;
                 auto a = memlens::make<Recorder>(&log, "a");
                 auto b = memlens::make<Recorder>(&log, "b");
                 events.subscribe("e", a, &Recorder::handle);
                 events.subscribe("f", b, [](Recorder& self, const int& v) { self.handle(v); });
                 events.publish("e", 1);
                 b = nullptr;
                 events.publish("f", 1);
               }),
               memlens::testing::NoLeaks());
}
