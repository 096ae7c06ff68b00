// Tests of sys::type_stats: live objects by dynamic type, kept by make and destruction.
#include <memlens/gc.hpp>
#include <memlens/sys.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "memlens_test.hpp"
#include "unit/gc_test.hpp"

namespace test_type_stats {

struct Plain : memlens::Object {
  int value = 0;
};
struct Linked : memlens::Object {
  memlens::Ref<Linked> next;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};
struct Base : memlens::Object {
  double x = 0;
};
struct Derived : Base {
  double y = 0;
};
struct Throws : memlens::Object {
  explicit Throws(bool fail) {
    if (fail) throw std::runtime_error("no");
  }
};
struct Mixin {
  virtual ~Mixin() = default;
  long tag = 7;
};
// The Object base is not at offset 0, and the type is over-aligned: both unusual layouts.
struct alignas(64) Unusual : Mixin, memlens::Object {
  char bytes[100] = {};
};
struct Resurrects : memlens::Object {
  memlens::Ref<Resurrects> self;
  static inline memlens::Ref<Resurrects> saved;
  void traverse(memlens::Visitor& visit) override { visit(self); }
  void finalize() override { saved = memlens::Ref<Resurrects>(this); }
};

/// The entry for `name`, or a default one (count 0) when type_stats() has none.
inline memlens::sys::TypeStats stats_of(const std::string& name) {
  for (auto& s : memlens::sys::type_stats()) {
    if (s.type_name == name) return s;
  }
  return {};
}

/// getsizeof through Ref<Object>: measured as the dynamic type, as make recorded it.
template <class T>
std::size_t block_of(const memlens::Ref<T>& r) {
  return memlens::sys::getsizeof(memlens::Ref<memlens::Object>(r));
}

template <class T>
std::string name_of() {
  return memlens::type_name(memlens::make<T>());
}

}  // namespace test_type_stats

using namespace test_type_stats;
using memlens::make;
using memlens::Ref;

TEST_CASE("type_stats counts live objects created and their bytes per type", "[sys][type_stats]") {
  const std::string name = name_of<Plain>();
  const auto before = stats_of(name);
  CHECK(before.count == 0);
  std::vector<Ref<Plain>> objects;
  for (int i = 0; i < 5; ++i) objects.push_back(make<Plain>());
  auto now = stats_of(name);
  CHECK(now.count == 5);
  CHECK(now.created == before.created + 5);
  CHECK(now.bytes == 5 * block_of(objects[0]));
  objects.resize(2);
  now = stats_of(name);
  CHECK(now.count == 2);
  CHECK(now.bytes == 2 * block_of(objects[0]));
  CHECK(now.created == before.created + 5);
  CHECK(now.collected == before.collected);
}

TEST_CASE("type_stats names boxed values by their type and objects by their dynamic type",
          "[sys][type_stats]") {
  auto numbers = make<std::vector<int>>(3, 7);
  auto as_base = Ref<Base>(make<Derived>());
  const auto boxed = stats_of(memlens::type_name(numbers));
  CHECK(boxed.count >= 1);
  CHECK(memlens::type_name(numbers).find("vector") != std::string::npos);
  CHECK(stats_of(memlens::type_name(as_base)).count == 1);
  CHECK(memlens::type_name(as_base).find("Derived") != std::string::npos);
  CHECK(stats_of(memlens::type_name(as_base)).bytes == block_of(as_base));
}

TEST_CASE("type_stats: a constructor that throws creates nothing", "[sys][type_stats]") {
  const std::string name = memlens::type_name(make<Throws>(false));  // registers the type
  const auto before = stats_of(name);
  CHECK_THROWS_AS(make<Throws>(true), std::runtime_error);
  const auto after = stats_of(name);
  CHECK(after.created == before.created);
  CHECK(after.count == 0);
}

TEST_CASE("type_stats counts objects of unusual layouts when they die", "[sys][type_stats]") {
  const std::string name = name_of<Unusual>();
  {
    auto a = make<Unusual>();
    auto b = make<Unusual>();
    CHECK(stats_of(name).count == 2);
    CHECK(stats_of(name).bytes == 2 * block_of(a));
  }
  CHECK(stats_of(name).count == 0);
}

TEST_CASE("type_stats counts what the cycle collector freed apart", "[sys][type_stats][gc]") {
  test_gc_support::GcGuard guard;
  const std::string name = name_of<Linked>();
  const auto before = stats_of(name);
  {
    auto a = make<Linked>();
    auto b = make<Linked>();
    a->next = b;
    b->next = a;  // a cycle: only the collector frees it
    auto c = make<Linked>();  // dies by its count
  }
  auto now = stats_of(name);
  CHECK(now.count == 2);
  CHECK(now.collected == before.collected);
  CHECK(memlens::gc::collect() == 2);
  now = stats_of(name);
  CHECK(now.count == 0);
  CHECK(now.collected == before.collected + 2);
  CHECK(now.created == before.created + 3);
}

TEST_CASE("type_stats: an object its finalizer resurrects stays counted", "[sys][type_stats][gc]") {
  test_gc_support::GcGuard guard;
  const std::string name = name_of<Resurrects>();
  Resurrects::saved.reset();  // the object name_of made resurrected itself
  const auto before = stats_of(name);
  {
    auto a = make<Resurrects>();
    a->self = a;
  }
  CHECK(memlens::gc::collect() == 0);  // resurrected: nothing is unreachable in the end
  CHECK(stats_of(name).count == before.count + 1);
  CHECK(stats_of(name).collected == before.collected);
  Resurrects::saved->self.reset();
  Resurrects::saved.reset();  // its count reaches zero: it dies now, finalized once already
  CHECK(stats_of(name).count == before.count);
}

TEST_CASE("type_stats counts a chain the trashcan frees and sorts by bytes", "[sys][type_stats]") {
  const std::string name = name_of<Linked>();
  const auto before = stats_of(name);
  {
    auto head = make<Linked>();
    for (int i = 0; i < 100'000; ++i) {
      auto node = make<Linked>();
      node->next = std::move(head);
      head = std::move(node);
    }
    CHECK(stats_of(name).count == before.count + 100'001);
  }
  CHECK(stats_of(name).count == before.count);

  std::vector<Ref<Plain>> keep(1000);
  for (auto& k : keep) k = make<Plain>();
  const auto all = memlens::sys::type_stats();
  REQUIRE(!all.empty());
  for (std::size_t i = 1; i < all.size(); ++i) CHECK(all[i - 1].bytes >= all[i].bytes);
  for (const auto& s : all) CHECK(s.created >= s.count);
}
