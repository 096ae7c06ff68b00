// Seed exercise 13, a weak callback system: listeners are held weakly (methods through
// WeakMethod semantics), dead ones are cleaned up automatically, with priorities, filters and
// thread safety.
//   events.subscribe('update', listener.handle, priority=1)
//   events.publish('update', data={'value': 42})
//   del listener                                   # collected, auto-removed
//   events.publish('update', data={'value': 43})   # no error
#include <any>
#include <map>
#include <memlens/memlens.hpp>
#include <memlens/tools/weak_event_system.hpp>
#include <string>
#include <thread>
#include <vector>

#include "memlens_test.hpp"

namespace test_e13 {

using Data = std::map<std::string, int>;

struct Listener : memlens::Object {
  explicit Listener(std::vector<std::string>* l, std::string n = "listener")
      : log(l), name(std::move(n)) {}
  void handle(const std::any& data) {
    log->push_back(name + " received " + std::to_string(std::any_cast<const Data&>(data).at("value")));
  }
  std::vector<std::string>* log;
  std::string name;
};

}  // namespace test_e13

using test_e13::Data;
using test_e13::Listener;

TEST_CASE("e13: the seed's example: a listener that dies is not called and nothing is raised",
          "[exercise][e13]") {
  std::vector<std::string> log;
  memlens::WeakEventSystem<> events;
  auto listener = memlens::make<Listener>(&log);
  memlens::Weak<Listener> watch(listener);
  events.subscribe("update", listener, &Listener::handle, 1);
  CHECK(events.publish("update", Data{{"value", 42}}) == 1);
  listener = nullptr;  // del listener
  CHECK(watch.expired());  // the subscription did not keep it alive
  CHECK_NOTHROW(events.publish("update", Data{{"value", 43}}));
  CHECK(log == std::vector<std::string>{"listener received 42"});
  CHECK(events.listener_count("update") == 0);
  CHECK(events.cleanup() == 0);  // already removed when the publish found it dead
}

TEST_CASE("e13: priority and filtering", "[exercise][e13]") {
  std::vector<std::string> log;
  memlens::WeakEventSystem<> events;
  auto audit = memlens::make<Listener>(&log, "audit");
  auto ui = memlens::make<Listener>(&log, "ui");
  auto alerts = memlens::make<Listener>(&log, "alerts");
  events.subscribe("update", ui, &Listener::handle);
  events.subscribe("update", audit, &Listener::handle, 10);
  events.subscribe("update", alerts, &Listener::handle, 5, [](const std::any& data) {
    return std::any_cast<const Data&>(data).at("value") > 100;
  });
  CHECK(events.publish("update", Data{{"value", 42}}) == 2);
  CHECK(events.publish("update", Data{{"value", 500}}) == 3);
  CHECK(log == std::vector<std::string>{"audit received 42", "ui received 42",
                                        "audit received 500", "alerts received 500",
                                        "ui received 500"});
}

TEST_CASE("e13: cleanup removes dead listeners", "[exercise][e13]") {
  std::vector<std::string> log;
  memlens::WeakEventSystem<> events;
  std::vector<memlens::Ref<Listener>> listeners;
  for (int i = 0; i < 5; ++i) {
    listeners.push_back(memlens::make<Listener>(&log));
    events.subscribe("update", listeners.back(), &Listener::handle);
  }
  listeners.erase(listeners.begin(), listeners.begin() + 3);
  CHECK(events.cleanup() == 3);
  CHECK(events.listener_count("update") == 2);
}

TEST_CASE("e13: thread-safe: publishing on one thread while a listener dies on another",
          "[exercise][e13][threads]") {
  std::vector<std::string> log;
  memlens::WeakEventSystem<> events;
  memlens::Ref<Listener> listener;
  {
    memlens::HeapLock lock;
    listener = memlens::make<Listener>(&log);
  }
  events.subscribe("update", listener, &Listener::handle);
  std::thread killer(memlens::with_heap_lock([&] { listener = nullptr; }));
  for (int i = 0; i < 100; ++i) events.publish("update", Data{{"value", i}});
  killer.join();
  CHECK(events.publish("update", Data{{"value", -1}}) == 0);
  memlens::HeapLock lock;
  CHECK(log.size() <= 100);  // each publish before the death called it once, none after
}
