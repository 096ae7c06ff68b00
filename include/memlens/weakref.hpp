// memlens: weak references (Python's weakref module).
#pragma once

#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "memlens/errors.hpp"
#include "memlens/object.hpp"

namespace memlens {

/**
 * A weak reference: names an object without keeping it alive. Python's `weakref.ref`.
 *
 * Made implicitly from a Ref, as weak_ptr from shared_ptr. `lock()` (or `w()`) returns a Ref,
 * null once the object is gone. With a callback, `Weak(ref, callback)` calls it once when the
 * referent dies, if this handle is still alive then; callbacks of one object run newest first
 * and see every weak reference to it already null. A callback may take no argument or this
 * Weak by reference.
 *
 * Each handle is one weak reference (`weakref::getweakrefcount` counts handles). A copy refers
 * to the same object but has no callback: the callback belongs to the handle that registered it.
 * A move carries the callback along.
 */
template <class T>
class Weak : private detail::WeakLink {
 public:
  using element_type = T;

  /// A weak reference to nothing; `lock()` returns null.
  Weak() noexcept = default;

  /// Refers weakly to `ref`'s object (to nothing if `ref` is null).
  Weak(const Ref<T>& ref) {  // NOLINT(google-explicit-constructor): as weak_ptr from shared_ptr
    attach(ref.object());
  }
  template <class U>
    requires(!std::is_same_v<U, T>) && detail::ref_convertible<U, T>
  Weak(const Ref<U>& ref) {  // NOLINT(google-explicit-constructor)
    attach(ref.object());
  }

  /// Refers weakly to `ref`'s object and calls `callback()` or `callback(*this)` when it dies.
  template <class F>
    requires(std::is_invocable_v<std::decay_t<F>&> ||
             std::is_invocable_v<std::decay_t<F>&, Weak&>)
  Weak(const Ref<T>& ref, F&& on_death) {
    if (!ref) throw ValueError("weakref: cannot make a weak reference to a null Ref");
    auto owned = std::make_unique<Callback<std::decay_t<F>>>(std::forward<F>(on_death));
    attach(ref.object());
    this->callback = owned.release();
  }

  Weak(const Weak& other) { attach(other.referent); }
  Weak(Weak&& other) noexcept { detail::weak_move(*this, other); }
  template <class U>
    requires(!std::is_same_v<U, T>) && detail::ref_convertible<U, T>
  Weak(const Weak<U>& other) {  // NOLINT(google-explicit-constructor)
    attach(other.lock().object());
  }

  Weak& operator=(const Weak& other) {
    if (this != &other) {
      reset();
      attach(other.referent);
    }
    return *this;
  }
  Weak& operator=(Weak&& other) noexcept {
    if (this != &other) {
      reset();
      detail::weak_move(*this, other);
    }
    return *this;
  }
  Weak& operator=(const Ref<T>& ref) {
    reset();
    attach(ref.object());
    return *this;
  }

  ~Weak() { reset(); }

  /// Stops referring to the object; a pending callback will not run.
  void reset() noexcept {
    detail::weak_detach(*this);
    delete std::exchange(this->callback, nullptr);
  }

  /// A strong reference to the object, or null if it is gone (or being destroyed).
  Ref<T> lock() const noexcept { return detail::ref_if_alive<T>(this->referent); }
  /// Python's `ref()`: the same as lock().
  Ref<T> operator()() const noexcept { return lock(); }
  /// Whether the object is gone.
  bool expired() const noexcept {
    return !this->referent || detail::Access::refcnt(this->referent) == 0;
  }
  /// The referent's header while it is alive, else nullptr; does not add a reference.
  const Object* object() const noexcept { return expired() ? nullptr : this->referent; }
  /// Whether this handle has a callback that has not run yet.
  bool has_callback() const noexcept { return this->callback != nullptr; }

 private:
  template <class F>
  struct Callback final : detail::WeakCallback {
    explicit Callback(F function) : f(std::move(function)) {}
    void invoke(detail::WeakLink& link) override {
      if constexpr (std::is_invocable_v<F&, Weak&>) {
        f(static_cast<Weak&>(link));
      } else {
        f();
      }
    }
    F f;
  };

  void attach(const Object* o) {
    if (o && detail::Access::refcnt(o) != 0) detail::weak_attach(*this, const_cast<Object*>(o));
  }

