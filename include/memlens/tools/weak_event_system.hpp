// memlens: WeakEventSystem, publish/subscribe whose listeners are held weakly (exercise 13).
#pragma once

#include <algorithm>
#include <any>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/errors.hpp"
#include "memlens/object.hpp"
#include "memlens/threads.hpp"
#include "memlens/weakref.hpp"

namespace memlens {

/// What subscribe() returns and unsubscribe() takes; unique within one WeakEventSystem.
enum class SubscriptionId : std::uint64_t {};

namespace detail::events {

/// A subscribed callable and what it is tied to.
template <class Event>
struct Listener {
  virtual ~Listener() = default;
  /// Calls it if its owner is alive; false (not called) if the owner is gone.
  virtual bool call(const Event& event) = 0;
  virtual bool alive() const noexcept = 0;
};

/// A callable tied to an owner held weakly: `f(owner, event)`, or `f(event)`.
template <class Event, class T, class F>
struct BoundListener final : Listener<Event> {
  BoundListener(const Ref<T>& owner_ref, F callable) : owner(owner_ref), f(std::move(callable)) {}
  bool call(const Event& event) override {
    Ref<T> self = owner.lock();  // keeps it alive through the call
    if (!self) return false;
    if constexpr (std::is_invocable_v<F&, T&, const Event&>) {
      std::invoke(f, *self, event);
    } else {
      std::invoke(f, event);
    }
    return true;
  }
  bool alive() const noexcept override { return !owner.expired(); }

  Weak<T> owner;
  F f;
};

/// A WeakMethod: it holds its object weakly itself.
template <class Event, class T, class M>
struct MethodListener final : Listener<Event> {
  explicit MethodListener(WeakMethod<T, M> m) : method(std::move(m)) {}
  bool call(const Event& event) override {
    if constexpr (std::is_void_v<std::invoke_result_t<M, T&, const Event&>>) {
      return method(event);
    } else {
      return method(event).has_value();
    }
  }
  bool alive() const noexcept override { return method.alive(); }

  WeakMethod<T, M> method;
};

/// A free function: never dies.
template <class Event>
struct FreeListener final : Listener<Event> {
  explicit FreeListener(void (*fn)(const Event&)) : function(fn) {}
  bool call(const Event& event) override {
    function(event);
    return true;
  }
  bool alive() const noexcept override { return true; }

  void (*function)(const Event&);
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

}  // namespace detail::events

/**
 * Publish/subscribe whose listeners are held weakly (Python's exercise 13, built on Weak and
 * WeakMethod): a subscription never keeps its listener alive, and a listener that died is
 * never called and is dropped when found.
 *
 * ```cpp
 * memlens::WeakEventSystem<> events;  // events are std::any
 * auto listener = memlens::make<Listener>();
 * events.subscribe("update", listener, &Listener::handle, 1);
 * events.publish("update", std::any(42));  // calls listener->handle
 * listener = nullptr;                      // it dies: nothing holds it
 * events.publish("update", std::any(43));  // calls nobody
 * ```
 *
 * Listeners are called in order of priority, highest first, ties in subscription order; a
 * listener whose filter refuses the event is not called. A listener may subscribe (the new
 * subscription is called from the next publish on), unsubscribe (itself included) or publish.
 * One that throws is reported to `sys::set_unraisablehook`'s hook, and the others still run.
 *
 * Threads: every member takes HeapLock (memlens' GIL), and listeners are called with it held,
 * as CPython calls Python code with the GIL held. So calling any member while holding HeapLock
 * never deadlocks, and once unsubscribe() returns, that listener is never called again: a
 * publish running on another thread holds the lock until its calls are over. A listener must
 * therefore not wait for another thread that uses memlens.
 *
 * The trap: a callable that holds a Ref to its own owner keeps the owner alive forever
 * (`subscribe("e", owner, [owner](const E&) {...})`). Take the owner as the callable's first
 * parameter instead: `subscribe("e", owner, [](Owner& self, const E& e) {...})`.
 */
template <class Event = std::any>
class WeakEventSystem {
 public:
  /// Decides whether a listener is called for an event.
  using Filter = std::function<bool(const Event&)>;
  /// A listener that belongs to no object.
  using FreeFunction = void (*)(const Event&);

  WeakEventSystem() = default;
  WeakEventSystem(const WeakEventSystem&) = delete;
  WeakEventSystem& operator=(const WeakEventSystem&) = delete;
  /// Drops every subscription (their weak references) under HeapLock. Not from a listener.
  ~WeakEventSystem() {
    HeapLock lock;
    channels_.clear();
  }

