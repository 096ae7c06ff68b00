// Seed exercise 8's memory-hungry program and its optimised twin, reached one technique at a
// time: shared by examples/e08_optimize_memory_usage.cpp, which prints what each technique
// saved, and by tests/exercises/e08_optimize_memory_usage.cpp, which checks it.
//
// The program reads an order log (CSV lines, made up deterministically as it is read, so no
// file is needed), keeps the 2024 sales (delivered or shipped), prices them and totals orders,
// units and revenue per country and per product. The first version does it the way a quick
// script does: the whole file in a list of lines, a map from column name to text per row,
// every intermediate list kept, shared_ptr everywhere, no reserve. Each following version
// changes one thing, keeping the ones before, and gives the same Report.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memlens/sys.hpp>
#include <memlens/tools/memory_tracker.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memlens_examples {

// ---------------------------------------------------------------------------------------------
// The input: an order log read line by line, like a file.

/// The log's columns, in order.
inline constexpr std::array<std::string_view, 8> order_columns{
    "order_id", "customer", "country", "product", "status", "quantity", "unit_price", "ordered_at"};

/// A product of the catalogue and its unit price.
struct Product {
  std::string_view name;
  std::int64_t price_cents;
};

inline constexpr std::array<Product, 20> order_products{{
    {"USB-C Cable 1m", 999},
    {"Wireless Mouse", 2499},
    {"Mechanical Keyboard Brown Switches", 8999},
    {"27-inch 4K Monitor", 32999},
    {"Noise-Cancelling Headphones", 19999},
    {"Laptop Stand Aluminium", 3999},
    {"Webcam 1080p", 4999},
    {"Portable SSD 1TB", 10999},
    {"Ergonomic Office Chair", 24999},
    {"Desk Lamp LED", 2999},
    {"Smartphone Case", 1499},
    {"Bluetooth Speaker Mini", 3499},
    {"HDMI Cable 2m", 1299},
    {"Graphics Tablet Medium", 7999},
    {"External Battery 20000mAh", 3999},
    {"Smart Watch Series 5", 19999},
    {"Fitness Tracker Band", 5999},
    {"Wi-Fi 6 Router", 12999},
    {"USB Condenser Microphone", 6999},
    {"Standing Desk Converter", 17999},
}};

inline constexpr std::array<std::string_view, 16> order_countries{
    "Germany", "France", "United Kingdom", "United States", "Canada", "Netherlands",
    "Spain",   "Italy",  "Poland",         "Sweden",        "Japan",  "Australia",
    "Brazil",  "India",  "Mexico",         "Ireland"};

