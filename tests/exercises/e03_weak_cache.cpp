// Seed exercise 3, use weak references: a WeakCache built on WeakValueDictionary that cleans
// itself up when its objects die, beside a regular (strong) cache that keeps them alive.
//   cache = WeakCache(); obj = SomeObject(); cache.set('key1', obj)
//   # After deleting obj, cache should auto-cleanup
#include <cstddef>
#include <memlens/memlens.hpp>
#include <memlens/tools/weak_cache.hpp>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace test_e03 {

struct SomeObject : memlens::Object {
  explicit SomeObject(int value = 0) : value(value) {}
  int value;
};

}  // namespace test_e03

using memlens::sys::getrefcount;
using test_e03::SomeObject;

TEST_CASE("e03: set and get and size", "[exercise][e03]") {
  memlens::WeakCache<std::string, SomeObject> cache;
  CHECK(cache.size() == 0);
  auto obj = memlens::make<SomeObject>(7);
  cache.set("key1", obj);

  CHECK(cache.size() == 1);
  CHECK(cache.contains("key1"));
  CHECK(memlens::is(cache.get("key1"), obj));
  CHECK(cache.get("key1")->value == 7);
  CHECK_FALSE(cache.get("missing"));
  CHECK_FALSE(cache.contains("missing"));
}

TEST_CASE("e03: the weak cache adds no strong reference", "[exercise][e03]") {
  memlens::WeakCache<std::string, SomeObject> cache;
  auto obj = memlens::make<SomeObject>();
  cache.set("key1", obj);
  CHECK(getrefcount(obj) == 1);
  CHECK(memlens::weakref::getweakrefcount(obj) == 1);
}

TEST_CASE("e03: after deleting obj the weak cache cleans itself up", "[exercise][e03]") {
  memlens::WeakCache<std::string, SomeObject> cache;
  auto obj = memlens::make<SomeObject>();
  cache.set("key1", obj);
  obj.reset();  // del obj

  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.get("key1"));
  CHECK_FALSE(cache.contains("key1"));
  CHECK_FALSE(cache.erase("key1"));  // nothing live to erase
}

TEST_CASE("e03: size() counts live entries only", "[exercise][e03]") {
  memlens::WeakCache<int, SomeObject> cache;
  std::vector<memlens::Ref<SomeObject>> objects;
  for (int i = 0; i < 5; ++i) {
    objects.push_back(memlens::make<SomeObject>(i));
    cache.set(i, objects.back());
  }
  CHECK(cache.size() == 5);
  objects.erase(objects.begin() + 1);  // value 1 dies
  objects.pop_back();                  // value 4 dies
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.get(1));
  CHECK_FALSE(cache.get(4));
  REQUIRE(cache.get(2));
  CHECK(cache.get(2)->value == 2);
  objects.clear();
  CHECK(cache.size() == 0);
}

TEST_CASE("e03: a Ref from get() keeps the entry alive while it is held", "[exercise][e03]") {
  memlens::WeakCache<std::string, SomeObject> cache;
  auto obj = memlens::make<SomeObject>(1);
  cache.set("key1", obj);
  auto hit = cache.get("key1");
  obj.reset();
  CHECK(cache.size() == 1);
  CHECK(memlens::is(cache.get("key1"), hit));
  hit.reset();
  CHECK(cache.size() == 0);
}

TEST_CASE("e03: set replaces and erase and clear remove and none touches the objects",
          "[exercise][e03]") {
  memlens::WeakCache<std::string, SomeObject> cache;
  auto a = memlens::make<SomeObject>(1);
  auto b = memlens::make<SomeObject>(2);
  cache.set("k", a);
  cache.set("k", b);
  CHECK(cache.size() == 1);
  CHECK(memlens::is(cache.get("k"), b));
  CHECK(memlens::weakref::getweakrefcount(a) == 0);  // the replaced entry let go of a

  CHECK(cache.erase("k"));
  CHECK_FALSE(cache.contains("k"));
  CHECK(cache.size() == 0);
  CHECK(getrefcount(b) == 1);  // erasing never destroys the object

  cache.set("a", a);
  cache.set("b", b);
  cache.clear();
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.get("a"));
  CHECK(getrefcount(a) == 1);
  CHECK(memlens::weakref::getweakrefcount(a) == 0);
}

