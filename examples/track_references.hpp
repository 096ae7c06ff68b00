// Seed exercise 2's `track_references`, a demo function rather than a library part: shared by
// examples/e02_reference_counting.cpp, which prints its table, and by
// tests/exercises/e02_reference_counting.cpp, which checks it.
#pragma once

#include <cstddef>
#include <memlens/sys.hpp>
#include <memlens/weakref.hpp>
#include <string>
#include <utility>
#include <vector>

namespace memlens_examples {

/**
 * Runs an object through the operations that change (or do not change) its reference count
 * and returns, for each, what was done and `sys::getrefcount` right after it. Everything it
 * adds is gone when it returns, so the caller's count is as before.
 *
 * ```cpp
 * auto data = memlens::make<std::vector<int>>(std::vector{1, 2, 3});
 * for (const auto& [operation, count] : track_references(data)) fmt::print(...);
 * ```
 * For a fresh object the counts are 1, 2, 3, 2, 2, 3, 3, 2, 1; CPython's getrefcount would
 * show one more at each step, as it counts its own argument.
 */
template <class T>
std::vector<std::pair<std::string, std::size_t>> track_references(const memlens::Ref<T>& obj) {
  std::vector<std::pair<std::string, std::size_t>> history;
  const auto record = [&history](std::string operation, const memlens::Ref<T>& ref) {
    history.emplace_back(std::move(operation), memlens::sys::getrefcount(ref));
  };

  record("on entry (the caller's references)", obj);

  auto alias = obj;
  record("assigned to another variable", obj);

  [&record](memlens::Ref<T> parameter) {
    record("passed to a function by value (inside)", parameter);
  }(obj);
  record("after that function returned", obj);

  [&record](const memlens::Ref<T>& parameter) {
    record("passed to a function by const& (inside)", parameter);
  }(obj);

  std::vector<memlens::Ref<T>> list;
  list.push_back(obj);
  record("stored in a std::vector", obj);

  memlens::WeakValueDictionary<std::string, T> weak;
  weak.insert_or_assign("obj", obj);
  record("stored in a WeakValueDictionary", obj);

  alias.reset();
  record("deleted the other variable", obj);

  list.clear();
  record("removed from the std::vector", obj);
  return history;
}

}  // namespace memlens_examples
