// Seed exercise 2, demonstrate reference counting: `track_references(obj)` returns the
// (operation, ref_count) history of assignment, function calls, container storage and deletion.
#include <cstddef>
#include <memlens/memlens.hpp>
#include <string>
#include <vector>

#include "../../examples/track_references.hpp"
#include "memlens_test.hpp"

namespace test_e02 {

using List = std::vector<int>;
using History = std::vector<std::pair<std::string, std::size_t>>;

std::vector<std::string> operations(const History& history) {
  std::vector<std::string> out;
  for (const auto& step : history) out.push_back(step.first);
  return out;
}

std::vector<std::size_t> counts(const History& history) {
  std::vector<std::size_t> out;
  for (const auto& step : history) out.push_back(step.second);
  return out;
}

}  // namespace test_e02

using memlens_examples::track_references;
using test_e02::List;

TEST_CASE("e02: track_references covers assignment and calls and containers and deletion",
          "[exercise][e02]") {
  auto data = memlens::make<List>(List{1, 2, 3});
  const auto history = track_references(data);
  CHECK(test_e02::operations(history) == std::vector<std::string>{
                                             "on entry (the caller's references)",
                                             "assigned to another variable",
                                             "passed to a function by value (inside)",
                                             "after that function returned",
                                             "passed to a function by const& (inside)",
                                             "stored in a std::vector",
                                             "stored in a WeakValueDictionary",
                                             "deleted the other variable",
                                             "removed from the std::vector",
                                         });
}

TEST_CASE("e02: the counts rise and fall with each operation", "[exercise][e02]") {
  auto data = memlens::make<List>(List{1, 2, 3});
  const auto history = track_references(data);
  // creation 1; +1 alias; +1 by-value parameter, gone after the call; const& adds none;
  // +1 vector slot; the weak dictionary adds none; -1 alias; -1 vector slot.
  CHECK(test_e02::counts(history) == std::vector<std::size_t>{1, 2, 3, 2, 2, 3, 3, 2, 1});
  CHECK(memlens::sys::getrefcount(data) == 1);  // everything it added is gone
  CHECK(*data == List{1, 2, 3});                // and the object is untouched
}

TEST_CASE("e02: the counts are relative to the caller's references", "[exercise][e02]") {
  auto data = memlens::make<List>(List{1, 2, 3});
  auto second_name = data;
  const auto history = track_references(data);
  CHECK(test_e02::counts(history) == std::vector<std::size_t>{2, 3, 4, 3, 3, 4, 4, 3, 2});
  CHECK(memlens::sys::getrefcount(data) == 2);
}

TEST_CASE("e02: weak storage changes nothing and leaves no trace", "[exercise][e02]") {
  auto data = memlens::make<List>();
  const auto history = track_references(data);
  REQUIRE(history.size() == 9);
  CHECK(history[6].second == history[5].second);        // WeakValueDictionary: count unchanged
  CHECK(memlens::weakref::getweakrefcount(data) == 0);  // its weak reference went with it
}

TEST_CASE("e02: deleting the caller's last reference destroys the object", "[exercise][e02]") {
  auto data = memlens::make<List>(List{1, 2, 3});
  track_references(data);
  memlens::Weak<List> probe = data;
  data.reset();
  CHECK(probe.expired());
}

TEST_CASE("e02: track_references works for any object type", "[exercise][e02]") {
  struct Node : memlens::Object {
    memlens::Ref<Node> next;
    void traverse(memlens::Visitor& visit) override { visit(next); }
  };
  auto node = memlens::make<Node>();
  CHECK(test_e02::counts(track_references(node)) ==
        std::vector<std::size_t>{1, 2, 3, 2, 2, 3, 3, 2, 1});
  // A cached small integer has the cache's reference on top of ours.
  auto small = memlens::integer(42);
  CHECK(test_e02::counts(track_references(small)).front() == memlens::sys::getrefcount(small));
  CHECK(memlens::sys::getrefcount(small) >= 2);
}
