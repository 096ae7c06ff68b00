// Tests of memlens/visit.hpp: what traverse reports, through every supported member shape.
#include <memlens/visit.hpp>

#include <memlens/object.hpp>

#include <algorithm>
#include <array>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "memlens_test.hpp"

namespace test_visit {

using memlens::make;
using memlens::Ref;

struct Leaf : memlens::Object {
  int id = 0;
};

/// A plain struct that declares its own references, used as a member by value.
struct Pair {
  Ref<Leaf> left, right;
  void traverse(memlens::Visitor& visit) { visit(left, right); }
};

/// A third-party type described through the ADL hook.
struct Foreign {
  Ref<Leaf> hidden;
};
inline void memlens_traverse(memlens::Visitor& visit, Foreign& f) { visit(f.hidden); }

struct Everything : memlens::Object {
  Ref<Leaf> direct;
  Ref<Leaf> null_ref;
  std::vector<Ref<Leaf>> vec;
  std::list<std::optional<Ref<Leaf>>> list_of_optionals;
  std::map<std::string, std::vector<Ref<Leaf>>> nested;
  std::map<Ref<Leaf>, int> keyed;  // keys are const: reported, but cannot be taken
  std::unordered_map<int, std::pair<int, Ref<Leaf>>> pairs;
  std::tuple<int, Ref<Leaf>, std::string> tuple;
  std::variant<int, Ref<Leaf>> variant;
  std::variant<int, Ref<Leaf>> variant_int{7};
  std::unique_ptr<Ref<Leaf>> owned;
  std::array<Ref<Leaf>, 2> array;
  Ref<Leaf> c_array[2];
  Pair pair;
  Foreign foreign;
  std::deque<int> numbers{1, 2, 3};  // skipped at compile time
  std::string text = "no refs here";

  void traverse(memlens::Visitor& visit) override {
    visit(memlens::named("direct", direct), null_ref, vec, list_of_optionals, nested, keyed, pairs,
          tuple, variant, variant_int, owned, array, c_array, memlens::named("pair", pair),
          foreign, numbers, text);
  }
};

struct Collected {
  std::vector<const memlens::Object*> targets;
  std::vector<std::string> names;
  int takeable = 0;
};

inline Collected collect(memlens::Object& o) {
  Collected out;
  memlens::for_each_edge(o, [&](const memlens::Edge& e) {
    out.targets.push_back(&e.referent());
    out.names.emplace_back(e.name());
    out.takeable += e.can_take();
  });
  return out;
}

}  // namespace test_visit

using namespace test_visit;

TEST_CASE("may_hold_refs decides at compile time what traverse walks", "[visit]") {
  using memlens::detail::may_hold_refs;
  STATIC_REQUIRE(may_hold_refs<Ref<Leaf>>);
  STATIC_REQUIRE(may_hold_refs<std::vector<std::map<int, std::optional<Ref<Leaf>>>>>);
  STATIC_REQUIRE(may_hold_refs<std::variant<int, std::tuple<int, Ref<Leaf>>>>);
  STATIC_REQUIRE(may_hold_refs<Pair>);
  STATIC_REQUIRE(may_hold_refs<Foreign>);
  STATIC_REQUIRE(may_hold_refs<const Ref<Leaf>>);
  STATIC_REQUIRE_FALSE(may_hold_refs<int>);
  STATIC_REQUIRE_FALSE(may_hold_refs<std::string>);
  STATIC_REQUIRE_FALSE(may_hold_refs<std::vector<std::map<int, std::string>>>);
  STATIC_REQUIRE_FALSE(may_hold_refs<std::shared_ptr<Ref<Leaf>>>);  // shared: would count twice
}

TEST_CASE("traverse reports every reference in every supported shape once", "[visit]") {
  auto e = make<Everything>();
  std::vector<Ref<Leaf>> leaves;
  auto leaf = [&] {
    leaves.push_back(make<Leaf>());
    leaves.back()->id = static_cast<int>(leaves.size());
    return leaves.back();
  };
  e->direct = leaf();
  e->vec = {leaf(), leaf()};
  e->list_of_optionals = {leaf(), std::nullopt};
  e->nested["a"] = {leaf()};
  e->keyed[leaf()] = 1;
  e->pairs[1] = {0, leaf()};
  std::get<1>(e->tuple) = leaf();
  e->variant = leaf();
  e->owned = std::make_unique<Ref<Leaf>>(leaf());
  e->array = {leaf(), nullptr};
  e->c_array[1] = leaf();
  e->pair.left = leaf();
  e->pair.right = leaf();
  e->foreign.hidden = leaf();

  const Collected seen = collect(*e);
  REQUIRE(seen.targets.size() == leaves.size());
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    CHECK(std::count(seen.targets.begin(), seen.targets.end(), leaves[i].object()) == 1);
  }
  CHECK(seen.takeable == static_cast<int>(leaves.size()) - 1);  // all but the map key
  CHECK(seen.names.front() == "direct");
  CHECK(std::count(seen.names.begin(), seen.names.end(), "pair") == 2);
  CHECK(std::count(seen.names.begin(), seen.names.end(), "") ==
        static_cast<std::ptrdiff_t>(leaves.size()) - 3);
}

TEST_CASE("Edge::take detaches the reference without changing the count", "[visit]") {
  struct Holder : memlens::Object {
    Ref<Leaf> a;
    std::vector<Ref<Leaf>> more;
    void traverse(memlens::Visitor& visit) override { visit(a, more); }
  };
  auto h = make<Holder>();
  auto leaf = make<Leaf>();
  h->a = leaf;
  h->more = {leaf, leaf};
  REQUIRE(memlens::detail::Access::refcnt(leaf.object()) == 4);
  std::vector<Ref<memlens::Object>> taken;
  memlens::for_each_edge(*h, [&](const memlens::Edge& e) { taken.push_back(e.take()); });
  CHECK(taken.size() == 3);
  CHECK_FALSE(h->a);
  CHECK(h->more.size() == 2);
  CHECK_FALSE(h->more[0]);
  CHECK(memlens::detail::Access::refcnt(leaf.object()) == 4);  // moved into `taken`
  taken.clear();
  CHECK(memlens::detail::Access::refcnt(leaf.object()) == 1);
}

TEST_CASE("boxed values are traversed automatically", "[visit]") {
  auto a = make<Leaf>();
  auto b = make<Leaf>();
  auto list = make<std::vector<Ref<Leaf>>>();
  list->push_back(a);
  list->push_back(b);
  auto map = make<std::map<int, Ref<Leaf>>>();
  (*map)[1] = a;
  Ref<memlens::Object> as_object = list;
  auto seen = collect(*const_cast<memlens::Object*>(as_object.object()));
  CHECK(seen.targets == std::vector<const memlens::Object*>{a.object(), b.object()});
  auto seen_map = collect(*const_cast<memlens::Object*>(Ref<memlens::Object>(map).object()));
  CHECK(seen_map.targets == std::vector<const memlens::Object*>{a.object()});
}

TEST_CASE("objects without traverse report nothing", "[visit]") {
  auto leaf = make<Leaf>();
  CHECK(collect(*leaf).targets.empty());
  auto numbers = make<std::vector<int>>(10, 1);
  CHECK(collect(*const_cast<memlens::Object*>(numbers.object())).targets.empty());
}