  template <class U>
  friend class Weak;
  template <class U>
  friend detail::WeakLink& detail::weak_link_of(Weak<U>& weak) noexcept;
};

namespace detail {
template <class T>
WeakLink& weak_link_of(Weak<T>& weak) noexcept {
  return weak;
}
}  // namespace detail

namespace weakref {

/// Python's name for a weak reference.
template <class T>
using ref = Weak<T>;

/// The number of live Weak handles that refer to the object.
template <class T>
std::size_t getweakrefcount(const Ref<T>& object) {
  if (!object) return 0;
  const detail::WeakLink* sentinel = detail::weak_list(object.object());
  std::size_t n = 0;
  if (sentinel) {
    for (const detail::WeakLink* l = sentinel->next; l != sentinel; l = l->next) ++n;
  }
  return n;
}

/// One new Weak handle per weak reference to the object, newest first. They refer to the same
/// object without callbacks, and count as weak references themselves while they live.
template <class T>
std::vector<Weak<Object>> getweakrefs(const Ref<T>& object) {
  std::vector<Weak<Object>> out(getweakrefcount(object));
  const Ref<Object> target = object;
  for (auto& w : out) w = target;
  return out;
}

namespace detail_tables {

// Storage shared by the weak containers. Entries are marked dead by their callbacks and erased
// lazily, so an object dying while someone iterates never invalidates an iterator. State sits
// behind a unique_ptr so callbacks keep pointing at it when the container moves.
template <class Key, class Entry, class Hash, class Eq>
struct Table {
  std::unordered_map<Key, Entry, Hash, Eq> map;
  std::size_t dead = 0;

  void mark_dead(Entry& e) noexcept {
    if (!e.dead) {
      e.dead = true;
      ++dead;
    }
  }
  void erase(typename std::unordered_map<Key, Entry, Hash, Eq>::iterator it) {
    if (it->second.dead) --dead;
    map.erase(it);
  }
  /// Erases dead entries once they are at least half the table (amortized O(1) per insert).
  void purge_if_worth_it() {
    if (dead * 2 < map.size() || dead == 0) return;
    for (auto it = map.begin(); it != map.end();) {
      if (it->second.dead) {
        it = map.erase(it);
      } else {
        ++it;
      }
    }
    dead = 0;
  }
  std::size_t live() const noexcept { return map.size() - dead; }
};

}  // namespace detail_tables

}  // namespace weakref

/**
 * A mapping whose values are held weakly: an entry disappears when its value dies. Python's
 * `weakref.WeakValueDictionary`, the usual building block of caches.
 *
 * ```cpp
 * memlens::WeakValueDictionary<std::string, Image> cache;
 * cache.insert_or_assign("logo", image);
 * if (auto hit = cache.get("logo")) draw(*hit);
 * ```
 */
template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>>
class WeakValueDictionary {
  // An entry is its value's weak handle, so the handle's callback finds its entry from itself.
  struct Entry : Weak<V> {
    bool dead = false;
  };
  using Table = weakref::detail_tables::Table<K, Entry, Hash, Eq>;

 public:
  WeakValueDictionary() noexcept = default;
  /// A moved-from dictionary is empty and usable.
  WeakValueDictionary(WeakValueDictionary&&) noexcept = default;
  WeakValueDictionary& operator=(WeakValueDictionary&&) noexcept = default;

  /// Maps `key` to `value`'s object, replacing any previous entry. Throws ValueError for null.
  /// Strong guarantee: if it throws (out of memory, or K's copy), the dictionary is unchanged.
  void insert_or_assign(const K& key, const Ref<V>& value) {
    if (!value) throw ValueError("WeakValueDictionary: cannot store a null Ref");
    if (!table_) table_ = std::make_unique<Table>();
    Table* table = table_.get();
    // What may throw comes before the table changes. The callback can only run once the handle
    // is in its entry: `value` keeps the object alive until then.
    Weak<V> handle(value, [table](Weak<V>& self) { table->mark_dead(static_cast<Entry&>(self)); });
    table->purge_if_worth_it();
    auto [it, inserted] = table->map.try_emplace(key);
    Entry& e = it->second;
    if (e.dead) {
      e.dead = false;
      --table->dead;
    }
    static_cast<Weak<V>&>(e) = std::move(handle);
  }

