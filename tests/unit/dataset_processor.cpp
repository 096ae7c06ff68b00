// DatasetProcessor: RFC 4180 parsing at every buffer and thread boundary, the statistics against
// values computed apart, bad input, the memory budget (traced), progress and the bar.
#include <sys/stat.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <memlens/memlens.hpp>
#include <memlens/testing.hpp>
#include <random>
#include <ranges>
#include <string>
#include <vector>

#include "memlens_test.hpp"
#include "unit/dataset_test.hpp"

namespace {

using dataset_test::TempDir;
using dataset_test::write;
using memlens::BadRowAction;
using memlens::ChunkResult;
using memlens::DatasetProcessor;
using memlens::DatasetSummary;
using memlens::ProcessorOptions;
using memlens_test::contains;

static_assert(std::ranges::input_range<memlens::ChunkRange>);

ProcessorOptions options(unsigned threads, bool use_mmap = false,
                         std::size_t budget = std::size_t{64} << 20) {
  ProcessorOptions o;
  o.threads = threads;
  o.use_mmap = use_mmap;
  o.memory_budget = budget;
  return o;
}

DatasetSummary summarize(const std::filesystem::path& path, ProcessorOptions o = {},
                         std::size_t chunk_size = 10000) {
  return DatasetProcessor(chunk_size, std::move(o)).aggregate_file(path);
}

// Every (threads, mmap) pair the tests compare, with a budget small enough for many segments.
std::vector<ProcessorOptions> every_reader(std::size_t budget = 256 * 1024) {
  std::vector<ProcessorOptions> all;
  for (unsigned threads : {1u, 2u, 3u}) {
    for (bool use_mmap : {false, true}) all.push_back(options(threads, use_mmap, budget));
  }
  return all;
}

void require_same(const DatasetSummary& a, const DatasetSummary& b) {
  REQUIRE(a.rows == b.rows);
  REQUIRE(a.bytes == b.bytes);
  REQUIRE(a.bad_rows == b.bad_rows);
  REQUIRE(a.bad_lines == b.bad_lines);
  REQUIRE(a.columns.size() == b.columns.size());
  for (std::size_t c = 0; c < a.columns.size(); ++c) {
    INFO("column " << a.columns[c].name);
    CHECK(a.columns[c].name == b.columns[c].name);
    CHECK(a.columns[c].count == b.columns[c].count);
    CHECK(a.columns[c].sum == b.columns[c].sum);  // bit for bit: the same sums in the same order
    CHECK(a.columns[c].min == b.columns[c].min);
    CHECK(a.columns[c].max == b.columns[c].max);
    CHECK(a.columns[c].non_numeric == b.columns[c].non_numeric);
    CHECK(a.columns[c].empty == b.columns[c].empty);
  }
}

}  // namespace

TEST_CASE("DatasetProcessor: counts sums minima and maxima of a small file", "[tools][dataset]") {
  TempDir dir("dataset");
  const auto path = write(dir / "small.csv",
                          "name,price,qty\n"
                          "apple,1.5,3\n"
                          "\"pear, green\",2.25,\n"
                          "plum,-4,10\n"
                          "fig,n/a,1e2\n");
  const DatasetSummary s = summarize(path);
  CHECK(s.rows == 4);
  REQUIRE(s.columns.size() == 3);
  CHECK(s.columns[0].name == "name");
  CHECK(s.column("name").non_numeric == 4);
  CHECK(s.column("name").count == 0);
  CHECK(std::isnan(s.column("name").mean()));
  const auto& price = s.column("price");
  CHECK(price.count == 3);
  CHECK(price.sum == -0.25);
  CHECK(price.min == -4);
  CHECK(price.max == 2.25);
  CHECK(price.non_numeric == 1);
  const auto& qty = s.column("qty");
  CHECK(qty.count == 3);
  CHECK(qty.sum == 113);
  CHECK(qty.empty == 1);
  CHECK(qty.mean() == 113.0 / 3);
  CHECK(s.bytes == std::filesystem::file_size(path) - std::string("name,price,qty\n").size());
  REQUIRE_THROWS_AS(s.column("nope"), memlens::ValueError);
}