  /**
   * Subscribes `callable` tied to `owner`, held weakly: a member function
   * (`&Listener::handle`), or any callable taking `(T& owner, const Event&)` or `(const
   * Event&)`. It is called while `owner` lives. A null owner throws ValueError.
   */
  template <class T, class F>
    requires std::is_invocable_v<F&, T&, const Event&> || std::is_invocable_v<F&, const Event&>
  SubscriptionId subscribe(std::string event_type, const Ref<T>& owner, F callable,
                           int priority = 0, Filter filter = {}) {
    HeapLock lock;
    Burial burial(*this);
    if (!owner) {
      throw ValueError("WeakEventSystem: cannot subscribe a null listener to '" + event_type +
                       "'");
    }
    return add(std::move(event_type),
               std::make_unique<detail::events::BoundListener<Event, T, F>>(owner, std::move(callable)),
               priority, std::move(filter));
  }

  /// Subscribes a WeakMethod (it holds its object weakly).
  template <class T, class M>
  SubscriptionId subscribe(std::string event_type, WeakMethod<T, M> method, int priority = 0,
                           Filter filter = {}) {
    HeapLock lock;
    Burial burial(*this);
    if (!method.alive()) {
      throw ValueError("WeakEventSystem: cannot subscribe a dead WeakMethod to '" + event_type +
                       "'");
    }
    return add(std::move(event_type),
               std::make_unique<detail::events::MethodListener<Event, T, M>>(std::move(method)), priority,
               std::move(filter));
  }

  /// Subscribes a free function (or a lambda that captures nothing). A null one throws.
  SubscriptionId subscribe(std::string event_type, FreeFunction function, int priority = 0,
                           Filter filter = {}) {
    HeapLock lock;
    Burial burial(*this);
    if (function == nullptr) {
      throw ValueError("WeakEventSystem: cannot subscribe a null function to '" + event_type +
                       "'");
    }
    return add(std::move(event_type), std::make_unique<detail::events::FreeListener<Event>>(function),
               priority, std::move(filter));
  }

  /// Ends a subscription; whether it was live (false: unknown, ended, or its listener died).
  bool unsubscribe(std::string_view event_type, SubscriptionId id) {
    HeapLock lock;
    Burial burial(*this);
    auto it = channels_.find(event_type);
    if (it == channels_.end()) return false;
    Channel& c = it->second;
    for (auto* list : {&c.entries, &c.pending}) {
      for (auto& e : *list) {
        if (e.id != id || e.removed) continue;
        const bool live = e.listener->alive();
        remove(c, e);
        settle_if_idle(c);
        return live;
      }
    }
    return false;
  }

  /// Calls the live listeners of `event_type` with `event`; returns how many were called.
  std::size_t publish(std::string_view event_type, const Event& event) {
    HeapLock lock;
    Burial burial(*this);
    auto it = channels_.find(event_type);
    if (it == channels_.end()) return 0;
    Channel& c = it->second;
    // While publishes of the channel run (nested ones, from listeners), its entries are only
    // marked, never moved: new subscriptions wait in `pending`, removals in `removed`.
    struct Depth {
      WeakEventSystem* self;
      Channel& channel;
      explicit Depth(WeakEventSystem* s, Channel& ch) : self(s), channel(ch) { ++channel.depth; }
      ~Depth() {
        if (--channel.depth != 0) return;
        try {
          self->settle_if_idle(channel);
        } catch (...) {
          // Out of memory reserving room: nothing was moved; it settles at the next call.
        }
      }
    } depth(this, c);
    std::size_t called = 0;
    const std::size_t n = c.entries.size();
    for (std::size_t i = 0; i < n; ++i) {
      Entry& e = c.entries[i];
      if (e.removed) continue;
      if (!e.listener->alive()) {
        remove(c, e);
        continue;
      }
      try {
        if (e.filter && !e.filter(event)) continue;
      } catch (...) {
        report(event_type, "filter");
        continue;
      }
      if (e.removed) continue;  // the filter unsubscribed it
      try {
        if (e.listener->call(event)) {
          ++called;
        } else {
          remove(c, e);  // the filter dropped the last reference to it
        }
      } catch (...) {
        ++called;
        report(event_type, "listener");
      }
    }
    return called;
  }

  /// Drops the subscriptions whose listeners died; returns how many.
  std::size_t cleanup() {
    HeapLock lock;
    Burial burial(*this);
    std::size_t dropped = 0;
    for (auto it = channels_.begin(); it != channels_.end();) {
      Channel& c = it->second;
      for (auto* list : {&c.entries, &c.pending}) {
        for (auto& e : *list) {
          if (!e.removed && !e.listener->alive()) {
            remove(c, e);
            ++dropped;
          }
        }
      }
      settle_if_idle(c);
      if (c.depth == 0 && c.entries.empty() && c.pending.empty()) {
        it = channels_.erase(it);
      } else {
        ++it;
      }
    }
    return dropped;
  }

