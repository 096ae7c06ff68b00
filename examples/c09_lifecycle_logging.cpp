// Seed challenge 9: log an object's end of life. Python's __del__ is finalize() (may
// resurrect, runs once) followed by the destructor (the memory goes).
#include <fmt/format.h>

#include <memlens/memlens.hpp>
#include <string>
#include <utility>

struct Tracked : memlens::Object {
  explicit Tracked(std::string name) : name(std::move(name)) {}
  void finalize() override {
    fmt::print("  finalize {}\n", name);
    if (resurrect_into) *std::exchange(resurrect_into, nullptr) = memlens::Ref<Tracked>(this);
  }
  ~Tracked() override { fmt::print("  Deleted {}\n", name); }

  std::string name;
  memlens::Ref<Tracked>* resurrect_into = nullptr;
};

int main() {
  fmt::print("x = Tracked(\"x\"); x.reset():\n");
  auto x = memlens::make<Tracked>("x");
  x.reset();

  fmt::print("\nA finalizer that resurrects its object:\n");
  memlens::Ref<Tracked> saved;
  auto r = memlens::make<Tracked>("r");
  r->resurrect_into = &saved;
  r.reset();
  fmt::print("  still alive: {}; dropping the saved reference:\n", saved);
  saved.reset();
  fmt::print("  (finalize did not run again)\n");

  fmt::print("\nOrder with a weakref callback and weakref::finalize:\n");
  auto w = memlens::make<Tracked>("w");
  memlens::Weak<Tracked> watch(w, [] { fmt::print("  weakref callback\n"); });
  memlens::finalize on_death(w, [] { fmt::print("  weakref.finalize (newest callback first)\n"); });
  w.reset();
  return 0;
}