TEST_CASE("DatasetProcessor: generated data matches the generator's values on every reader",
          "[tools][dataset][threads]") {
  TempDir dir("dataset");
  csvgen::Generator generator;
  const std::uint64_t rows = generator.write_file(dir / "gen.csv", 3 << 20);
  const auto expected = dataset_test::expected_columns(rows);
  std::optional<DatasetSummary> first;
  for (const auto& o : every_reader()) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    const DatasetSummary s = summarize(dir / "gen.csv", o, 1000);
    REQUIRE(s.rows == rows);
    REQUIRE(s.columns.size() == expected.size());
    for (std::size_t c = 0; c < expected.size(); ++c) {
      INFO("column " << expected[c].name);
      CHECK(s.columns[c].name == expected[c].name);
      CHECK(s.columns[c].count == expected[c].count);
      CHECK(dataset_test::close(s.columns[c].sum, expected[c].sum));
      CHECK(s.columns[c].min == expected[c].min);
      CHECK(s.columns[c].max == expected[c].max);
      CHECK(s.columns[c].non_numeric == expected[c].non_numeric);
      CHECK(s.columns[c].empty == expected[c].empty);
    }
    if (first)
      require_same(*first, s);
    else
      first = s;
  }
}

TEST_CASE("DatasetProcessor: chunks cover the rows in order", "[tools][dataset][threads]") {
  TempDir dir("dataset");
  csvgen::Generator generator;
  const std::uint64_t rows = generator.write_file(dir / "gen.csv", 400 << 10);
  for (std::size_t chunk_size : {std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
    for (unsigned threads : {1u, 2u}) {
      INFO("chunk_size " << chunk_size << " threads " << threads);
      DatasetProcessor processor(chunk_size, options(threads, false, 256 * 1024));
      std::uint64_t next_row = 0, bytes = 0, chunks = 0;
      for (const ChunkResult& chunk : processor.process_file(dir / "gen.csv")) {
        REQUIRE(chunk.first_row == next_row);
        REQUIRE(chunk.columns.size() == 7);
        REQUIRE(chunk.columns[0].count == chunk.rows);
        // Every chunk but the last is full.
        REQUIRE((chunk.rows == chunk_size || chunk.first_row + chunk.rows == rows));
        next_row += chunk.rows;
        bytes += chunk.bytes;
        ++chunks;
      }
      CHECK(next_row == rows);
      CHECK(chunks == (rows + chunk_size - 1) / chunk_size);
      CHECK(bytes == std::filesystem::file_size(dir / "gen.csv") - std::strlen(csvgen::header));
    }
  }
}

TEST_CASE("DatasetProcessor: quotes and quoted newlines across every buffer and thread boundary",
          "[tools][dataset][threads]") {
  // Rows of varying length whose quoted fields hold delimiters, escaped quotes and line ends, so
  // that segment cuts (every 4 KiB with this budget) fall inside all of them somewhere.
  TempDir dir("dataset");
  std::string text = "label,value,note\r\n";
  memlens::ColumnStats value;
  std::mt19937 random(7);
  const std::uint64_t rows = 6000;
  std::uint64_t quoted_lines = 0;
  for (std::uint64_t r = 0; r < rows; ++r) {
    const int shape = static_cast<int>(random() % 5);
    const double v = static_cast<double>(static_cast<int>(random() % 20001) - 10000) / 8;
    char number[32];
    const auto end = std::to_chars(number, number + sizeof number, v);
    const std::string n(number, end.ptr);
    std::string filler(random() % 40, 'x');
    switch (shape) {
      case 0:
        text += "plain," + n + "," + filler + "\n";
        break;
      case 1:
        text += "\"with, comma\",\"" + n + "\",\"" + filler + "\"\"q\"\"\"\r\n";
        break;
      case 2:
        text += "\"two\nlines\"," + n + ",\"and\r\nmore\n" + filler + "\"\n";
        quoted_lines += 3;
        break;
      case 3:
        text += "\"\"\"quoted\"\"\"," + n + ",\n";
        break;
      default:
        text += "," + n + ",\"" + filler + "\"\n";
        break;
    }
    dataset_test::add(value, v);
  }
  const auto path = write(dir / "quotes.csv", text);
  std::optional<DatasetSummary> first;
  for (const auto& o : every_reader()) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    const DatasetSummary s = summarize(path, o, 97);
    REQUIRE(s.rows == rows);
    CHECK(s.column("value").count == rows);
    CHECK(dataset_test::close(s.column("value").sum, value.sum));
    CHECK(s.column("value").min == value.min);
    CHECK(s.column("value").max == value.max);
    CHECK(s.column("label").non_numeric + s.column("label").empty == rows);
    CHECK(s.bytes == text.size() - std::string("label,value,note\r\n").size());
    if (first)
      require_same(*first, s);
    else
      first = s;
  }
  // The lines of errors count the quoted line ends: a bad last row names its true line.
  const std::uint64_t last_line = 1 + rows + quoted_lines + 1;
  write(path, text + "a,1,2,3\n");
  REQUIRE_THROWS_WITH(summarize(path, options(1)),
                      contains(":" + std::to_string(last_line) + ":7: malformed row"));
  REQUIRE_THROWS_WITH(summarize(path, options(2, true, 256 * 1024)),
                      contains(":" + std::to_string(last_line) + ":7: malformed row"));
}

