// Seed challenge 6, weak references: a weakref names an object without keeping it alive.
//   obj = MyObject(); ref = weakref.ref(obj); assert ref() is obj
//   del obj; assert ref() is None
#include <memlens/memlens.hpp>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace test_c06 {

struct MyObject : memlens::Object {};

}  // namespace test_c06

using memlens::sys::getrefcount;
using test_c06::MyObject;

TEST_CASE("c06: ref() is obj while obj lives and None once it is deleted", "[challenge][c06]") {
  auto obj = memlens::make<MyObject>();
  memlens::weakref::ref<MyObject> ref = obj;
  CHECK(memlens::is(ref(), obj));
  CHECK(memlens::is(ref.lock(), obj));
  CHECK_FALSE(ref.expired());

  obj.reset();  // del obj: the weak reference did not keep it alive
  CHECK_FALSE(ref());
  CHECK(ref.expired());
  CHECK(ref() == nullptr);
}

TEST_CASE("c06: a weak reference does not change the reference count", "[challenge][c06]") {
  auto obj = memlens::make<MyObject>();
  CHECK(getrefcount(obj) == 1);
  {
    memlens::Weak<MyObject> w1 = obj;
    memlens::Weak<MyObject> w2 = obj;
    memlens::Weak<memlens::Object> w3 = obj;
    CHECK(getrefcount(obj) == 1);
    CHECK(memlens::weakref::getweakrefcount(obj) == 3);
    // lock() makes a strong reference, which counts while it is held.
    auto strong = w1.lock();
    CHECK(getrefcount(obj) == 2);
  }
  CHECK(getrefcount(obj) == 1);
  CHECK(memlens::weakref::getweakrefcount(obj) == 0);
}

TEST_CASE("c06: a callback runs once when the referent dies and sees the weakref dead",
          "[challenge][c06]") {
  auto obj = memlens::make<MyObject>();
  int calls = 0;
  bool saw_object = true;
  memlens::Weak<MyObject> ref(obj, [&](memlens::Weak<MyObject>& self) {
    ++calls;
    saw_object = static_cast<bool>(self.lock());
  });
  CHECK(ref.has_callback());
  auto other = obj;
  obj.reset();
  CHECK(calls == 0);  // still alive through `other`
  other.reset();
  CHECK(calls == 1);
  CHECK_FALSE(saw_object);
  CHECK_FALSE(ref.has_callback());
  CHECK(ref.expired());
}

TEST_CASE("c06: several callbacks run newest first", "[challenge][c06]") {
  auto obj = memlens::make<MyObject>();
  std::vector<std::string> order;
  memlens::Weak<MyObject> first(obj, [&] { order.push_back("first"); });
  memlens::Weak<MyObject> second(obj, [&] { order.push_back("second"); });
  memlens::Weak<MyObject> third(obj, [&] { order.push_back("third"); });
  obj.reset();
  CHECK(order == std::vector<std::string>{"third", "second", "first"});
}

TEST_CASE("c06: a callback whose weakref died first never runs", "[challenge][c06]") {
  auto obj = memlens::make<MyObject>();
  int calls = 0;
  {
    memlens::Weak<MyObject> ref(obj, [&] { ++calls; });
  }
  CHECK(memlens::weakref::getweakrefcount(obj) == 0);
  obj.reset();
  CHECK(calls == 0);
}

TEST_CASE("c06: a weak reference to None cannot carry a callback", "[challenge][c06]") {
  memlens::Ref<MyObject> none;
  memlens::Weak<MyObject> plain = none;  // a plain one is simply dead
  CHECK(plain.expired());
  CHECK_THROWS_AS(memlens::Weak<MyObject>(none, [] {}), memlens::ValueError);
}