namespace detail_optimize_memory {

constexpr bool is_leap_year(std::int64_t year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

constexpr std::int64_t days_in_month(std::int64_t year, std::int64_t month) {
  constexpr std::array<std::int64_t, 12> days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap_year(year) ? 29 : days[static_cast<std::size_t>(month - 1)];
}

/// Days from 1 January 1970 to the date (proleptic Gregorian calendar, year >= 1970).
constexpr std::int64_t days_since_epoch(std::int64_t year, std::int64_t month, std::int64_t day) {
  const auto leap_years_before = [](std::int64_t y) { return y / 4 - y / 100 + y / 400; };
  std::int64_t days = 365 * (year - 1970) + leap_years_before(year - 1) - leap_years_before(1969);
  for (std::int64_t m = 1; m < month; ++m) days += days_in_month(year, m);
  return days + day - 1;
}

}  // namespace detail_optimize_memory

/// The orders span 1 July 2023 to 31 December 2024; a sale counts when it is in 2024. Times
/// are seconds since 1970 (UTC).
inline constexpr std::int64_t orders_from =
    detail_optimize_memory::days_since_epoch(2023, 7, 1) * 86400;
inline constexpr std::int64_t order_days = 549;
inline constexpr std::int64_t sales_from =
    detail_optimize_memory::days_since_epoch(2024, 1, 1) * 86400;
inline constexpr std::int64_t sales_until =
    detail_optimize_memory::days_since_epoch(2025, 1, 1) * 86400;

namespace detail_optimize_memory {

/// A 64-bit bit mixer: consecutive record numbers give unrelated-looking fields.
constexpr std::uint64_t scramble(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

/// Writes lines into a fixed buffer (plain stores: the examples run as Debug builds, where
/// each std::string append is a chain of calls).
class LineWriter {
 public:
  void text(std::string_view s) {
    s.copy(at_, s.size());
    at_ += s.size();
  }
  void character(char c) { *at_++ = c; }
  /// `value` in decimal, zero-padded to `width` digits.
  void number(std::uint64_t value, std::size_t width = 1) {
    std::array<char, 20> digits{};
    std::size_t length = 0;
    do {
      digits[length++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    while (length < width) digits[length++] = '0';
    while (length > 0) *at_++ = digits[--length];
  }
  std::string_view written() const {
    return {buffer_.data(), static_cast<std::size_t>(at_ - buffer_.data())};
  }

 private:
  std::array<char, 160> buffer_{};  // a line has at most 114 characters
  char* at_ = buffer_.data();
};

}  // namespace detail_optimize_memory

/**
 * An order log of `records` lines, read one line at a time as `std::getline` reads a file.
 * Line `i` is always the same; the first is
 * ```
 * ORD-00000001,cust-007535,India,Bluetooth Speaker Mini,delivered,4,34.99,2024-04-09T10:22:54Z
 * ```
 * Statuses come about 62 % delivered, 18 % shipped, 8 % pending, 7 % cancelled, 5 % returned;
 * 20,000 customers, 16 countries, 20 products, 1 to 4 units.
 */
class OrderFeed {
 public:
  explicit OrderFeed(std::size_t records) : records_(records) {}

  /// The number of records (what a log's header or an index would say).
  std::size_t size() const { return records_; }

  /// Reads the next line into `line` (without a newline); false at the end.
  bool getline(std::string& line) {
    if (next_ == records_) return false;
    detail_optimize_memory::LineWriter out;
    write_line(next_++, out);
    line.assign(out.written());
    return true;
  }

 private:
  static void write_line(std::size_t index, detail_optimize_memory::LineWriter& out) {
    using detail_optimize_memory::days_in_month;
    const std::uint64_t bits = detail_optimize_memory::scramble(index);
    const std::uint64_t more_bits = detail_optimize_memory::scramble(bits);
    out.text("ORD-");
    out.number(index + 1, 8);
    out.text(",cust-");
    out.number(bits % 20000, 6);
    out.character(',');
    out.text(order_countries[(bits >> 16) % order_countries.size()]);
    out.character(',');
    const Product& product = order_products[(bits >> 24) % order_products.size()];
    out.text(product.name);
    out.character(',');
    const std::uint64_t roll = (bits >> 32) % 100;
    out.text(roll < 62   ? "delivered"
             : roll < 80 ? "shipped"
             : roll < 88 ? "pending"
             : roll < 95 ? "cancelled"
                         : "returned");
    out.character(',');
    out.number(1 + more_bits % 4);
    out.character(',');
    out.number(static_cast<std::uint64_t>(product.price_cents / 100));
    out.character('.');
    out.number(static_cast<std::uint64_t>(product.price_cents % 100), 2);
    out.character(',');
    // A second in the 549 days from 1 July 2023, written as ISO 8601.
    const auto offset = static_cast<std::int64_t>((more_bits >> 8) % (order_days * 86400));
    std::int64_t year = 2023, month = 7, day = offset / 86400;
    while (day >= days_in_month(year, month)) {
      day -= days_in_month(year, month);
      if (++month == 13) {
        month = 1;
        ++year;
      }
    }
    const auto second = offset % 86400;
    const auto put = [&out](std::int64_t value, std::size_t width) {
      out.number(static_cast<std::uint64_t>(value), width);
    };
    put(year, 4);
    out.character('-');
    put(month, 2);
    out.character('-');
    put(day + 1, 2);
    out.character('T');
    put(second / 3600, 2);
    out.character(':');
    put(second / 60 % 60, 2);
    out.character(':');
    put(second % 60, 2);
    out.character('Z');
  }

  std::size_t records_;
  std::size_t next_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The output, the same for every version.

/// Orders, units and revenue of a group of sales.
struct Totals {
  std::int64_t orders = 0;
  std::int64_t units = 0;
  std::int64_t revenue_cents = 0;
  bool operator==(const Totals&) const = default;
};

/// What the program computes: the 2024 sales per country and per product.
struct Report {
  std::map<std::string, Totals, std::less<>> by_country;
  std::map<std::string, Totals, std::less<>> by_product;
  bool operator==(const Report&) const = default;

  /// Counts one sale.
  void add(std::string_view country, std::string_view product, std::int64_t units,
           std::int64_t revenue_cents) {
    for (auto [groups, key] : {std::pair{&by_country, country}, std::pair{&by_product, product}}) {
      auto it = groups->find(key);
      if (it == groups->end()) it = groups->emplace(std::string(key), Totals{}).first;
      it->second.orders += 1;
      it->second.units += units;
      it->second.revenue_cents += revenue_cents;
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Parsing, shared by every version.

namespace detail_optimize_memory {

/// The fields of one line (the log has no quoting: no field holds a comma).
inline std::array<std::string_view, order_columns.size()> split_csv(std::string_view line) {
  std::array<std::string_view, order_columns.size()> fields{};
  std::size_t column = 0;
  while (column + 1 < fields.size()) {
    const std::size_t comma = line.find(',');
    fields[column++] = line.substr(0, comma);
    line.remove_prefix(comma == std::string_view::npos ? line.size() : comma + 1);
  }
  fields[column] = line;
  return fields;
}

inline std::int64_t parse_integer(std::string_view text) {
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

/// "109.99" -> 10999.
inline std::int64_t parse_cents(std::string_view text) {
  const std::size_t dot = text.find('.');
  return parse_integer(text.substr(0, dot)) * 100 + parse_integer(text.substr(dot + 1));
}

/// "ORD-00000001" -> 1.
inline std::uint32_t parse_order_id(std::string_view text) {
  return static_cast<std::uint32_t>(parse_integer(text.substr(4)));
}

/// "2024-03-05T12:34:56Z" -> seconds since 1970.
inline std::int64_t parse_timestamp(std::string_view text) {
  const auto number = [text](std::size_t at, std::size_t length) {
    return parse_integer(text.substr(at, length));
  };
  return days_since_epoch(number(0, 4), number(5, 2), number(8, 2)) * 86400 + number(11, 2) * 3600 +
         number(14, 2) * 60 + number(17, 2);
}

/// The filter, on text: delivered or shipped, ordered in 2024.
inline bool is_sale(std::string_view status, std::string_view ordered_at) {
  return (status == "delivered" || status == "shipped") && ordered_at.starts_with("2024-");
}

/// The filter, on numbers.
inline bool is_sale(std::string_view status, std::int64_t ordered_at) {
  return (status == "delivered" || status == "shipped") && ordered_at >= sales_from &&
         ordered_at < sales_until;
}

}  // namespace detail_optimize_memory

// ---------------------------------------------------------------------------------------------
// The versions. Each keeps what the one before did and changes one thing.

/// Step 0's row: column name -> text (a Python dict per row, as csv.DictReader gives).
using TextRow = std::map<std::string, std::string>;

/// Step 0: readlines(), a dict per row, every intermediate list kept, shared ownership.
inline Report baseline(std::size_t records) {
  using namespace detail_optimize_memory;
  OrderFeed feed(records);
  std::vector<std::string> lines;
  for (std::string line; feed.getline(line);) lines.push_back(line);

  std::vector<std::shared_ptr<TextRow>> rows;
  for (const std::string& line : lines) {
    const auto fields = split_csv(line);
    auto row = std::make_shared<TextRow>();
    for (std::size_t c = 0; c < fields.size(); ++c) {
      row->emplace(std::string(order_columns[c]), std::string(fields[c]));
    }
    rows.push_back(row);
  }

  std::vector<std::shared_ptr<TextRow>> sales;
  for (const auto& row : rows) {
    if (is_sale(row->at("status"), row->at("ordered_at"))) sales.push_back(row);
  }

  std::vector<std::shared_ptr<TextRow>> priced;
  for (const auto& row : sales) {
    auto copy = std::make_shared<TextRow>(*row);
    (*copy)["revenue"] =
        std::to_string(parse_integer(row->at("quantity")) * parse_cents(row->at("unit_price")));
    priced.push_back(copy);
  }

  Report report;
  for (const auto& row : priced) {
    report.add(row->at("country"), row->at("product"), parse_integer(row->at("quantity")),
               parse_integer(row->at("revenue")));
  }
  return report;
}

/// Step 1's row: one member per column, still all text (Python's `__slots__`).
struct TextOrder {
  std::string order_id, customer, country, product, status, quantity, unit_price, ordered_at;
};
struct PricedTextOrder {
  TextOrder order;
  std::string revenue;
};

/// Step 1: a struct with fixed members instead of a map per row.
inline Report fixed_fields(std::size_t records) {
  using namespace detail_optimize_memory;
  OrderFeed feed(records);
  std::vector<std::string> lines;
  for (std::string line; feed.getline(line);) lines.push_back(line);

  std::vector<std::shared_ptr<TextOrder>> rows;
  for (const std::string& line : lines) {
    const auto f = split_csv(line);
    rows.push_back(std::make_shared<TextOrder>(
        TextOrder{std::string(f[0]), std::string(f[1]), std::string(f[2]), std::string(f[3]),
                  std::string(f[4]), std::string(f[5]), std::string(f[6]), std::string(f[7])}));
  }

  std::vector<std::shared_ptr<TextOrder>> sales;
  for (const auto& row : rows) {
    if (is_sale(row->status, row->ordered_at)) sales.push_back(row);
  }

  std::vector<std::shared_ptr<PricedTextOrder>> priced;
  for (const auto& row : sales) {
    priced.push_back(std::make_shared<PricedTextOrder>(PricedTextOrder{
        *row, std::to_string(parse_integer(row->quantity) * parse_cents(row->unit_price))}));
  }

  Report report;
  for (const auto& row : priced) {
    report.add(row->order.country, row->order.product, parse_integer(row->order.quantity),
               parse_integer(row->revenue));
  }
  return report;
}

/// Step 2's row: numbers held as numbers (ids, quantities, cents, seconds since 1970).
struct NumericOrder {
  std::uint32_t order_id;
  std::int32_t quantity;
  std::int64_t unit_price_cents;
  std::int64_t ordered_at;
  std::string customer, country, product, status;
};
struct PricedNumericOrder {
  NumericOrder order;
  std::int64_t revenue_cents;
};

namespace detail_optimize_memory {

inline NumericOrder parse_numeric_order(std::string_view line) {
  const auto f = split_csv(line);
  return NumericOrder{parse_order_id(f[0]), static_cast<std::int32_t>(parse_integer(f[5])),
                      parse_cents(f[6]),    parse_timestamp(f[7]),
                      std::string(f[1]),    std::string(f[2]),
                      std::string(f[3]),    std::string(f[4])};
}

}  // namespace detail_optimize_memory

/// Step 2: numeric fields parsed once into numbers.
inline Report numbers_as_numbers(std::size_t records) {
  using namespace detail_optimize_memory;
  OrderFeed feed(records);
  std::vector<std::string> lines;
  for (std::string line; feed.getline(line);) lines.push_back(line);

  std::vector<std::shared_ptr<NumericOrder>> rows;
  for (const std::string& line : lines) {
    rows.push_back(std::make_shared<NumericOrder>(parse_numeric_order(line)));
  }

  std::vector<std::shared_ptr<NumericOrder>> sales;
  for (const auto& row : rows) {
    if (is_sale(row->status, row->ordered_at)) sales.push_back(row);
  }

  std::vector<std::shared_ptr<PricedNumericOrder>> priced;
  for (const auto& row : sales) {
    priced.push_back(std::make_shared<PricedNumericOrder>(
        PricedNumericOrder{*row, row->quantity * row->unit_price_cents}));
  }

  Report report;
  for (const auto& row : priced) {
    report.add(row->order.country, row->order.product, row->order.quantity, row->revenue_cents);
  }
  return report;
}

/**
 * Step 3's row: the columns with a few distinct values (16 countries, 20 products, 5 statuses)
 * are interned strings, `memlens::sys::intern`: each distinct value is stored once and a row
 * holds an 8-byte reference to it. Interned strings live as long as the program, as in CPython
 * before 3.12, so the customer column (20,000 values, 10 orders each) stays a string of its own.
 */
struct Order {
  std::uint32_t order_id;
  std::int32_t quantity;
  std::int64_t unit_price_cents;
  std::int64_t ordered_at;
  std::string customer;
  memlens::Ref<const std::string> country, product, status;
};
struct PricedOrder {
  Order order;
  std::int64_t revenue_cents;
};

namespace detail_optimize_memory {

inline Order parse_order(std::string_view line) {
  const auto f = split_csv(line);
  return Order{parse_order_id(f[0]),       static_cast<std::int32_t>(parse_integer(f[5])),
               parse_cents(f[6]),          parse_timestamp(f[7]),
               std::string(f[1]),          memlens::sys::intern(f[2]),
               memlens::sys::intern(f[3]), memlens::sys::intern(f[4])};
}

inline PricedOrder price(const Order& order) {
  return PricedOrder{order, order.quantity * order.unit_price_cents};
}

inline void count_sale(Report& report, const PricedOrder& sale) {
  report.add(*sale.order.country, *sale.order.product, sale.order.quantity, sale.revenue_cents);
}

}  // namespace detail_optimize_memory

/// Step 3: interned strings for the repeated values.
inline Report interned_strings(std::size_t records) {
  using namespace detail_optimize_memory;
  OrderFeed feed(records);
  std::vector<std::string> lines;
  for (std::string line; feed.getline(line);) lines.push_back(line);

  std::vector<std::shared_ptr<Order>> rows;
  for (const std::string& line : lines) rows.push_back(std::make_shared<Order>(parse_order(line)));

  std::vector<std::shared_ptr<Order>> sales;
  for (const auto& row : rows) {
    if (is_sale(*row->status, row->ordered_at)) sales.push_back(row);
  }

  std::vector<std::shared_ptr<PricedOrder>> priced;
  for (const auto& row : sales) priced.push_back(std::make_shared<PricedOrder>(price(*row)));

  Report report;
  for (const auto& row : priced) count_sale(report, *row);
  return report;
}

/// Step 4: every list is allocated once at its final size. push_back alone grows a vector
/// geometrically: at each growth the old and the new buffer are both alive, and the last
/// buffer can be twice as large as needed.
inline Report reserved(std::size_t records) {
  using namespace detail_optimize_memory;
  OrderFeed feed(records);
  std::vector<std::string> lines;
  lines.reserve(feed.size());
  for (std::string line; feed.getline(line);) lines.push_back(line);

  std::vector<std::shared_ptr<Order>> rows;
  rows.reserve(lines.size());
  for (const std::string& line : lines) rows.push_back(std::make_shared<Order>(parse_order(line)));

  // Counting first costs a pass over the rows, and saves a list sized for all of them.
  const auto is_kept = [](const std::shared_ptr<Order>& row) {
    return is_sale(*row->status, row->ordered_at);
  };
  std::vector<std::shared_ptr<Order>> sales;
  sales.reserve(static_cast<std::size_t>(std::count_if(rows.begin(), rows.end(), is_kept)));
  for (const auto& row : rows) {
    if (is_kept(row)) sales.push_back(row);
  }

  std::vector<std::shared_ptr<PricedOrder>> priced;
  priced.reserve(sales.size());
  for (const auto& row : sales) priced.push_back(std::make_shared<PricedOrder>(price(*row)));

  Report report;
  for (const auto& row : priced) count_sale(report, *row);
  return report;
}

/// Step 5: the rows are values owned by one vector; the list of sales borrows them by pointer,
/// the priced list holds values. No control blocks, no 16-byte shared_ptrs. It comes after
/// reserve: a vector of 80-byte rows that grows by doubling holds both buffers at once, which
/// costs more at the peak (0.7 MB more at 200,000 orders) than the shared_ptr version saves.
inline Report owned_values(std::size_t records) {
  using namespace detail_optimize_memory;
  OrderFeed feed(records);
  std::vector<std::string> lines;
  lines.reserve(feed.size());
  for (std::string line; feed.getline(line);) lines.push_back(line);

  std::vector<Order> rows;
  rows.reserve(lines.size());
  for (const std::string& line : lines) rows.push_back(parse_order(line));

  const auto is_kept = [](const Order& row) { return is_sale(*row.status, row.ordered_at); };
  std::vector<const Order*> sales;
  sales.reserve(static_cast<std::size_t>(std::count_if(rows.begin(), rows.end(), is_kept)));
  for (const Order& row : rows) {
    if (is_kept(row)) sales.push_back(&row);
  }

  std::vector<PricedOrder> priced;
  priced.reserve(sales.size());
  for (const Order* row : sales) priced.push_back(price(*row));

  Report report;
  for (const PricedOrder& row : priced) count_sale(report, row);
  return report;
}

/// Step 6: one line at a time, parsed, filtered, priced and counted before the next is read
/// (Python's generator pipeline): no list at all, only the line being read and the Report.
inline Report streamed(std::size_t records) {
  using namespace detail_optimize_memory;
  OrderFeed feed(records);
  Report report;
  for (std::string line; feed.getline(line);) {
    const Order row = parse_order(line);
    if (is_sale(*row.status, row.ordered_at)) count_sale(report, price(row));
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Measuring them.

/// One version of the program: the technique it adds to the ones before.
struct OptimizationStep {
  std::string_view technique;
  std::string_view python;  ///< the same lesson in Python's terms
  Report (*run)(std::size_t records);
};

/// The versions in the order they are applied; the first is the program as written at first.
inline constexpr std::array<OptimizationStep, 7> optimization_steps{{
    {"baseline: readlines, a map per row, all lists kept, shared_ptr", "csv.DictReader into lists",
     baseline},
    {"fixed fields instead of a map per row", "__slots__", fixed_fields},
    {"numbers stored as numbers, not text", "int(), float() once", numbers_as_numbers},
    {"interned strings for repeated values", "sys.intern", interned_strings},
    {"reserve: lists allocated once at their final size", "[None] * n", reserved},
    {"values owned by one vector, borrowed by pointer", "no extra references", owned_values},
    {"streaming: one line at a time, no lists", "generators", streamed},
}};

/**
 * The number of orders the example program reads by default. The peaks of the versions that
 * keep lists grow in proportion to it; at 200,000 orders the baseline makes about 3.5 million
 * traced allocations, which takes some 10 s of CPU in a Debug build (the examples' CI build),
 * at 50,000 about 2.5 s. 50,000 is 200,000 / 4, as 65,536 (the capacity push_back reaches) is
 * 262,144 / 4, so both counts waste the same share in unreserved vectors: those peaks at
 * 200,000 are the ones at 50,000 times 4, within 0.2 %.
 */
inline constexpr std::size_t example_records = 50'000;

/// What one version used, measured with memlens::tracemalloc (through memory_tracker).
struct StepMemory {
  const OptimizationStep* step = nullptr;
  std::size_t peak = 0;        ///< highest traced size during the run, above its start
  std::ptrdiff_t current = 0;  ///< traced bytes still held afterwards (the Report)
  Report report;               ///< what it computed
};

/**
 * Runs every version over `records` orders, each traced on its own (`memlens::memory_tracker`
 * resets the peak before each run), and returns their peaks and results in order. Allocations
 * are seen when the program includes memlens/track_new.hpp.
 *
 * ```cpp
 * for (const StepMemory& m : measure_optimization_steps(200'000))
 *   fmt::print("{}: peak {} bytes\n", m.step->technique, m.peak);
 * ```
 */
inline std::vector<StepMemory> measure_optimization_steps(std::size_t records) {
  std::vector<StepMemory> measured(optimization_steps.size());
  for (std::size_t i = 0; i < optimization_steps.size(); ++i) {
    StepMemory& m = measured[i];
    m.step = &optimization_steps[i];
    memlens::MemoryUsage usage;
    auto tracked = memlens::memory_tracker(m.step->run,
                                           [&usage](const memlens::MemoryUsage& u) { usage = u; });
    m.report = tracked(records);
    m.peak = usage.peak;
    m.current = usage.current;
  }
  return measured;
}

}  // namespace memlens_examples