TEST_CASE("DatasetProcessor: CRLF a BOM and a missing final newline", "[tools][dataset][threads]") {
  TempDir dir("dataset");
  for (const auto& o : every_reader()) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    for (const std::string& text :
         {std::string("\xEF\xBB\xBF"
                      "a,b\r\n1,2\r\n3,4\r\n"),
          std::string("\xEF\xBB\xBF"
                      "a,b\n1,2\n3,4"),
          std::string("a,b\r\n1,2\r\n3,4"), std::string("a,b\n1,2\n3,4\n")}) {
      const DatasetSummary s = summarize(write(dir / "t.csv", text), o);
      REQUIRE(s.columns.size() == 2);
      CHECK(s.columns[0].name == "a");  // the BOM is not part of the name
      CHECK(s.columns[1].name == "b");  // nor is the CR
      CHECK(s.rows == 2);
      CHECK(s.column("a").sum == 4);
      CHECK(s.column("b").sum == 6);  // "4\r" is the number 4
      CHECK(s.column("b").non_numeric == 0);
    }
  }
}

TEST_CASE("DatasetProcessor: an empty file and a header-only file", "[tools][dataset][threads]") {
  TempDir dir("dataset");
  for (const auto& o : every_reader()) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    for (const std::string& text : {std::string(), std::string("\xEF\xBB\xBF")}) {
      DatasetProcessor processor(10, o);
      auto chunks = processor.process_file(write(dir / "empty.csv", text));
      CHECK(chunks.header().empty());
      CHECK(chunks.begin() == std::default_sentinel);
      CHECK(processor.aggregate_file(dir / "empty.csv").rows == 0);
    }
    for (const std::string& text : {std::string("x,\"y,z\""), std::string("x,\"y,z\"\r\n")}) {
      DatasetProcessor processor(10, o);
      auto chunks = processor.process_file(write(dir / "header.csv", text));
      CHECK(chunks.header() == std::vector<std::string>{"x", "y,z"});
      CHECK(chunks.begin() == std::default_sentinel);
      const DatasetSummary s = processor.aggregate_file(dir / "header.csv");
      CHECK(s.rows == 0);
      REQUIRE(s.columns.size() == 2);
      CHECK(s.columns[1].name == "y,z");
    }
  }
}

TEST_CASE("DatasetProcessor: numbers are read as from_chars reads them", "[tools][dataset]") {
  // Decimal strings of every shape the fast paths take or leave, against std::from_chars.
  TempDir dir("dataset");
  std::mt19937_64 random(11);
  std::string text = "v\n";
  std::vector<double> values;
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    if (random() % 3 == 0) s += '-';
    const int digits = 1 + static_cast<int>(random() % 24);
    const int point = static_cast<int>(random() % static_cast<std::uint64_t>(digits + 2));
    for (int d = 0; d < digits; ++d) {
      if (d == point && d > 0) s += '.';
      s += static_cast<char>('0' + random() % 10);
    }
    if (random() % 4 == 0) s += "e" + std::to_string(static_cast<int>(random() % 80) - 40);
    double v = 0;
    const auto result = std::from_chars(s.data(), s.data() + s.size(), v);
    REQUIRE(result.ec == std::errc());
    REQUIRE(result.ptr == s.data() + s.size());
    values.push_back(v);
    text += (i % 2 ? "\"" + s + "\"" : s) + "\n";  // quoted or not, the same number
  }
  const auto path = write(dir / "numbers.csv", text);
  DatasetProcessor processor(1);
  std::size_t i = 0;
  for (const ChunkResult& chunk : processor.process_file(path)) {
    REQUIRE(chunk.columns[0].count == 1);
    INFO("row " << i);
    REQUIRE(chunk.columns[0].sum == values[i]);
    ++i;
  }
  CHECK(i == values.size());
}

