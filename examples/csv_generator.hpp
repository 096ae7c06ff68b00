// A deterministic CSV generator for DatasetProcessor's example, tests and benchmark: an id, a
// timestamp, a category (some quoted, with a comma inside), and four numeric columns, some
// cells quoted and some empty. The same seed writes the same bytes on every machine.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace csvgen {

/// The header line every generated file starts with.
inline constexpr const char* header = "id,timestamp,category,amount,quantity,score,ratio\n";

/// One generated row's values: what a correct parser must find in its text.
struct Row {
  std::uint64_t id = 0;
  std::int64_t cents = 0;                ///< amount is cents / 100, written with two decimals
  std::optional<std::int64_t> quantity;  ///< empty cell when absent
  std::int64_t micro = 0;                ///< score is micro / 1e6, written with six decimals
  std::int64_t ratio_mantissa = 0;       ///< ratio is mantissa * 10^ratio_exponent
  int ratio_exponent = 0;

  double amount() const { return static_cast<double>(cents) / 100.0; }
  double score() const { return static_cast<double>(micro) / 1e6; }
  double ratio() const {
    double r = static_cast<double>(ratio_mantissa);
    double p = 1;
    for (int i = 0; i < (ratio_exponent < 0 ? -ratio_exponent : ratio_exponent); ++i) p *= 10;
    return ratio_exponent < 0 ? r / p : r * p;
  }
};

/// Rows from a seeded splitmix64 stream.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 42) : state_(seed) {}

  /// The next row's values.
  Row next() {
    Row row;
    row.id = ++id_;
    row.cents = static_cast<std::int64_t>(below(10'000'000)) - 1'000'000;
    if (below(20) != 0) row.quantity = static_cast<std::int64_t>(below(1000));
    row.micro = static_cast<std::int64_t>(below(2'000'000)) - 1'000'000;
    row.ratio_mantissa = static_cast<std::int64_t>(below(9000)) + 1000;
    row.ratio_exponent = -static_cast<int>(below(8)) - 3;
    category_ = below(8);
    quote_amount_ = below(10) == 0;
    return row;
  }

  /// Appends `row`, the last one next() returned, as a CSV line.
  void append(std::string& out, const Row& row) const {
    static constexpr const char* categories[] = {"books",      "toys, games", "garden", "food",
                                                 "say \"hi\"", "music",       "sports", "tools"};
    number(out, static_cast<std::int64_t>(row.id));
    // A timestamp one second per row from 2024-01-01 00:00:00, as text.
    const std::uint64_t s = row.id;
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, ",2024-%02u-%02uT%02u:%02u:%02u,",
                  static_cast<unsigned>(1 + s / 2'419'200 % 12),
                  static_cast<unsigned>(1 + s / 86'400 % 28), static_cast<unsigned>(s / 3600 % 24),
                  static_cast<unsigned>(s / 60 % 60), static_cast<unsigned>(s % 60));
    out += stamp;
    const std::string category = categories[category_];
    if (category.find_first_of(",\"") != std::string::npos) {
      out += '"';
      for (char c : category) {
        if (c == '"') out += '"';
        out += c;
      }
      out += '"';
    } else {
      out += category;
    }
    out += ',';
    if (quote_amount_) out += '"';
    fixed(out, row.cents, 2);
    if (quote_amount_) out += '"';
    out += ',';
    if (row.quantity) number(out, *row.quantity);
    out += ',';
    fixed(out, row.micro, 6);
    out += ',';
    number(out, row.ratio_mantissa);
    out += 'e';
    number(out, row.ratio_exponent);
    out += '\n';
  }

  /// Writes a file of at least `bytes` bytes (whole rows) to `path`, through a temporary file
  /// renamed into place; returns the number of rows.
  std::uint64_t write_file(const std::filesystem::path& path, std::uint64_t bytes) {
    const std::filesystem::path temp = path.string() + ".tmp";
    std::FILE* f = std::fopen(temp.c_str(), "wb");
    if (f == nullptr) throw std::runtime_error("csvgen: cannot create " + temp.string());
    std::string buffer = header;
    std::uint64_t written = 0, rows = 0;
    while (written + buffer.size() < bytes) {
      append(buffer, next());
      ++rows;
      if (buffer.size() >= (1u << 20)) {
        written += flush(f, buffer, temp);
      }
    }
    written += flush(f, buffer, temp);
    if (std::fclose(f) != 0) throw std::runtime_error("csvgen: cannot write " + temp.string());
    std::filesystem::rename(temp, path);
    return rows;
  }

 private:
  std::uint64_t below(std::uint64_t n) {
    state_ += 0x9E3779B97F4A7C15u;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return (z ^ (z >> 31)) % n;
  }

  static void number(std::string& out, std::int64_t v) {
    char text[24];
    const auto result = std::to_chars(text, text + sizeof text, v);
    out.append(text, result.ptr);
  }

  // v / 10^decimals with exactly `decimals` digits after the point.
  static void fixed(std::string& out, std::int64_t v, int decimals) {
    if (v < 0) out += '-';
    const std::uint64_t a = v < 0 ? static_cast<std::uint64_t>(-v) : static_cast<std::uint64_t>(v);
    std::uint64_t scale = 1;
    for (int i = 0; i < decimals; ++i) scale *= 10;
    number(out, static_cast<std::int64_t>(a / scale));
    out += '.';
    const std::string frac = std::to_string(a % scale);
    out.append(static_cast<std::size_t>(decimals) - frac.size(), '0');
    out += frac;
  }

  static std::uint64_t flush(std::FILE* f, std::string& buffer, const std::filesystem::path& p) {
    if (std::fwrite(buffer.data(), 1, buffer.size(), f) != buffer.size()) {
      throw std::runtime_error("csvgen: cannot write " + p.string());
    }
    const std::uint64_t n = buffer.size();
    buffer.clear();
    return n;
  }

  std::uint64_t state_;
  std::uint64_t id_ = 0;
  std::uint64_t category_ = 0;
  bool quote_amount_ = false;
};

}  // namespace csvgen