  /// The value for `key`, or null when absent or dead.
  Ref<V> get(const K& key) const {
    if (!table_) return {};
    auto it = table_->map.find(key);
    return it == table_->map.end() ? Ref<V>() : it->second.lock();
  }
  /// Whether `key` maps to a live object.
  bool contains(const K& key) const { return static_cast<bool>(get(key)); }
  /// Removes `key`; returns whether it mapped to a live object.
  bool erase(const K& key) {
    if (!table_) return false;
    auto it = table_->map.find(key);
    if (it == table_->map.end()) return false;
    const bool live = !it->second.expired();
    table_->erase(it);
    return live;
  }
  /// The number of live entries.
  std::size_t size() const noexcept { return table_ ? table_->live() : 0; }
  bool empty() const noexcept { return size() == 0; }
  void clear() noexcept { table_.reset(); }

  /// Iterates over live entries as `std::pair<const K&, Ref<V>>`. Inserting or erasing during
  /// the loop invalidates it, as for std containers; values dying during it are skipped.
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::pair<const K&, Ref<V>>;
    using difference_type = std::ptrdiff_t;
    using reference = value_type;
    using pointer = void;
    using base = typename std::unordered_map<K, Entry, Hash, Eq>::const_iterator;

    iterator() = default;
    iterator(base it, base end) : it_(it), end_(end) { skip(); }
    value_type operator*() const { return {it_->first, it_->second.lock()}; }
    iterator& operator++() {
      ++it_;
      skip();
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }

   private:
    void skip() {
      while (it_ != end_ && it_->second.expired()) ++it_;
    }
    base it_{}, end_{};
  };
  iterator begin() const {
    return table_ ? iterator(table_->map.begin(), table_->map.end()) : iterator();
  }
  iterator end() const { return table_ ? iterator(table_->map.end(), table_->map.end()) : iterator(); }

  /// Reports the keys' references and the weak handles, for an object that holds this
  /// dictionary as a member and lists it in its own traverse.
  void traverse(Visitor& visit) {
    if (!table_) return;
    for (auto& [key, entry] : table_->map) {
      memlens::traverse(visit, key);
      visit(static_cast<Weak<V>&>(entry));
    }
  }

 private:
  std::unique_ptr<Table> table_;
};

namespace detail {
/// A key held weakly, by identity.
struct IdentityHash {
  std::size_t operator()(const Object* o) const noexcept { return std::hash<const void*>{}(o); }
};
}  // namespace detail

/**
 * A mapping whose keys are objects held weakly, by identity: when a key dies its entry and its
 * value go. Python's `weakref.WeakKeyDictionary`, the way to attach data to objects you do not
 * own.
 */
template <class K, class V>
class WeakKeyDictionary {
  // An entry is its key's weak handle, so the handle's callback finds its entry from itself.
  struct Entry : Weak<K> {
    std::optional<V> value;  // released as soon as the key dies
    bool dead = false;
  };
  using Table = weakref::detail_tables::Table<const Object*, Entry, detail::IdentityHash,
                                              std::equal_to<const Object*>>;

 public:
  WeakKeyDictionary() noexcept = default;
  /// A moved-from dictionary is empty and usable.
  WeakKeyDictionary(WeakKeyDictionary&&) noexcept = default;
  WeakKeyDictionary& operator=(WeakKeyDictionary&&) noexcept = default;

  /// Maps `key`'s object to `value`, replacing any previous value. Throws ValueError for null.
  /// Strong guarantee when V's move assignment does not throw: if it throws (making the value
  /// from `value`, out of memory), the dictionary is unchanged.
  template <class U = V>
  void insert_or_assign(const Ref<K>& key, U&& value) {
    if (!key) throw ValueError("WeakKeyDictionary: cannot use a null Ref as a key");
    if (!table_) table_ = std::make_unique<Table>();
    Table* table = table_.get();
    std::optional<V> fresh(std::in_place, std::forward<U>(value));
    if (auto it = table->map.find(key.object()); it != table->map.end() && !it->second.dead) {
      it->second.value = std::move(fresh);
      return;
    }
    // What may throw comes before the table changes. The callback can only run once the handle
    // is in its entry: `key` keeps the object alive until then.
    Weak<K> handle(key, [table](Weak<K>& self) {
      Entry& e = static_cast<Entry&>(self);
      table->mark_dead(e);
      // The value's destructor may run any code, even code that clears this dictionary, so it
      // runs last, when the entry is no longer touched.
      [[maybe_unused]] std::optional<V> doomed = std::move(e.value);
      e.value.reset();
    });
    table->purge_if_worth_it();
    auto [it, inserted] = table->map.try_emplace(key.object());
    Entry& e = it->second;
    // A dead entry at this address belonged to an earlier object that was freed.
    if (e.dead) {
      e.dead = false;
      --table->dead;
    }
    static_cast<Weak<K>&>(e) = std::move(handle);
    try {
      e.value = std::move(fresh);
    } catch (...) {
      table->erase(it);
      throw;
    }
  }