TEST_CASE("DatasetProcessor: what counts as a number", "[tools][dataset]") {
  TempDir dir("dataset");
  const auto path = write(dir / "kinds.csv",
                          "v\n+5\n-0.5\n.5\n5.\n1e3\n1E-2\n\"7\"\n"  // 7 numbers: 1015.51
                          "inf\nnan\n 1\n1 \n1e\n--1\n1.2.3\n0x10\n\"1\"\"\"\nabc\n"  // 10 texts
                          "\"\"\n\n");                                                // 2 empty
  const DatasetSummary s = summarize(path);
  const auto& v = s.column("v");
  CHECK(v.count == 7);
  CHECK(dataset_test::close(v.sum, 5 - 0.5 + 0.5 + 5 + 1000 + 0.01 + 7));
  CHECK(v.non_numeric == 10);
  CHECK(v.empty == 2);
}

TEST_CASE("DatasetProcessor: a malformed row names the file line and column",
          "[tools][dataset][threads]") {
  TempDir dir("dataset");
  struct Case {
    std::string text, where, what;
  };
  const std::vector<Case> cases = {
      {"a,b\n1,2\n1,2,3\n", ":3:5:", "more fields than the header's 2"},
      {"a,b\n1,2\n\"x\ny\"\n", ":4:3:", "1 fields where the header has 2"},
      {"a,b\n1,2\n1,\"2\n", ":3:3:", "a quoted field is never closed"},
      {"a,b\n1,2\n1,\"2\"x\n", ":3:6:", "a character after a closing quote"},
      {"a,b\n1,2\n1,2\"\n", ":3:4:", "a quote inside an unquoted field"},
      {"a,b\n1,2\n\n", ":3:1:", "1 fields where the header has 2"},
  };
  for (const auto& c : cases) {
    const auto path = write(dir / "bad.csv", c.text);
    for (const auto& o : every_reader()) {
      INFO(c.text << " threads " << o.threads << " mmap " << o.use_mmap);
      REQUIRE_THROWS_AS(summarize(path, o), memlens::ValueError);
      REQUIRE_THROWS_WITH(summarize(path, o), contains("dataset: " + path.string() + c.where +
                                                       " malformed row: " + c.what));
    }
  }
  // A header whose quote never closes.
  REQUIRE_THROWS_WITH(summarize(write(dir / "h.csv", "a,\"b\n1,2\n")),
                      contains("the header has a quoted field never closed"));
}

TEST_CASE("DatasetProcessor: skipped bad rows are counted with their lines",
          "[tools][dataset][threads]") {
  TempDir dir("dataset");
  std::string text = "a,b\n";
  std::vector<std::uint64_t> bad_lines;
  double sum = 0;
  std::uint64_t good = 0, line = 1;
  for (int r = 0; r < 3000; ++r) {
    ++line;
    if (r % 200 == 3) {
      text += r % 400 == 3 ? "1,2,3\n" : "oops\n";
      bad_lines.push_back(line);
    } else if (r % 200 == 50) {
      text += "x\"y,1\n";  // a stray quote: the record runs to the next quote, two lines on
      text += "z\",2\n";
      bad_lines.push_back(line++);
    } else {
      text += std::to_string(r) + "," + std::to_string(r % 7) + "\n";
      sum += r;
      ++good;
    }
  }
  text += "last,\"open";  // an unclosed quote at the end of the file
  bad_lines.push_back(++line);
  const auto path = write(dir / "skip.csv", text);
  std::optional<DatasetSummary> first;
  for (auto o : every_reader(128 * 1024)) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    o.on_bad_row = BadRowAction::skip;
    const DatasetSummary s = summarize(path, o, 100);
    CHECK(s.rows == good);
    CHECK(s.bad_rows == bad_lines.size());
    CHECK(s.bad_lines == std::vector<std::uint64_t>(bad_lines.begin(), bad_lines.begin() + 10));
    CHECK(s.column("a").count == good);
    CHECK(s.column("a").sum == sum);
    if (first)
      require_same(*first, s);
    else
      first = s;
  }
}

