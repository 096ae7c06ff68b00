// Seed exercise 13: an event system whose listeners are held weakly. A listener that goes away
// is not kept alive by its subscriptions, is never called again, and is cleaned up; priorities
// order the calls and filters skip events a listener does not want.
#include <fmt/format.h>

#include <any>
#include <map>
#include <memlens/memlens.hpp>
#include <memlens/tools/weak_event_system.hpp>
#include <string>
#include <utility>

namespace {

using Data = std::map<std::string, int>;

struct Listener : memlens::Object {
  explicit Listener(std::string n) : name(std::move(n)) {}
  ~Listener() override { fmt::print("    ({} destroyed)\n", name); }
  void handle(const std::any& data) {
    fmt::print("    {} received value={}\n", name, std::any_cast<const Data&>(data).at("value"));
  }
  std::string name;
};

}  // namespace

int main() {
  memlens::WeakEventSystem<> events;

  fmt::print("listener = Listener(); events.subscribe('update', listener.handle, priority=1)\n");
  auto listener = memlens::make<Listener>("listener");
  events.subscribe("update", listener, &Listener::handle, 1);
  fmt::print("  references to listener: {} (the subscription holds it weakly)\n",
             memlens::sys::getrefcount(listener));

  fmt::print("\nevents.publish('update', data={{'value': 42}})\n");
  auto called = events.publish("update", Data{{"value", 42}});
  fmt::print("  listeners called: {}\n", called);

  fmt::print("\ndel listener\n");
  listener = nullptr;
  fmt::print("events.publish('update', data={{'value': 43}})\n");
  called = events.publish("update", Data{{"value", 43}});
  fmt::print("  listeners called: {}, no error; live listeners: {}\n", called,
             events.listener_count("update"));

  fmt::print("\nPriorities and a filter: audit (10), alerts (5, only values over 100), ui (0)\n");
  auto ui = memlens::make<Listener>("ui");
  auto audit = memlens::make<Listener>("audit");
  auto alerts = memlens::make<Listener>("alerts");
  events.subscribe("update", ui, &Listener::handle);
  events.subscribe("update", audit, &Listener::handle, 10);
  events.subscribe("update", alerts, &Listener::handle, 5, [](const std::any& data) {
    return std::any_cast<const Data&>(data).at("value") > 100;
  });
  fmt::print("events.publish('update', data={{'value': 7}})\n");
  events.publish("update", Data{{"value", 7}});
  fmt::print("events.publish('update', data={{'value': 700}})\n");
  events.publish("update", Data{{"value", 700}});

  fmt::print("\nA callable tied to its owner gets the owner as its first argument, so it never\n"
             "has to capture (and keep alive) a Ref to it:\n");
  auto counter = memlens::make<Listener>("counter");
  events.subscribe("tick", counter, [](Listener& self, const std::any&) {
    fmt::print("    tick for {}\n", self.name);
  });
  events.publish("tick", {});
  counter = nullptr;
  fmt::print("  after counter died: {} called\n", events.publish("tick", {}));

  fmt::print("\nui and alerts go away; cleanup() removes {} dead listener(s)\n", [&] {
    ui = alerts = nullptr;
    return events.cleanup();
  }());
  fmt::print("  live listeners of 'update': {}\n", events.listener_count("update"));
}
