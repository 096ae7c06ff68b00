// Seed exercise 8: take a memory-intensive program and make it use 50 % less memory, measuring
// before and after each optimisation and saying which techniques mattered most.
//   with track_memory("Inefficient"): result1 = process_data_inefficient(large_dataset)
//   with track_memory("Optimized"):   result2 = list(process_data_optimized(large_dataset))
// The program and its six optimisations are in optimize_memory.hpp; each version runs under
// memlens::memory_tracker (tracemalloc's current and peak), track_new.hpp traces `new`.
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memlens/track_new.hpp>
#include <string>
#include <vector>

#include "grouped.hpp"
#include "optimize_memory.hpp"

namespace {

using memlens_examples::grouped;

std::string signed_grouped(std::ptrdiff_t n) {
  return n < 0 ? "-" + grouped(static_cast<std::size_t>(-n)) : grouped(static_cast<std::size_t>(n));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace memlens_examples;
  // The number of orders: example_records (50,000; see why in optimize_memory.hpp) unless given,
  // e.g. `example_e08_optimize_memory_usage 200000`.
  std::size_t records = example_records;
  if (argc > 1) {
    char* end = nullptr;
    records = std::strtoull(argv[1], &end, 10);
    if (*end != '\0' || records == 0) {
      fmt::print(stderr, "usage: {} [number of orders, > 0]\n", argv[0]);
      return 2;
    }
  }
  const std::vector<StepMemory> steps = measure_optimization_steps(records);

  fmt::print(
      "Exercise 8: the 2024 sales per country and product from {} orders, one memory\n"
      "technique at a time, each version keeping the ones before. Peak: the most memory the\n"
      "version held at once (memlens::tracemalloc); kept: what it still held at its end.\n\n",
      grouped(records));
  fmt::print("{:>4}  {:<62} {:>12} {:>12} {:>6}\n", "step", "technique", "peak bytes", "saved",
             "kept");
  fmt::print("{:->4}  {:-<62} {:->12} {:->12} {:->6}\n", "", "", "", "", "");
  bool ok = true;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const StepMemory& m = steps[i];
    const std::string saved = i == 0
                                  ? std::string()
                                  : signed_grouped(static_cast<std::ptrdiff_t>(steps[i - 1].peak) -
                                                   static_cast<std::ptrdiff_t>(m.peak));
    fmt::print("{:>4}  {:<62} {:>12} {:>12} {:>6}\n", i, m.step->technique, grouped(m.peak), saved,
               signed_grouped(m.current));
    if (!(m.report == steps.front().report)) {
      fmt::print("      ERROR: this version's report differs from the baseline's\n");
      ok = false;
    }
    if (i > 0 && m.peak >= steps[i - 1].peak) {
      fmt::print("      ERROR: this technique saved nothing\n");
      ok = false;
    }
  }

  // The techniques ranked by what they saved at the peak.
  struct Saving {
    const OptimizationStep* step;
    std::size_t bytes;
  };
  std::vector<Saving> savings;
  for (std::size_t i = 1; i < steps.size(); ++i) {
    savings.push_back(
        {steps[i].step, steps[i - 1].peak > steps[i].peak ? steps[i - 1].peak - steps[i].peak : 0});
  }
  std::stable_sort(savings.begin(), savings.end(),
                   [](const Saving& a, const Saving& b) { return a.bytes > b.bytes; });
  const std::size_t first = steps.front().peak;
  const std::size_t last = steps.back().peak;
  const std::size_t total = first > last ? first - last : 0;
  fmt::print("\nThe techniques by peak memory saved, biggest first:\n\n");
  fmt::print("{:<52} {:<22} {:>13} {:>8}\n", "technique", "in Python", "saved bytes", "share");
  fmt::print("{:-<52} {:-<22} {:->13} {:->8}\n", "", "", "", "");
  for (const Saving& s : savings) {
    std::string_view name = s.step->technique;
    name = name.substr(0, name.find(':'));  // "reserve", "streaming"
    fmt::print("{:<52} {:<22} {:>13} {:>7.1f}%\n", name, s.step->python, grouped(s.bytes),
               total ? 100.0 * double(s.bytes) / double(total) : 0.0);
  }

  fmt::print(
      "\nFirst peak {} bytes, final peak {} bytes: {:.4f} % of the first ({:.0f} times less).\n",
      grouped(first), grouped(last), 100.0 * double(last) / double(first),
      last ? double(first) / double(last) : 0.0);
  if (2 * last > first) {
    fmt::print("ERROR: the final version does not use half the memory of the first\n");
    ok = false;
  }

  const Report& report = steps.front().report;
  Totals all;
  for (const auto& [country, totals] : report.by_country) {
    all.orders += totals.orders;
    all.units += totals.units;
    all.revenue_cents += totals.revenue_cents;
  }
  fmt::print(
      "The report: {} sales, {} units, {}.{:02} in revenue, over {} countries and {} products;\n"
      "{}.\n",
      grouped(static_cast<std::size_t>(all.orders)), grouped(static_cast<std::size_t>(all.units)),
      grouped(static_cast<std::size_t>(all.revenue_cents / 100)), all.revenue_cents % 100,
      report.by_country.size(), report.by_product.size(),
      ok ? "every version computed exactly the same" : "see the errors above");
  fmt::print(
      "Kept: the report, and after step 3 the strings it interned, which live as long as the\n"
      "program (so later versions find them already there).\n");
  return ok ? 0 : 1;
}
