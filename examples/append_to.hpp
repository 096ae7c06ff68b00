// Seed challenge 2's functions, shared by examples/c02_shared_mutable_state.cpp and its test:
// a mutable default argument is one object, made once and shared by every call that uses it.
#pragma once

#include <memlens/object.hpp>
#include <vector>

namespace memlens_examples {

using List = std::vector<int>;

/// The default list of `append_to`: one object for every call, as Python evaluates `[]` once
/// when the `def` runs.
inline memlens::Ref<List> shared_default() {
  static const memlens::Ref<List> target = memlens::make<List>();
  return target;
}

/// The bug: every call without a target appends to the same list.
inline memlens::Ref<List> append_to(int element, memlens::Ref<List> target = shared_default()) {
  target->push_back(element);
  return target;
}

/// The fix: a null default is the sentinel for "a new list for this call".
inline memlens::Ref<List> append_to_fixed(int element, memlens::Ref<List> target = nullptr) {
  if (!target) target = memlens::make<List>();
  target->push_back(element);
  return target;
}

}  // namespace memlens_examples