TEST_CASE("DatasetProcessor: a missing file a directory and an unreadable file throw Error",
          "[tools][dataset]") {
  TempDir dir("dataset");
  DatasetProcessor processor;
  REQUIRE_THROWS_AS(processor.process_file(dir / "missing.csv"), memlens::Error);
  REQUIRE_THROWS_WITH(processor.process_file(dir / "missing.csv"),
                      contains("dataset: cannot open '" + (dir / "missing.csv").string() +
                               "': No such file or directory"));
  REQUIRE_THROWS_WITH(processor.process_file(dir.path),
                      contains("'" + dir.path.string() + "' is a directory"));
  const auto path = write(dir / "secret.csv", "a\n1\n");
  ::chmod(path.c_str(), 0);
  if (::geteuid() != 0) {  // root reads any file
    REQUIRE_THROWS_WITH(processor.process_file(path), contains("Permission denied"));
  }
}

TEST_CASE("DatasetProcessor: a record longer than the budget allows is an error",
          "[tools][dataset][threads]") {
  TempDir dir("dataset");
  const std::size_t budget = 256 * 1024;
  const auto path =
      write(dir / "long.csv", "a,b\n1,2\n\"" + std::string(200 * 1024, 'x') + "\",3\n");
  for (const auto& o : every_reader(budget)) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    REQUIRE_THROWS_WITH(summarize(path, o), contains(":3: a record longer than"));
  }
  // The same record fits a larger budget.
  CHECK(summarize(path, options(2, false, 16 << 20)).rows == 2);
}

TEST_CASE("DatasetProcessor: the traced peak stays under the budget for a file 20 times larger",
          "[tools][dataset][threads]") {
  TempDir dir("dataset");
  const std::size_t budget = 1 << 20;
  csvgen::Generator generator;
  generator.write_file(dir / "big.csv", 20 * budget + 4096);
  REQUIRE(std::filesystem::file_size(dir / "big.csv") > 20 * budget);
  for (const auto& o : every_reader(budget)) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    std::uint64_t rows = 0;
    const std::size_t peak = memlens::testing::peak_memory_of([&] {
      DatasetProcessor processor(1000, o);
      for (const ChunkResult& chunk : processor.process_file(dir / "big.csv")) rows += chunk.rows;
    });
    CHECK(rows > 0);
    CHECK(peak < budget);
    // The read buffers were traced: the measurement sees them.
    if (!o.use_mmap) CHECK(peak >= 4096);
  }
}

TEST_CASE("DatasetProcessor: stopping early and errors leak nothing", "[tools][dataset][threads]") {
  TempDir dir("dataset");
  csvgen::Generator generator;
  generator.write_file(dir / "gen.csv", 2 << 20);
  write(dir / "bad.csv", "a,b\n1,2\n" + std::string(100000, '\n'));
  for (const auto& o : every_reader()) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    REQUIRE_THAT(([&] {
                   DatasetProcessor processor(100, o);
                   auto chunks = processor.process_file(dir / "gen.csv");
                   int n = 0;
                   for (const ChunkResult& chunk : chunks) {
                     if (chunk.rows == 0 || ++n == 3) break;  // workers are still running
                   }
                 }),
                 memlens::testing::NoLeaks());
    REQUIRE_THAT(([&] {
                   try {
                     summarize(dir / "bad.csv", o);
                   } catch (const memlens::ValueError&) {
                   }
                 }),
                 memlens::testing::NoLeaks());
  }
}

TEST_CASE("DatasetProcessor: progress reaches the file size", "[tools][dataset][threads]") {
  TempDir dir("dataset");
  csvgen::Generator generator;
  const std::uint64_t rows = generator.write_file(dir / "gen.csv", 1 << 20);
  const std::uint64_t size = std::filesystem::file_size(dir / "gen.csv");
  for (auto o : every_reader()) {
    std::vector<memlens::Progress> seen;
    o.progress = [&](const memlens::Progress& p) { seen.push_back(p); };
    summarize(dir / "gen.csv", o);
    REQUIRE(seen.size() > 10);
    for (std::size_t i = 1; i < seen.size(); ++i) {
      CHECK(seen[i].bytes_done >= seen[i - 1].bytes_done);
      CHECK(seen[i].rows >= seen[i - 1].rows);
      CHECK(seen[i].elapsed >= seen[i - 1].elapsed);
    }
    CHECK(seen.back().bytes_done == size);
    CHECK(seen.back().bytes_total == size);
    CHECK(seen.back().rows == rows);
  }
}

