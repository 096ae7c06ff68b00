// Seed exercise 12, optimize large dataset processing:
//   processor = DatasetProcessor(chunk_size=1000)
//   results = processor.process_file('large_file.csv')
//   final = processor.aggregate_results(results)
//   print(f"Peak memory: {processor.memory_usage()}")
// Requirements: process in chunks or streams, memory-mapped files where appropriate, efficient
// data structures, speed near the naive approach (benchmarks/dataset.cpp), little memory for a
// large file. Here on small generated files, every aggregate checked against the generator's
// values, and the traced memory against the budget.
#include <memlens/memlens.hpp>
#include <memlens/testing.hpp>

#include "memlens_test.hpp"
#include "unit/dataset_test.hpp"

TEST_CASE("e12: the seed's example: process_file then aggregate_results then memory_usage",
          "[exercise][e12]") {
  dataset_test::TempDir dir("e12");
  csvgen::Generator generator;
  const std::uint64_t rows = generator.write_file(dir / "large_file.csv", 2 << 20);
  const auto expected = dataset_test::expected_columns(rows);

  memlens::DatasetProcessor processor(1000);
  auto results = processor.process_file(dir / "large_file.csv");
  const memlens::DatasetSummary final_ = processor.aggregate_results(results);
  const auto usage = processor.memory_usage();

  CHECK(final_.rows == rows);
  CHECK(final_.bad_rows == 0);
  CHECK(final_.bytes ==
        std::filesystem::file_size(dir / "large_file.csv") - std::strlen(csvgen::header));
  REQUIRE(final_.columns.size() == expected.size());
  for (std::size_t c = 0; c < expected.size(); ++c) {
    INFO("column " << expected[c].name);
    CHECK(final_.columns[c].name == expected[c].name);
    CHECK(final_.columns[c].count == expected[c].count);
    CHECK(dataset_test::close(final_.columns[c].sum, expected[c].sum));
    CHECK(final_.columns[c].min == expected[c].min);
    CHECK(final_.columns[c].max == expected[c].max);
    CHECK(final_.columns[c].non_numeric == expected[c].non_numeric);
    CHECK(final_.columns[c].empty == expected[c].empty);
    if (expected[c].count > 0) {
      CHECK(dataset_test::close(final_.columns[c].mean(),
                                expected[c].sum / static_cast<double>(expected[c].count)));
    }
  }
  CHECK(usage.peak_rss >= usage.current_rss);
  CHECK(usage.current_rss > 0);
}

TEST_CASE("e12: results arrive one chunk of 1000 rows at a time", "[exercise][e12]") {
  dataset_test::TempDir dir("e12");
  csvgen::Generator generator;
  const std::uint64_t rows = generator.write_file(dir / "data.csv", 1 << 20);
  memlens::DatasetProcessor processor(1000);
  std::uint64_t seen = 0, chunks = 0;
  memlens::ColumnStats amount;
  for (const memlens::ChunkResult& chunk : processor.process_file(dir / "data.csv")) {
    CHECK(chunk.first_row == seen);
    CHECK((chunk.rows == 1000 || seen + chunk.rows == rows));
    // Each chunk's statistics are its own rows' statistics.
    const auto own = dataset_test::expected_columns(seen + chunk.rows);
    const auto before = dataset_test::expected_columns(seen);
    CHECK(chunk.columns[3].count == own[3].count - before[3].count);
    CHECK(dataset_test::close(chunk.columns[3].sum, own[3].sum - before[3].sum));
    amount.merge(chunk.columns[3]);
    seen += chunk.rows;
    ++chunks;
    if (chunks == 5) break;  // a consumer may stop whenever it likes
  }
  CHECK(chunks == 5);
  CHECK(seen == 5000);
  CHECK(amount.count == 5000);
}

TEST_CASE("e12: a file twenty times the budget is processed within it on two threads",
          "[exercise][e12][threads]") {
  dataset_test::TempDir dir("e12");
  const std::size_t budget = 1 << 20;
  csvgen::Generator generator;
  const std::uint64_t rows = generator.write_file(dir / "data.csv", 20 * budget + 1);
  memlens::ProcessorOptions options;
  options.threads = 2;
  options.memory_budget = budget;
  memlens::DatasetProcessor processor(1000, options);
  memlens::DatasetSummary summary;
  REQUIRE_THAT(
      ([&] { summary = processor.aggregate_results(processor.process_file(dir / "data.csv")); }),
      memlens::testing::PeakMemoryBelow(budget));
  CHECK(summary.rows == rows);
  CHECK(summary.columns[0].max == static_cast<double>(rows));
}
