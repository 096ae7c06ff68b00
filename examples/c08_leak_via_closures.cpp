// Seed challenge 8: a closure that captures a big object keeps it alive after the function that
// made both returned.
//   def make_leaky():
//       big_data = [1] * 10**6
//       def inner(): return big_data
//       return inner
//   leak = make_leaky()   # big_data is still alive because inner closes over it
// Here a program registers such closures as handlers; MemoryLeakDetector finds the growth, the
// line that made the data and the line that captured it. Then the two fixes.
#include <fmt/format.h>

#include <functional>
#include <memlens/memlens.hpp>
#include <memlens/track_new.hpp>
#include <vector>

using BigData = std::vector<int>;

std::function<std::size_t()> make_leaky() {
  auto big_data = memlens::make<BigData>(1'000'000, 1);
  return [big_data] { return big_data->size(); };  // captures the whole vector
}

// Fix 1: capture a Weak. The closure no longer keeps the data, and can tell when it is gone.
std::function<std::size_t()> make_weak() {
  auto big_data = memlens::make<BigData>(1'000'000, 1);
  return [weak = memlens::Weak<BigData>(big_data)] {
    auto data = weak.lock();
    return data ? data->size() : 0;
  };
}

// Fix 2: capture only what the closure needs.
std::function<std::size_t()> make_lean() {
  auto big_data = memlens::make<BigData>(1'000'000, 1);
  return [n = big_data->size()] { return n; };
}

int main() {
  memlens::Weak<BigData> watch;
  {
    auto big_data = memlens::make<BigData>(10, 1);
    watch = big_data;
    auto leak = [big_data] { return big_data->size(); };
    big_data.reset();
    fmt::print("after the name is gone, the closure keeps big_data alive: {}\n", !watch.expired());
  }
  fmt::print("once the closure is gone too: {}\n\n", watch.expired() ? "freed" : "alive");

  std::vector<std::function<std::size_t()>> handlers;
  memlens::MemoryLeakDetector detector;
  detector.start_monitoring();
  for (int round = 0; round < 3; ++round) {
    detector.take_snapshot("round " + std::to_string(round));
    for (int i = 0; i < 2; ++i) handlers.push_back(make_leaky());
  }
  detector.take_snapshot("end");
  fmt::print("MemoryLeakDetector, with two handlers registered per round:\n");
  for (const auto& leak : detector.find_leaks()) {
    if (leak.site.size() == 0) continue;
    const auto& where = leak.site.front();
    if (!leak.type_name.empty()) {
      fmt::print("  {} +{} objects, made at {}:{} in {}\n", leak.type_name, leak.count_growth,
                 where.filename, where.lineno, where.function);
    } else if (leak.made_with.empty()) {
      fmt::print("  the capturing line: {}:{} in {} (+{} closures kept)\n", where.filename,
                 where.lineno, where.function, leak.count_growth);
    } else {
      fmt::print("  their buffers: +{:.1f} MiB at {}:{}\n",
                 static_cast<double>(leak.size_growth) / (1 << 20), where.filename, where.lineno);
    }
  }
  detector.stop_monitoring();
  handlers.clear();

  fmt::print("\nThe fixes, each registered 1000 times: bytes still held besides the list of "
             "handlers\n");
  for (auto [name, factory] : {std::pair{"capture a Weak", &make_weak},
                               std::pair{"capture only the size", &make_lean}}) {
    memlens::tracemalloc::start();
    for (int i = 0; i < 1000; ++i) handlers.push_back(factory());
    const std::size_t list = handlers.capacity() * sizeof(handlers[0]);
    fmt::print("  {:<22} {:>6} bytes, first handler says {}\n", name,
               memlens::tracemalloc::get_traced_memory().current - list, handlers.front()());
    handlers.clear();
    handlers.shrink_to_fit();
    memlens::tracemalloc::stop();
  }
  return 0;
}