  /// A copy of the value for `key`, or nullopt.
  std::optional<V> get(const Ref<K>& key) const {
    const Entry* e = find(key);
    return e ? e->value : std::nullopt;
  }
  /// A pointer to the value for `key`, or nullptr; valid until the key dies or is erased.
  V* find_value(const Ref<K>& key) {
    Entry* e = const_cast<Entry*>(find(key));
    return e ? &*e->value : nullptr;
  }
  bool contains(const Ref<K>& key) const { return find(key) != nullptr; }
  /// Removes `key`; returns whether it was present.
  bool erase(const Ref<K>& key) {
    if (!key || !table_) return false;
    auto it = table_->map.find(key.object());
    if (it == table_->map.end() || it->second.dead) return false;
    table_->erase(it);
    return true;
  }
  /// The number of live keys.
  std::size_t size() const noexcept { return table_ ? table_->live() : 0; }
  bool empty() const noexcept { return size() == 0; }
  void clear() noexcept { table_.reset(); }

  /// Iterates over live entries as `std::pair<Ref<K>, V&>` (the Ref keeps the key alive while
  /// you hold it). Inserting or erasing during the loop invalidates it.
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::pair<Ref<K>, V&>;
    using difference_type = std::ptrdiff_t;
    using reference = value_type;
    using pointer = void;
    using base = typename decltype(Table::map)::iterator;

    iterator() = default;
    iterator(base it, base end) : it_(it), end_(end) { skip(); }
    value_type operator*() const { return {it_->second.lock(), *it_->second.value}; }
    iterator& operator++() {
      ++it_;
      skip();
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }

   private:
    void skip() {
      while (it_ != end_ && it_->second.expired()) ++it_;
    }
    base it_{}, end_{};
  };
  iterator begin() const {
    return table_ ? iterator(table_->map.begin(), table_->map.end()) : iterator();
  }
  iterator end() const { return table_ ? iterator(table_->map.end(), table_->map.end()) : iterator(); }

  /// Reports the values' strong references and the keys' weak handles, for an object that
  /// holds this dictionary as a member and lists it in its own traverse.
  void traverse(Visitor& visit) {
    if (!table_) return;
    for (auto& [address, entry] : table_->map) {
      visit(static_cast<Weak<K>&>(entry));
      if (entry.value) memlens::traverse(visit, *entry.value);
    }
  }

 private:
  const Entry* find(const Ref<K>& key) const {
    if (!key || !table_) return nullptr;
    auto it = table_->map.find(key.object());
    if (it == table_->map.end() || it->second.dead || it->second.expired()) return nullptr;
    return &it->second;
  }
  std::unique_ptr<Table> table_;
};

/// A set of objects held weakly, by identity: members vanish when they die. Python's
/// `weakref.WeakSet`.
template <class T>
class WeakSet {
 public:
  /// Adds the object (a no-op if present). Throws ValueError for null.
  void add(const Ref<T>& object) {
    if (!items_.contains(object)) items_.insert_or_assign(object, std::monostate{});
  }
  /// Removes the object if present.
  void discard(const Ref<T>& object) { items_.erase(object); }
  bool contains(const Ref<T>& object) const { return items_.contains(object); }
  /// The number of live members.
  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  void clear() noexcept { items_.clear(); }

  /// Iterates over live members as Ref<T>.
  class iterator {
    using base = typename WeakKeyDictionary<T, std::monostate>::iterator;

   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Ref<T>;
    using difference_type = std::ptrdiff_t;
    using reference = Ref<T>;
    using pointer = void;