TEST_CASE("DatasetProcessor: ProgressBar draws percentage speed and time left",
          "[tools][dataset]") {
  using namespace std::chrono_literals;
  const std::string line = memlens::ProgressBar::render({500'000'000, 1'000'000'000, 10, 2s});
  CHECK(line.front() == '\r');
  CHECK_THAT(line, contains("[###############               ]"));
  CHECK_THAT(line, contains(" 50.0 %"));
  CHECK_THAT(line, contains("250.0 MB/s"));
  CHECK_THAT(line, contains("ETA 2 s"));

  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  {
    memlens::ProgressBar bar(out, true);
    const std::function<void(const memlens::Progress&)> callback = bar;  // copies share the bar
    callback({10, 100, 1, 1s});
    callback({20, 100, 2, 1s + 10ms});  // within a tenth of a second: not drawn
    callback({100, 100, 9, 2s});        // the end: drawn, then a newline
  }
  std::rewind(out);
  std::string written;
  for (int c; (c = std::fgetc(out)) != EOF;) written += static_cast<char>(c);
  std::fclose(out);
  CHECK(std::count(written.begin(), written.end(), '\r') == 2);
  CHECK_THAT(written, contains("100.0 %"));
  CHECK(written.back() == '\n');

  // Not a terminal and not forced: nothing is drawn.
  std::FILE* quiet = std::tmpfile();
  memlens::ProgressBar silent(quiet);
  silent({1, 2, 1, 1s});
  CHECK(std::ftell(quiet) == 0);
  std::fclose(quiet);
}

TEST_CASE("DatasetProcessor: options are checked", "[tools][dataset]") {
  REQUIRE_THROWS_WITH(DatasetProcessor(0), contains("chunk_size must be at least 1"));
  REQUIRE_THROWS_WITH(DatasetProcessor(10, options(0)),
                      contains("threads must be between 1 and 256, not 0"));
  ProcessorOptions quote;
  quote.delimiter = '"';
  REQUIRE_THROWS_WITH(DatasetProcessor(10, quote), contains("the delimiter cannot be a quote"));
  for (const char d : {'.', '-', '7', 'e'}) {
    ProcessorOptions numeric;
    numeric.delimiter = d;
    REQUIRE_THROWS_WITH(DatasetProcessor(10, numeric), contains("a character of numbers"));
  }
  TempDir dir("dataset");
  const auto path = write(dir / "a.csv", "a\n1\n");
  REQUIRE_THROWS_WITH(summarize(path, options(8, false, 32 * 1024)),
                      contains("memory_budget 32768 is too small for 8 threads ("));
  // Another delimiter.
  ProcessorOptions tabs;
  tabs.delimiter = '\t';
  const DatasetSummary s = summarize(write(dir / "t.tsv", "a\tb,c\n1\t2\n"), tabs);
  REQUIRE(s.columns.size() == 2);
  CHECK(s.columns[1].name == "b,c");
  CHECK(s.column("b,c").sum == 2);
}

TEST_CASE("DatasetProcessor: a range is iterated once", "[tools][dataset]") {
  TempDir dir("dataset");
  const auto path = write(dir / "a.csv", "a\n1\n2\n");
  DatasetProcessor processor(1);
  auto chunks = processor.process_file(path);
  auto it = chunks.begin();
  CHECK(it->columns[0].sum == 1);
  ++it;
  CHECK((*it).columns[0].sum == 2);
  it++;
  CHECK(it == chunks.end());
  REQUIRE_THROWS_WITH(chunks.begin(), contains("iterated only once"));
}

TEST_CASE("DatasetProcessor: memory_usage reads the process's resident memory",
          "[tools][dataset]") {
  const DatasetProcessor::MemoryUsage usage = DatasetProcessor().memory_usage();
  const memlens::ProcessMemory direct = memlens::process_memory();
  CHECK(direct.peak_rss >= usage.peak_rss);  // the high-water mark never goes down
  const DatasetProcessor configured(123, options(2, true, 8 << 20));
  CHECK(configured.chunk_size() == 123);
  CHECK(configured.options().threads == 2);
  CHECK(configured.options().use_mmap);
  CHECK(configured.options().memory_budget == std::size_t{8} << 20);
  CHECK(usage.current_rss > 0);
  CHECK(usage.peak_rss >= usage.current_rss);
  CHECK(usage.anon_rss > 0);
  CHECK(usage.anon_rss <= usage.current_rss);
}

TEST_CASE("DatasetProcessor: the longest record allowed does not depend on the threads",
          "[tools][dataset][threads]") {
  // With a 128 KiB budget records up to 2 KiB (budget / 64) always fit, wherever a segment cut
  // falls in them, and longer ones fail with the same message on every reader.
  TempDir dir("dataset");
  const std::size_t budget = 128 * 1024;
  for (std::size_t skew = 0; skew < 3000; skew += 700) {
    std::string text = "a\n";
    for (std::size_t i = 0; i < skew; i += 2) text += "1\n";  // moves the long record along
    text += std::string(2040, 'x') + "\n";
    for (int i = 0; i < 3000; ++i) text += "1\n";
    const auto path = write(dir / "fits.csv", text);
    for (const auto& o : every_reader(budget)) {
      INFO("skew " << skew << " threads " << o.threads << " mmap " << o.use_mmap);
      CHECK(summarize(path, o).rows == 3001 + (skew + 1) / 2);
    }
  }
  const auto path =
      write(dir / "long.csv", "a\n1\n" + std::string(9000, 'x') + "\n" + std::string(20000, '\n'));
  for (const auto& o : every_reader(budget)) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    REQUIRE_THROWS_WITH(summarize(path, o),
                        contains(":3: a record longer than 2048 bytes (memory_budget / 64)"));
  }
}

TEST_CASE("DatasetProcessor: a raised row leaves the same chunks before it on every reader",
          "[tools][dataset][threads]") {
  // A stray quote whose section closes far away: the error waits for the whole record on one
  // thread as on several, and a record that outgrows the limit names the stray quote.
  TempDir dir("dataset");
  std::string text = "a\n";
  for (int i = 0; i < 1000; ++i) text += "1\n";
  text += "x\"y\n";
  for (int i = 0; i < 4000; ++i) text += "1\n";
  const auto near = write(dir / "near.csv", text + "\"\n" + std::string(6000, '2') + "\n");
  const auto far = write(dir / "far.csv", text + std::string(200000, '3') + "\n\"\n");
  for (const auto& path : {near, far}) {
    std::optional<std::size_t> first;
    for (const auto& o : every_reader(512 * 1024)) {
      INFO(path.filename().string() << " threads " << o.threads << " mmap " << o.use_mmap);
      DatasetProcessor processor(1, o);
      std::size_t delivered = 0;
      std::string message;
      try {
        for (const ChunkResult& chunk : processor.process_file(path)) delivered += chunk.rows;
      } catch (const memlens::ValueError& e) {
        message = e.what();
      }
      CHECK_THAT(message, contains(":1002:2: malformed row: a quote inside an unquoted field"));
      if (first)
        CHECK(delivered == *first);
      else
        first = delivered;
    }
  }
}

TEST_CASE("DatasetProcessor: one-row chunks stay within the budget", "[tools][dataset][threads]") {
  // Per-chunk results are memory too: with chunk_size 1 a segment's results outweigh its bytes
  // many times (the 4 KiB segments of this budget would hold 512 chunks each, 200 KiB).
  TempDir dir("dataset");
  std::string text = "a,b,c,d\n";
  for (int i = 0; i < 150000; ++i) text += "1,2,3,4\n";
  const auto path = write(dir / "rows.csv", text);
  const std::size_t budget = 128 * 1024;
  for (const auto& o : every_reader(budget)) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    std::uint64_t chunks = 0;
    const std::size_t peak = memlens::testing::peak_memory_of([&] {
      DatasetProcessor processor(1, o);
      for (const ChunkResult& chunk : processor.process_file(path)) chunks += chunk.rows;
    });
    CHECK(chunks == 150000);
    CHECK(peak < budget);
  }
}

