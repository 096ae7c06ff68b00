// Seed challenge 9, object life cycle logging: `__del__` reports when an object goes.
//   class Tracked:
//       def __del__(self): print("Deleted")
//   x = Tracked(); del x  # prints
// memlens splits Python's `__del__` in two: `finalize()` runs first and may resurrect the
// object (PEP 442), the destructor runs when the memory really goes. Tracked logs both.
#include <exception>
#include <functional>
#include <memlens/memlens.hpp>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "memlens_test.hpp"

namespace test_c09 {

/// Writes "finalize <name>" from finalize() and "Deleted <name>" from its destructor to the
/// stream it was given. `on_finalize` lets a test act inside the finalizer.
struct Tracked : memlens::Object {
  Tracked(std::string name, std::ostream& out) : name(std::move(name)), out(out) {}
  void finalize() override {
    out << "finalize " << name << '\n';
    if (on_finalize) on_finalize(*this);
  }
  ~Tracked() override { out << "Deleted " << name << '\n'; }

  std::string name;
  std::ostream& out;
  std::function<void(Tracked&)> on_finalize;
};

/// Restores the unraisable hook it replaced when the test ends, pass or fail.
class HookGuard {
 public:
  explicit HookGuard(memlens::sys::UnraisableHook hook)
      : previous_(memlens::sys::set_unraisablehook(std::move(hook))) {}
  ~HookGuard() { memlens::sys::set_unraisablehook(std::move(previous_)); }
  HookGuard(const HookGuard&) = delete;
  HookGuard& operator=(const HookGuard&) = delete;

 private:
  memlens::sys::UnraisableHook previous_;
};

}  // namespace test_c09

using test_c09::Tracked;

TEST_CASE("c09: dropping the last reference logs finalize then Deleted", "[challenge][c09]") {
  std::ostringstream out;
  auto x = memlens::make<Tracked>("x", out);
  CHECK(out.str().empty());
  x.reset();  // del x
  CHECK(out.str() == "finalize x\nDeleted x\n");
}

TEST_CASE("c09: deleting a name that is not the last logs nothing", "[challenge][c09]") {
  std::ostringstream out;
  auto x = memlens::make<Tracked>("x", out);
  auto y = x;
  x.reset();
  CHECK(out.str().empty());
  { auto z = std::move(y); }  // z held the last reference: its scope end is the deletion
  CHECK(out.str() == "finalize x\nDeleted x\n");
}

TEST_CASE("c09: a finalizer may resurrect its object but never runs twice", "[challenge][c09]") {
  std::ostringstream out;
  memlens::Ref<Tracked> saved;
  auto x = memlens::make<Tracked>("x", out);
  x->on_finalize = [&saved](Tracked& self) { saved = memlens::Ref<Tracked>(&self); };

  x.reset();
  CHECK(out.str() == "finalize x\n");  // finalized, but not deleted:
  REQUIRE(saved);                      // the finalizer stored a new reference
  CHECK(saved->name == "x");
  CHECK(memlens::sys::getrefcount(saved) == 1);

  auto again = saved;
  again.reset();
  saved.reset();  // dies for good now, without a second finalize
  CHECK(out.str() == "finalize x\nDeleted x\n");
}

TEST_CASE("c09: finalize runs before weakref callbacks and still sees its object",
          "[challenge][c09]") {
  std::ostringstream out;
  auto x = memlens::make<Tracked>("x", out);
  memlens::Weak<Tracked> watch(x, [&out](memlens::Weak<Tracked>& self) {
    out << "weakref callback, referent " << (self.lock() ? "alive" : "gone") << '\n';
  });
  x->on_finalize = [&out, &watch](Tracked&) {
    out << "  weakref in finalize: " << (watch.lock() ? "alive" : "gone") << '\n';
  };

  x.reset();
  CHECK(out.str() ==
        "finalize x\n"
        "  weakref in finalize: alive\n"
        "weakref callback, referent gone\n"
        "Deleted x\n");
}

TEST_CASE("c09: weakref::finalize runs its function once at the object's death",
          "[challenge][c09]") {
  std::ostringstream out;
  auto x = memlens::make<Tracked>("x", out);
  memlens::finalize on_death(x, [&out] { out << "weakref.finalize\n"; });
  CHECK(on_death.alive());
  CHECK(memlens::is(on_death.peek(), x));

  x.reset();
  CHECK(out.str() == "finalize x\nweakref.finalize\nDeleted x\n");
  CHECK_FALSE(on_death.alive());
  CHECK_FALSE(on_death());  // already ran: calling it again does nothing
  CHECK(out.str() == "finalize x\nweakref.finalize\nDeleted x\n");
}

TEST_CASE("c09: weakref::finalize outlives its handle and runs newest first with callbacks",
          "[challenge][c09]") {
  std::ostringstream out;
  auto x = memlens::make<Tracked>("x", out);
  memlens::Weak<Tracked> watch(x, [&out] { out << "weakref callback\n"; });
  {
    memlens::finalize on_death(x, [&out] { out << "weakref.finalize\n"; });
  }  // the handle goes; the registration stays
  x.reset();
  CHECK(out.str() == "finalize x\nweakref.finalize\nweakref callback\nDeleted x\n");
}

TEST_CASE("c09: weakref::finalize can run early or be detached", "[challenge][c09]") {
  std::ostringstream out;
  auto x = memlens::make<Tracked>("x", out);
  auto y = memlens::make<Tracked>("y", out);
  memlens::finalize early(x, [&out] { out << "early\n"; });
  memlens::finalize cancelled(y, [&out] { out << "never\n"; });

  CHECK(early());  // runs now, once
  CHECK(out.str() == "early\n");
  auto detached = cancelled.detach();
  REQUIRE(detached);
  CHECK(memlens::is(detached->object, y));
  detached.reset();  // drop the detached Ref to y and the function with it

  x.reset();
  y.reset();
  CHECK(out.str() == "early\nfinalize x\nDeleted x\nfinalize y\nDeleted y\n");
}

TEST_CASE("c09: an exception from a finalizer is reported and the object still goes",
          "[challenge][c09]") {
  std::ostringstream out;
  std::string reported;
  test_c09::HookGuard guard([&reported](const memlens::sys::UnraisableInfo& info) {
    try {
      std::rethrow_exception(info.exception);
    } catch (const std::exception& e) {
      reported = std::string(info.err_msg) + ": " + e.what();
    }
  });
  auto x = memlens::make<Tracked>("x", out);
  x->on_finalize = [](Tracked&) { throw std::runtime_error("boom"); };

  x.reset();
  CHECK(reported == "Exception ignored in finalizer of: boom");
  CHECK(out.str() == "finalize x\nDeleted x\n");
}