    iterator() = default;
    explicit iterator(base it) : it_(it) {}
    Ref<T> operator*() const { return (*it_).first; }
    iterator& operator++() {
      ++it_;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++it_;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }

   private:
    base it_{};
  };
  iterator begin() const { return iterator(items_.begin()); }
  iterator end() const { return iterator(items_.end()); }

  /// Reports the weak handles, for an object that lists this set in its traverse.
  void traverse(Visitor& visit) { items_.traverse(visit); }

 private:
  WeakKeyDictionary<T, std::monostate> items_;
};

/**
 * A bound method that holds its object weakly: Python's `weakref.WeakMethod`. Calling it calls
 * the method if the object is alive; it returns whether it did (void methods) or the result in
 * an optional. Event systems use it so a subscription does not keep the subscriber alive.
 */
template <class T, class Method>
class WeakMethod {
 public:
  WeakMethod(const Ref<T>& object, Method method) : object_(object), method_(method) {
    if (!object) throw ValueError("WeakMethod: cannot bind a method to a null Ref");
  }

  template <class... Args>
  auto operator()(Args&&... args) const {
    using R = std::invoke_result_t<Method, T&, Args&&...>;
    Ref<T> self = object_.lock();
    if constexpr (std::is_void_v<R>) {
      if (!self) return false;
      std::invoke(method_, *self, std::forward<Args>(args)...);
      return true;
    } else {
      if (!self) return std::optional<R>();
      return std::optional<R>(std::invoke(method_, *self, std::forward<Args>(args)...));
    }
  }

  /// The object, or null once it is gone.
  Ref<T> object() const noexcept { return object_.lock(); }
  /// Whether the object is still alive.
  bool alive() const noexcept { return !object_.expired(); }

 private:
  Weak<T> object_;
  Method method_;
};

template <class T, class Method>
WeakMethod(Ref<T>, Method) -> WeakMethod<T, Method>;

namespace weakref {

/**
 * Runs a function once when an object dies: Python's `weakref.finalize`. Unlike a Weak
 * callback, the registration outlives this handle; the handle only lets you query, run early
 * or cancel it. The function must not hold a strong reference to the object, or it never dies.
 * Finalizers of objects still alive at exit do not run (Python's run-at-exit is not copied).
 */
class finalize {
  struct State {
    Weak<Object> watch;
    std::function<void()> fn;
    Ref<Object> peek() const { return watch.lock(); }
  };

 public:
  /// What `detach()` hands back: the object (if still alive) and the function.
  struct Detached {
    Ref<Object> object;
    std::function<void()> function;
  };

  template <class T, class F>
  finalize(const Ref<T>& object, F&& fn) : state_(std::make_shared<State>()) {
    if (!object) throw ValueError("finalize: cannot watch a null Ref");
    state_->fn = std::function<void()>(std::forward<F>(fn));
    // The callback owns the state until it runs or is detached, so the handle may go first.
    state_->watch = Weak<Object>(Ref<Object>(object), [keep = state_] {
      auto pending = std::move(keep->fn);
      keep->fn = nullptr;
      if (pending) pending();
    });
  }

  /// Whether the function has yet to run (and was not detached).
  bool alive() const noexcept { return state_ && state_->watch.has_callback(); }

  /// Runs the function now if it is still pending; returns whether it ran.
  bool operator()() {
    auto detached = detach();
    if (!detached) return false;
    if (detached->function) detached->function();
    return true;
  }

  /// Cancels the registration and returns what it held, or nullopt if it already ran.
  std::optional<Detached> detach() {
    if (!alive()) return std::nullopt;
    Detached out{state_->watch.lock(), std::move(state_->fn)};
    state_->fn = nullptr;
    state_->watch.reset();  // drops the callback and its hold on the state
    return out;
  }

  /// The object while the registration is pending and the object alive, else null.
  Ref<Object> peek() const { return alive() ? state_->peek() : Ref<Object>(); }

 private:
  std::shared_ptr<State> state_;
};

/// Python spells the weak containers `weakref.WeakValueDictionary` and so on: so may C++.
using memlens::WeakKeyDictionary;
using memlens::WeakMethod;
using memlens::WeakSet;
using memlens::WeakValueDictionary;

}  // namespace weakref

using weakref::finalize;

}  // namespace memlens