  /// The live listeners of `event_type` (the dead ones found are dropped).
  std::size_t listener_count(std::string_view event_type) {
    HeapLock lock;
    Burial burial(*this);
    auto it = channels_.find(event_type);
    if (it == channels_.end()) return 0;
    Channel& c = it->second;
    std::size_t live = 0;
    for (auto* list : {&c.entries, &c.pending}) {
      for (auto& e : *list) {
        if (e.removed) continue;
        if (e.listener->alive()) {
          ++live;
        } else {
          remove(c, e);
        }
      }
    }
    settle_if_idle(c);
    return live;
  }

 private:
  struct Entry {
    SubscriptionId id;
    int priority;
    std::unique_ptr<detail::events::Listener<Event>> listener;
    Filter filter;
    bool removed = false;
  };
  struct Channel {
    std::vector<Entry> entries;  // highest priority first, then in subscription order
    std::vector<Entry> pending;  // subscribed while a publish of the channel ran
    std::size_t depth = 0;       // publishes of the channel running (nested on one thread)
    std::size_t removed = 0;     // entries marked removed and not yet erased
  };

  SubscriptionId add(std::string event_type,
                     std::unique_ptr<detail::events::Listener<Event>> listener, int priority,
                     Filter filter) {
    Channel& c = channels_.try_emplace(std::move(event_type)).first->second;
    const auto id = SubscriptionId{next_id_++};
    Entry entry{id, priority, std::move(listener), std::move(filter)};
    if (c.depth > 0) {
      c.pending.push_back(std::move(entry));
      return id;
    }
    // Dead listeners found on the way are dropped, so a channel never fills with them.
    for (auto& e : c.entries) {
      if (!e.removed && !e.listener->alive()) remove(c, e);
    }
    settle_if_idle(c);
    insert(c.entries, std::move(entry));
    return id;
  }

  static void report(std::string_view event_type, const char* what) noexcept {
    try {
      const std::string where = std::string("Exception ignored in WeakEventSystem ") + what +
                                " for '" + std::string(event_type) + "'";
      detail::report_unraisable(where, std::current_exception(), nullptr);
    } catch (...) {
      detail::report_unraisable("Exception ignored in WeakEventSystem", std::current_exception(),
                                nullptr);
    }
  }

  static void insert(std::vector<Entry>& entries, Entry entry) {
    // After every entry of the same or a higher priority: ties keep subscription order.
    auto at = std::find_if(entries.begin(), entries.end(),
                           [&](const Entry& e) { return e.priority < entry.priority; });
    entries.insert(at, std::move(entry));
  }

  static void remove(Channel& c, Entry& e) noexcept {
    e.removed = true;
    ++c.removed;
  }

  // Erases what was removed and merges the pending subscriptions, unless a publish of the
  // channel is running (its loop indexes the entries).
  // Removed entries go to the graveyard, not to their destructors: those run user code (a
  // callable's captures) that may call this system, which must not find a vector half erased.
  // Capacity is reserved first; the moves after it cannot throw, so nothing is lost.
  void settle_if_idle(Channel& c) {
    if (c.depth != 0) return;
    graveyard_.reserve(graveyard_.size() + c.removed);
    c.entries.reserve(c.entries.size() + c.pending.size());
    if (c.removed != 0) {
      for (auto* list : {&c.entries, &c.pending}) {
        for (auto& e : *list) {
          if (e.removed) graveyard_.push_back(std::move(e));
        }
        std::erase_if(*list, [](const Entry& e) { return e.removed; });
      }
      c.removed = 0;
    }
    for (auto& e : c.pending) insert(c.entries, std::move(e));
    c.pending.clear();
  }

  // Destroys what the member it guards erased, when that member is done with every channel.
  class Burial {
   public:
    explicit Burial(WeakEventSystem& system) noexcept : system_(system) {}
    Burial(const Burial&) = delete;
    Burial& operator=(const Burial&) = delete;
    ~Burial() {
      // A destructor that calls back may bury more: until none is left.
      while (!system_.graveyard_.empty()) {
        std::vector<Entry> dead = std::move(system_.graveyard_);
        system_.graveyard_.clear();
      }
    }

   private:
    WeakEventSystem& system_;
  };

  std::unordered_map<std::string, Channel, detail::events::StringHash, std::equal_to<>> channels_;
  std::vector<Entry> graveyard_;  // erased, to be destroyed (see Burial)
  std::uint64_t next_id_ = 1;
};

}  // namespace memlens
