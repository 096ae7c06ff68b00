// memlens: the cache of seed exercise 6, a weak cache whose entries also expire after a time to
// live.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <iterator>
#include <optional>
#include <ratio>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "memlens/errors.hpp"
#include "memlens/weakref.hpp"

namespace memlens {

/// What a TTLWeakCache has counted since it was made. Every entry that leaves the cache because
/// it expired or its object died is counted once, in `expired` or in `collected`;
/// `evictions == expired + collected` always.
struct TTLCacheStats {
  /// get() calls that found a live, unexpired entry.
  std::size_t hits = 0;
  /// get() calls that found nothing: no entry, or one that had expired or died.
  std::size_t misses = 0;
  /// Entries removed because they expired or their object died.
  std::size_t evictions = 0;
  /// Entries whose deadline had passed when the cache found them, whether their object was alive
  /// or not: once an entry has expired, why it cannot be used no longer matters.
  std::size_t expired = 0;
  /// Entries whose object died before their deadline.
  std::size_t collected = 0;
};

namespace detail {

/// `-5ms`, `0s`, `3[1/50]s`: a duration as a ValueError message names it.
template <class Rep, class Period>
std::string duration_text(std::chrono::duration<Rep, Period> d) {
  std::string text;
  if constexpr (std::is_arithmetic_v<Rep>) {
    text = std::to_string(d.count());
  } else {
    text = "a duration of";
  }
  if constexpr (std::is_same_v<Period, std::nano>) {
    return text + "ns";
  } else if constexpr (std::is_same_v<Period, std::micro>) {
    return text + "us";
  } else if constexpr (std::is_same_v<Period, std::milli>) {
    return text + "ms";
  } else if constexpr (std::is_same_v<Period, std::ratio<1>>) {
    return text + "s";
  } else if constexpr (std::is_same_v<Period, std::ratio<60>>) {
    return text + "min";
  } else if constexpr (std::is_same_v<Period, std::ratio<3600>>) {
    return text + "h";
  } else if constexpr (Period::den == 1) {
    return text + "[" + std::to_string(Period::num) + "]s";
  } else {
    return text + "[" + std::to_string(Period::num) + "/" + std::to_string(Period::den) + "]s";
  }
}

}  // namespace detail

/**
 * A weak cache (seed exercise 6, built on WeakValueDictionary) whose entries also expire: an
 * entry set at time t with time to live d can be read until t + d, and is gone from t + d on, or
 * as soon as its object dies, whichever comes first. The cache never keeps an object alive.
 *
 * Nothing runs in the background: entries that expired or died are removed, and counted in
 * stats(), when the cache finds them, which is on every access to their key, on size(), purge()
 * and clear(), and now and then on set() (so that keys never read again do not pile up).
 *
 * `Clock` is std::chrono::steady_clock or anything with its member types and a `now()`, static
 * or not: the cache keeps a copy and asks it, so a test can pass a clock it moves by hand.
 *
 * Not thread-safe, like WeakCache: one thread at a time, reading included (get() counts).
 *
 * ```cpp
 * memlens::TTLWeakCache<std::string, Image> cache(std::chrono::seconds(5));
 * auto logo = memlens::make<Image>("logo.png");
 * cache.set("logo", logo, std::chrono::seconds(10));  // this entry's own ttl
 * cache.get("logo");  // logo's object, for ten seconds; a hit
 * logo.reset();       // the image dies here...
 * cache.get("logo");  // ...so this is null, a miss; stats().collected == 1
 * ```
 */
template <class K, class V, class Clock = std::chrono::steady_clock>
class TTLWeakCache {
 public:
  /// The clock's own types: ttls are in its unit, so a hand-moved test clock needs no casts.
  using clock_type = Clock;
  using duration = typename Clock::duration;
  using time_point = typename Clock::time_point;

  /// An empty cache whose entries live `default_ttl` unless set() says otherwise (the seed's
  /// `TTLWeakCache(default_ttl=60)`). Throws ValueError unless `default_ttl` is positive.
  explicit TTLWeakCache(duration default_ttl = std::chrono::seconds(60))
      : TTLWeakCache(default_ttl, Clock()) {}

  /// The same, reading the time from `clock` (a copy is kept).
  TTLWeakCache(duration default_ttl, Clock clock)
      : default_ttl_(checked_ttl(default_ttl, "default_ttl")), clock_(std::move(clock)) {}

