// Seed exercise 8, optimize memory usage: take a memory-intensive program and make it use 50 %
// less memory, applying several techniques and measuring memory before and after each:
//   with track_memory("Inefficient"): result1 = process_data_inefficient(large_dataset)
//   with track_memory("Optimized"):   result2 = list(process_data_optimized(large_dataset))
// The program and its versions are in examples/optimize_memory.hpp; the global operator new is
// traced through memlens/track_new.hpp (tests/unit/tracemalloc_hook.cpp).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memlens/tools/memory_tracker.hpp>
#include <memlens/tracemalloc.hpp>
#include <string>
#include <vector>

#include "../../examples/optimize_memory.hpp"
#include "memlens_test.hpp"

namespace test_e08 {

using namespace memlens_examples;
namespace parse = memlens_examples::detail_optimize_memory;

/// Every line of a log of `records` orders.
std::vector<std::string> read_all(std::size_t records) {
  std::vector<std::string> lines;
  OrderFeed feed(records);
  for (std::string line; feed.getline(line);) lines.push_back(line);
  return lines;
}

/// The sales counted straight from the text, without any of the versions.
std::int64_t count_sales(std::size_t records) {
  std::int64_t sales = 0;
  for (const std::string& line : read_all(records)) {
    const auto f = parse::split_csv(line);
    sales += parse::is_sale(f[4], f[7]) ? 1 : 0;
  }
  return sales;
}

std::int64_t total_orders(const std::map<std::string, Totals, std::less<>>& groups) {
  std::int64_t orders = 0;
  for (const auto& [name, totals] : groups) orders += totals.orders;
  return orders;
}

}  // namespace test_e08

using namespace test_e08;

TEST_CASE("e08: the order log reads the same every time", "[exercise][e08]") {
  const auto lines = read_all(1000);
  REQUIRE(lines.size() == 1000);
  CHECK(lines == read_all(1000));
  CHECK(lines.front() ==
        "ORD-00000001,cust-007535,India,Bluetooth Speaker Mini,delivered,4,34.99,"
        "2024-04-09T10:22:54Z");
  CHECK(OrderFeed(1000).size() == 1000);
  std::string line;
  OrderFeed empty(0);
  CHECK_FALSE(empty.getline(line));
}

TEST_CASE("e08: fields parse as the calendar says", "[exercise][e08]") {
  namespace chrono = std::chrono;
  CHECK(parse::parse_cents("34.99") == 3499);
  CHECK(parse::parse_cents("329.99") == 32999);
  CHECK(parse::parse_order_id("ORD-00012345") == 12345);
  CHECK(
      orders_from ==
      chrono::sys_seconds(chrono::sys_days(chrono::year{2023} / 7 / 1)).time_since_epoch().count());
  CHECK(
      sales_from ==
      chrono::sys_seconds(chrono::sys_days(chrono::year{2024} / 1 / 1)).time_since_epoch().count());
  std::size_t in_2024 = 0;
  for (const std::string& text : read_all(2000)) {
    const auto f = parse::split_csv(text);
    const std::int64_t seconds = parse::parse_timestamp(f[7]);
    // Back through std::chrono: the same text.
    const chrono::sys_seconds when{chrono::seconds(seconds)};
    const auto day = chrono::floor<chrono::days>(when);
    const chrono::year_month_day date(day);
    const chrono::hh_mm_ss time(when - day);
    char text_again[32];
    std::snprintf(text_again, sizeof text_again, "%04d-%02u-%02uT%02d:%02d:%02dZ",
                  static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                  static_cast<unsigned>(date.day()), static_cast<int>(time.hours().count()),
                  static_cast<int>(time.minutes().count()),
                  static_cast<int>(time.seconds().count()));
    CHECK(f[7] == text_again);
    CHECK(seconds >= orders_from);
    CHECK(seconds < sales_until);
    // The two filters agree.
    CHECK(parse::is_sale(f[4], f[7]) == parse::is_sale(f[4], seconds));
    if (seconds >= sales_from) ++in_2024;
  }
  CHECK(in_2024 > 0);
  CHECK(in_2024 < 2000);
}

TEST_CASE("e08: every version computes the same report", "[exercise][e08]") {
  const std::size_t records = 3000;
  const Report expected = baseline(records);
  const std::int64_t sales = count_sales(records);
  CHECK(sales > 1000);
  CHECK(total_orders(expected.by_country) == sales);
  CHECK(total_orders(expected.by_product) == sales);
  CHECK(expected.by_country.size() == order_countries.size());
  CHECK(expected.by_product.size() == order_products.size());
  for (const OptimizationStep& step : optimization_steps) {
    INFO(step.technique);
    CHECK(step.run(records) == expected);
  }
  // The comparison sees a difference.
  Report changed = expected;
  changed.by_product.begin()->second.revenue_cents += 1;
  CHECK_FALSE(changed == expected);
}

TEST_CASE("e08: every technique lowers the peak and the last needs less than half",
          "[exercise][e08][tracemalloc]") {
  // The figures the example prints.
  const std::vector<StepMemory> steps = measure_optimization_steps(example_records);
  REQUIRE(steps.size() == optimization_steps.size());
  CHECK_FALSE(memlens::tracemalloc::is_tracing());  // memory_tracker stopped what it started
  const StepMemory& first = steps.front();
  CHECK(first.peak > 50 * example_records);  // a map per row: hundreds of bytes each
  for (std::size_t i = 1; i < steps.size(); ++i) {
    INFO(steps[i].step->technique);
    CHECK(steps[i].report == first.report);
    CHECK(steps[i].peak < steps[i - 1].peak);
    // What each version keeps is its report (and the first interned strings): no leak.
    CHECK(steps[i].current > 0);
    CHECK(static_cast<std::size_t>(steps[i].current) < 16 * 1024);
  }
  const StepMemory& last = steps.back();
  CHECK(2 * last.peak <= first.peak);
  // Far less, in fact: streaming holds one line and the report.
  CHECK(1000 * last.peak <= first.peak);
}

TEST_CASE("e08: streaming needs the same memory for any number of orders",
          "[exercise][e08][tracemalloc]") {
  const auto peak_of = [](Report (*run)(std::size_t), std::size_t records) {
    memlens::MemoryUsage usage;
    memlens::memory_tracker(run, [&usage](const memlens::MemoryUsage& u) { usage = u; })(records);
    return usage.peak;
  };
  // The first run interns the countries, products and statuses, for good: the same bytes for
  // any number of orders, but only the first run pays them.
  streamed(2000);
  const std::size_t few = peak_of(streamed, 2000);
  const std::size_t many = peak_of(streamed, 20000);
  CHECK(few > 0);
  CHECK(many == few);  // the same line buffer and the same report entries
  // The lists of the version before it grow with the log.
  CHECK(peak_of(owned_values, 20000) > 9 * peak_of(owned_values, 2000));
}
