// memlens: the caches of seed exercise 3, a weak one and the regular (strong) one it is
// contrasted with.
#pragma once

#include <cstddef>
#include <functional>
#include <unordered_map>

#include "memlens/errors.hpp"
#include "memlens/weakref.hpp"

namespace memlens {

/**
 * A cache that holds its values weakly (seed exercise 3, built on WeakValueDictionary): an
 * entry vanishes by itself when the last strong reference to its value elsewhere goes, so the
 * cache never keeps an object alive.
 *
 * ```cpp
 * memlens::WeakCache<std::string, Image> cache;
 * auto logo = memlens::make<Image>("logo.png");
 * cache.set("logo", logo);
 * cache.get("logo");  // logo's object; the cache added no strong reference
 * logo.reset();       // the image dies here...
 * cache.get("logo");  // ...so this is null, and cache.size() == 0
 * ```
 */
template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>>
class WeakCache {
 public:
  /// Maps `key` to `value`'s object without adding a strong reference, replacing any previous
  /// entry. Throws ValueError for a null Ref (Python cannot weakly reference None either).
  void set(const K& key, const Ref<V>& value) {
    if (!value) throw ValueError("WeakCache: cannot cache a null Ref");
    entries_.insert_or_assign(key, value);
  }

  /// The cached object for `key`, or null when the key is absent or its object was destroyed.
  /// The Ref returned keeps the object (and so the entry) alive while it is held.
  Ref<V> get(const K& key) const { return entries_.get(key); }

  /// Whether `key` maps to a live object.
  bool contains(const K& key) const { return entries_.contains(key); }

  /// Removes `key`; returns whether it mapped to a live object. The object itself is not
  /// affected: the cache never owned it.
  bool erase(const K& key) { return entries_.erase(key); }

  /// The number of entries whose object is alive; dead entries never count.
  std::size_t size() const noexcept { return entries_.size(); }

  /// Removes every entry.
  void clear() noexcept { entries_.clear(); }

 private:
  WeakValueDictionary<K, V, Hash, Eq> entries_;
};

/**
 * The regular dict cache that WeakCache is compared with: same interface, but it holds strong
 * references, so every cached object lives until its entry is erased or the cache cleared.
 *
 * ```cpp
 * memlens::StrongCache<std::string, Image> cache;
 * auto logo = memlens::make<Image>("logo.png");
 * cache.set("logo", logo);
 * logo.reset();       // the cache still holds the image...
 * cache.get("logo");  // ...so it is still here, and cache.size() == 1
 * ```
 */
template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>>
class StrongCache {
 public:
  /// Maps `key` to `value`'s object, adding a strong reference, and drops the reference to any
  /// previous value. Throws ValueError for a null Ref, as WeakCache does.
  void set(const K& key, const Ref<V>& value) {
    if (!value) throw ValueError("StrongCache: cannot cache a null Ref");
    entries_.insert_or_assign(key, value);
  }

  /// The cached object for `key`, or null when the key is absent.
  Ref<V> get(const K& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? Ref<V>() : it->second;
  }

  /// Whether `key` is cached.
  bool contains(const K& key) const { return entries_.contains(key); }

  /// Removes `key` and drops the cache's reference to its object (which dies if that was the
  /// last one); returns whether the key was present.
  bool erase(const K& key) { return entries_.erase(key) != 0; }

  /// The number of entries: all of them, since the cache keeps every object alive.
  std::size_t size() const noexcept { return entries_.size(); }

  /// Removes every entry, dropping the cache's references.
  void clear() noexcept { entries_.clear(); }

 private:
  std::unordered_map<K, Ref<V>, Hash, Eq> entries_;
};

}  // namespace memlens