  /// Maps `key` to `value`'s object for `ttl` (the default ttl when none is given) from now,
  /// without adding a strong reference, and replaces any previous entry (one that had expired or
  /// died is counted as such first). Throws ValueError for a null Ref or a ttl that is not
  /// positive, adding or replacing nothing then. A ttl longer than the clock can count never
  /// expires.
  void set(const K& key, const Ref<V>& value, std::optional<duration> ttl = {}) {
    if (!value) throw ValueError("TTLWeakCache: cannot cache a null Ref");
    const duration lifetime = ttl ? checked_ttl(*ttl, "ttl") : default_ttl_;
    const time_point now = clock_.now();
    if (deadlines_.size() >= sweep_at_) {
      purge(now);
      sweep_at_ = std::max<std::size_t>(min_sweep, 2 * deadlines_.size());
    }
    if (auto it = deadlines_.find(key); it != deadlines_.end()) usable(it, now);
    // The deadline's slot first, so that a throw from either table leaves this key's entry as
    // it was (or absent), never an entry without a deadline.
    auto [it, inserted] = deadlines_.try_emplace(key);
    try {
      entries_.insert_or_assign(key, value);
    } catch (...) {
      if (inserted) deadlines_.erase(it);
      throw;
    }
    it->second = deadline(now, lifetime);
  }

  /// The cached object for `key`, or null when the key is absent, expired or its object died
  /// (then the entry is removed). Counts a hit or a miss. The Ref returned keeps the object alive
  /// while it is held, but not the entry past its deadline.
  Ref<V> get(const K& key) {
    Ref<V> value = find(key, clock_.now());
    ++(value ? stats_.hits : stats_.misses);
    return value;
  }

  /// Whether get(key) would find an object, without counting a hit or a miss.
  bool contains(const K& key) { return static_cast<bool>(find(key, clock_.now())); }

  /// Removes `key`; returns whether it mapped to a live, unexpired object (an entry that had
  /// expired or died is counted as such). The object itself is not affected.
  bool erase(const K& key) {
    auto it = deadlines_.find(key);
    if (it == deadlines_.end() || !usable(it, clock_.now())) return false;
    entries_.erase(key);
    deadlines_.erase(it);
    return true;
  }

  /// The number of live, unexpired entries. Removes (and counts) the others, so it takes time
  /// in proportion to the number of entries.
  std::size_t size() {
    purge();
    return deadlines_.size();
  }

  /// Removes every entry that has expired or whose object died; returns how many.
  std::size_t purge() { return purge(clock_.now()); }

  /// Removes every entry. Those that had already expired or died are counted first, so that
  /// stats() does not depend on whether anyone looked before.
  void clear() {
    purge();
    entries_.clear();
    deadlines_.clear();
  }

  /// The counts so far. An entry is counted when the cache finds it expired or dead (see the
  /// class comment): call purge() first to count every entry that has gone by now.
  TTLCacheStats stats() const noexcept { return stats_; }

 private:
  // A full sweep from set() once the table has doubled since the last one: amortized O(1).
  static constexpr std::size_t min_sweep = 16;

  static duration checked_ttl(duration ttl, const char* what) {
    if (ttl <= duration::zero()) {
      throw ValueError(std::string("TTLWeakCache: ") + what + " must be positive, got " +
                       detail::duration_text(ttl));
    }
    return ttl;
  }

  // now + ttl, or the clock's last instant when that sum would overflow.
  static time_point deadline(time_point now, duration ttl) {
    const duration since_epoch = now.time_since_epoch();
    if (since_epoch > duration::zero() && ttl > duration::max() - since_epoch) {
      return time_point::max();
    }
    return now + ttl;
  }

  using DeadlineTable = std::unordered_map<K, time_point>;

  // The object of the entry at `it` if the entry is usable at `now`; else null, and the entry
  // is removed and counted. The object is only looked at if the deadline has not passed: an
  // expired entry counts as expired whatever became of its object.
  Ref<V> usable(typename DeadlineTable::iterator it, time_point now) {
    if (now >= it->second) {
      remove(it, stats_.expired);
      return {};
    }
    Ref<V> value = entries_.get(it->first);
    if (!value) remove(it, stats_.collected);
    return value;
  }

  Ref<V> find(const K& key, time_point now) {
    auto it = deadlines_.find(key);
    return it == deadlines_.end() ? Ref<V>() : usable(it, now);
  }

  void remove(typename DeadlineTable::iterator it, std::size_t& reason) {
    entries_.erase(it->first);
    deadlines_.erase(it);
    ++reason;
    ++stats_.evictions;
  }

  std::size_t purge(time_point now) {
    std::size_t removed = 0;
    for (auto it = deadlines_.begin(); it != deadlines_.end();) {
      auto next = std::next(it);
      if (!usable(it, now)) ++removed;
      it = next;
    }
    return removed;
  }

  WeakValueDictionary<K, V> entries_;
  DeadlineTable deadlines_;  // one per entry of entries_, alive or not
  duration default_ttl_;
  Clock clock_;
  TTLCacheStats stats_;
  std::size_t sweep_at_ = min_sweep;
};

}  // namespace memlens
