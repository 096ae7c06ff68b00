// Seed exercise 11: a memory leak detector that tracks objects by type over time and points at
// the code that leaks.
//   detector = MemoryLeakDetector()
//   detector.start_monitoring()
//   detector.take_snapshot()
//   for i in range(1000): create_leaky_object()
//   detector.take_snapshot()
//   leaks = detector.find_leaks()
//   detector.report()
// A leak grows in every interval, so the detector looks at three snapshots: two rounds of 1000.
#include <fmt/format.h>

#include <memlens/memlens.hpp>
#include <memlens/track_new.hpp>
#include <string>
#include <vector>

// A session registry that forgets to drop closed sessions.
struct Session : memlens::Object {
  explicit Session(int id) : user("user-" + std::to_string(id) + std::string(40, '.')) {}
  std::string user;
};

struct Registry : memlens::Object {
  std::vector<memlens::Ref<Session>> sessions;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("sessions", sessions)); }
};

memlens::Ref<Registry> registry = memlens::make<Registry>();

void create_leaky_object() {
  static int next_id = 0;
  auto session = memlens::make<Session>(next_id++);
  registry->sessions.push_back(session);  // never removed: the leak
  auto scratch = memlens::make<std::vector<int>>(16, 0);  // dropped at once: not a leak
}

int main() {
  memlens::MemoryLeakDetector detector;
  detector.start_monitoring();
  detector.take_snapshot("start");
  for (int round = 1; round <= 2; ++round) {
    for (int i = 0; i < 1000; ++i) create_leaky_object();
    detector.take_snapshot("after round " + std::to_string(round));
  }

  {
    // Each leak's retaining path holds its objects: let them go before the report counts
    // references again.
    const auto leaks = detector.find_leaks();
    fmt::print("find_leaks(): {} suspected\n", leaks.size());
    for (const auto& leak : leaks) {
      fmt::print("  {}: {:+} {}, {:+} bytes\n",
                 leak.type_name.empty() ? "allocations" : leak.type_name, leak.count_growth,
                 leak.type_name.empty() ? "blocks" : "objects", leak.size_growth);
    }
  }
  fmt::print("\nreport():\n{}", detector.report());
  return 0;
}