TEST_CASE("DatasetProcessor: the budget a thread count needs is the one the error names",
          "[tools][dataset][threads]") {
  TempDir dir("dataset");
  const auto path = write(dir / "a.csv", "a\n1\n");
  std::string message;
  try {
    summarize(path, options(40, false, 256 * 1024));
  } catch (const memlens::ValueError& e) {
    message = e.what();
  }
  REQUIRE_THAT(message, contains("memory_budget 262144 is too small for 40 threads ("));
  const std::size_t at = message.find('(') + 1;
  const std::size_t enough = std::stoull(message.substr(at, message.find(' ', at) - at));
  CHECK(summarize(path, options(40, false, enough)).rows == 1);
  REQUIRE_THROWS_WITH(summarize(path, options(200, false, 256 * 1024)),
                      contains("no memory_budget is enough for 200 threads"));
  REQUIRE_THROWS_WITH(DatasetProcessor(10, options(257)),
                      contains("threads must be between 1 and 256, not 257"));
  REQUIRE_THROWS_WITH(DatasetProcessor(10, options(4294967294u)), contains("not 4294967294"));
}

TEST_CASE("DatasetProcessor: an empty file reports its end and a moved-from range refuses use",
          "[tools][dataset]") {
  TempDir dir("dataset");
  ProcessorOptions o;
  int calls = 0;
  o.progress = [&calls](const memlens::Progress& p) {
    ++calls;
    CHECK(p.bytes_done == p.bytes_total);
  };
  CHECK(summarize(write(dir / "empty.csv", ""), o).rows == 0);
  CHECK(calls == 1);
  DatasetProcessor processor;
  auto chunks = processor.process_file(dir / "empty.csv");
  auto moved = std::move(chunks);
  REQUIRE_THROWS_WITH(chunks.begin(), contains("moved from"));  // NOLINT(bugprone-use-after-move)
  REQUIRE_THROWS_WITH(chunks.header(), contains("moved from"));
  CHECK(moved.begin() == moved.end());
  // Past the end the bar stays whole.
  CHECK_THAT(memlens::ProgressBar::render({200, 100, 1, std::chrono::seconds(1)}),
             contains("100.0 %"));
}

