// Seed exercise 3: a weak cache empties itself when its objects die; a regular (strong) cache
// keeps them alive.
#include <fmt/format.h>

#include <memlens/memlens.hpp>
#include <memlens/tools/weak_cache.hpp>
#include <string>
#include <utility>
#include <vector>

namespace {

struct SomeObject : memlens::Object {
  explicit SomeObject(std::string name) : name(std::move(name)) {}
  ~SomeObject() override { fmt::print("    ({} destroyed)\n", name); }
  std::string name;
};

template <class Cache>
void show(const char* label, const Cache& cache) {
  fmt::print("  {:<12} size() = {}, keys alive:", label, cache.size());
  for (const char* key : {"a", "b", "c"}) {
    if (cache.get(key)) fmt::print(" {}", key);
  }
  fmt::print("\n");
}

}  // namespace

int main() {
  memlens::WeakCache<std::string, SomeObject> weak;
  memlens::StrongCache<std::string, SomeObject> strong;
  {
    std::vector<memlens::Ref<SomeObject>> objects;
    for (const char* key : {"a", "b", "c"}) {
      auto for_weak = memlens::make<SomeObject>(std::string("weak ") + key);
      auto for_strong = memlens::make<SomeObject>(std::string("strong ") + key);
      weak.set(key, for_weak);
      strong.set(key, for_strong);
      objects.push_back(for_weak);
      objects.push_back(for_strong);
    }
    fmt::print("Both caches filled; the program holds every object:\n");
    show("WeakCache", weak);
    show("StrongCache", strong);

    fmt::print("\nThe program drops \"weak b\" and \"strong b\":\n");
    objects.erase(objects.begin() + 2, objects.begin() + 4);
    show("WeakCache", weak);
    show("StrongCache", strong);
    fmt::print("\nThe program drops all its references:\n");
  }
  show("WeakCache", weak);
  show("StrongCache", strong);

  fmt::print("\nstrong.clear():\n");
  strong.clear();
  show("StrongCache", strong);
  return 0;
}