TEST_CASE("e03: a key whose object died can be set again", "[exercise][e03]") {
  memlens::WeakCache<std::string, SomeObject> cache;
  cache.set("k", memlens::make<SomeObject>(1));  // dies at the end of the statement
  CHECK(cache.size() == 0);
  auto fresh = memlens::make<SomeObject>(2);
  cache.set("k", fresh);
  CHECK(cache.size() == 1);
  CHECK(memlens::is(cache.get("k"), fresh));
}

TEST_CASE("e03: caching None is an error", "[exercise][e03]") {
  memlens::WeakCache<std::string, SomeObject> weak;
  memlens::StrongCache<std::string, SomeObject> strong;
  CHECK_THROWS_AS(weak.set("k", nullptr), memlens::ValueError);
  CHECK_THROWS_AS(strong.set("k", nullptr), memlens::ValueError);
  CHECK(weak.size() == 0);
  CHECK(strong.size() == 0);
}

TEST_CASE("e03: value types can be cached too", "[exercise][e03]") {
  memlens::WeakCache<std::string, std::vector<int>> cache;
  auto list = memlens::make<std::vector<int>>(std::vector<int>{1, 2, 3});
  cache.set("list", list);
  REQUIRE(cache.get("list"));
  CHECK(*cache.get("list") == std::vector<int>{1, 2, 3});
  list.reset();
  CHECK_FALSE(cache.get("list"));
}

TEST_CASE("e03: a regular (strong) cache keeps its objects alive", "[exercise][e03]") {
  memlens::StrongCache<std::string, SomeObject> cache;
  auto obj = memlens::make<SomeObject>(7);
  memlens::Weak<SomeObject> probe = obj;
  cache.set("key1", obj);
  CHECK(getrefcount(obj) == 2);  // the cache holds one of them

  obj.reset();  // del obj: the cache still has it
  CHECK(cache.size() == 1);
  CHECK(cache.contains("key1"));
  REQUIRE(cache.get("key1"));
  CHECK(cache.get("key1")->value == 7);
  CHECK_FALSE(probe.expired());

  CHECK(cache.erase("key1"));  // only now does it die
  CHECK(probe.expired());
  CHECK_FALSE(cache.erase("key1"));
}

TEST_CASE("e03: strong cache replace and clear drop its references", "[exercise][e03]") {
  memlens::StrongCache<std::string, SomeObject> cache;
  memlens::Weak<SomeObject> first, second;
  {
    auto a = memlens::make<SomeObject>(1);
    auto b = memlens::make<SomeObject>(2);
    first = a;
    second = b;
    cache.set("k", a);
    cache.set("k", b);  // a loses the cache's reference
  }
  CHECK(first.expired());
  CHECK_FALSE(second.expired());
  CHECK(cache.size() == 1);
  cache.clear();
  CHECK(second.expired());
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.get("k"));
}

TEST_CASE("e03: side by side the weak cache empties while the strong one stays full",
          "[exercise][e03]") {
  memlens::WeakCache<int, SomeObject> weak;
  memlens::StrongCache<int, SomeObject> strong;
  for (int i = 0; i < 3; ++i) {
    auto for_weak = memlens::make<SomeObject>(i);
    auto for_strong = memlens::make<SomeObject>(i);
    weak.set(i, for_weak);
    strong.set(i, for_strong);
    CHECK(weak.size() == 1);  // only this turn's: the previous for_weak died with its scope
    CHECK(strong.size() == static_cast<std::size_t>(i) + 1);
  }  // every for_weak and for_strong variable is gone now

  CHECK(weak.size() == 0);
  CHECK(strong.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(weak.get(i));
    REQUIRE(strong.get(i));
    CHECK(strong.get(i)->value == i);
  }
}

TEST_CASE("e03: a weak cache sees the objects that a strong cache keeps alive", "[exercise][e03]") {
  memlens::WeakCache<int, SomeObject> weak;
  memlens::StrongCache<int, SomeObject> strong;
  std::vector<memlens::Weak<SomeObject>> probes;
  for (int i = 0; i < 3; ++i) {
    auto object = memlens::make<SomeObject>(i);
    weak.set(i, object);
    strong.set(i, object);
    probes.emplace_back(object);
  }  // the program's own references are gone; the strong cache holds the only ones

  CHECK(weak.size() == 3);
  strong.erase(0);
  CHECK(weak.size() == 2);  // 0 died with its last (strong) reference
  CHECK(probes[0].expired());
  CHECK_FALSE(weak.get(0));
  strong.clear();
  CHECK(weak.size() == 0);
  for (const auto& probe : probes) CHECK(probe.expired());
}