TEST_CASE("DatasetProcessor: a bad row too long to hold is skipped as it is read",
          "[tools][dataset][threads]") {
  // A stray quote whose section runs past the longest record the budget holds (2 KiB here):
  // passed over by reading on to its end, or to the end of the file, one bad row.
  TempDir dir("dataset");
  std::string start = "a\n";
  for (int i = 0; i < 100; ++i) start += "1\n";
  start += "x\"y\n";
  std::string inside;
  for (int i = 0; i < 3000; ++i) inside += "9\n";
  std::string after = "\"\n";
  for (int i = 0; i < 50; ++i) after += "2\n";
  const auto closed = write(dir / "closed.csv", start + inside + after);
  const auto open = write(dir / "open.csv", start + inside);
  std::optional<DatasetSummary> first;
  for (auto o : every_reader(128 * 1024)) {
    INFO("threads " << o.threads << " mmap " << o.use_mmap);
    o.on_bad_row = BadRowAction::skip;
    const DatasetSummary s = summarize(closed, o, 30);
    CHECK(s.rows == 150);
    CHECK(s.bad_rows == 1);
    CHECK(s.bad_lines == std::vector<std::uint64_t>{102});
    CHECK(s.column("a").sum == 200);
    CHECK(s.bytes == std::filesystem::file_size(closed) - 2);
    if (first) require_same(*first, s);
    else first = s;
    const DatasetSummary t = summarize(open, o, 30);
    CHECK(t.rows == 100);
    CHECK(t.bad_rows == 1);
    CHECK(t.bytes == std::filesystem::file_size(open) - 2);
  }
}

TEST_CASE("DatasetProcessor: a malformed header is an error", "[tools][dataset]") {
  TempDir dir("dataset");
  REQUIRE_THROWS_WITH(summarize(write(dir / "h.csv", "a,\"b\"c\n1,2\n")),
                      contains("h.csv:1:6: malformed header: a character after a closing quote"));
  REQUIRE_THROWS_WITH(summarize(write(dir / "q.csv", "a,b\"c\n1,2\n")),
                      contains("q.csv:1:4: malformed header: a quote inside an unquoted field"));
}
