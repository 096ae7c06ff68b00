// Seed exercise 12: statistics of a large CSV file in a small, fixed amount of memory. The
// program writes a deterministic 100 MB file (1 GB with --1gb) unless given one, processes it in
// chunks of 1000 rows with a progress bar on a terminal, and prints each column's statistics, the
// speed, the memory the processor's buffers took (traced) and the process's peak resident memory.
//
//   example_e12_dataset_processor [--1gb] [--threads N] [--mmap] [--file PATH]
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memlens/memlens.hpp>
#include <memlens/track_new.hpp>  // tracemalloc sees the processor's buffers
#include <string>
#include <string_view>

#include "csv_generator.hpp"

namespace {

int usage() {
  fmt::print(stderr,
             "usage: example_e12_dataset_processor [--1gb] [--threads N] [--mmap] "
             "[--file PATH]\n");
  return 2;
}

int run(int argc, char** argv) {
  std::uint64_t size = 100'000'000;
  memlens::ProcessorOptions options;
  std::filesystem::path path = std::filesystem::temp_directory_path() / "memlens_e12.csv";
  bool own_file = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--1gb") {
      size = 1'000'000'000;
    } else if (arg == "--mmap") {
      options.use_mmap = true;
    } else if (arg == "--threads" && i + 1 < argc) {
      options.threads = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (arg == "--file" && i + 1 < argc) {
      path = argv[++i];  // the user's own file: read, never written nor removed
      own_file = true;
    } else {
      return usage();
    }
  }

  if (!own_file) {
    fmt::print("writing {} ({} MB of generated rows)...\n", path.string(), size / 1'000'000);
    const auto start = std::chrono::steady_clock::now();
    const std::uint64_t rows = csvgen::Generator().write_file(path, size);
    fmt::print("  {} rows in {:.1f} s\n", rows,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  fmt::print(
      "\nprocessor = DatasetProcessor(chunk_size=1000)   # {} thread(s), {}, budget {} MiB\n",
      options.threads, options.use_mmap ? "mmap windows" : "read() buffers",
      options.memory_budget >> 20);
  options.progress = memlens::ProgressBar();  // draws only when stderr is a terminal
  memlens::DatasetProcessor processor(1000, options);

  memlens::tracemalloc::start();
  const auto start = std::chrono::steady_clock::now();
  auto results = processor.process_file(path);
  const memlens::DatasetSummary summary = processor.aggregate_results(results);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto traced = memlens::tracemalloc::get_traced_memory();
  memlens::tracemalloc::stop();

  fmt::print("final = processor.aggregate_results(results)\n\n");
  fmt::print("  {:<10} {:>9} {:>14} {:>12} {:>12} {:>11} {:>7}\n", "column", "numbers", "mean",
             "min", "max", "non-numeric", "empty");
  for (const auto& c : summary.columns) {
    if (c.count == 0) {
      fmt::print("  {:<10} {:>9} {:>14} {:>12} {:>12} {:>11} {:>7}\n", c.name, 0, "-", "-", "-",
                 c.non_numeric, c.empty);
    } else {
      fmt::print("  {:<10} {:>9} {:>14.6g} {:>12.6g} {:>12.6g} {:>11} {:>7}\n", c.name, c.count,
                 c.mean(), c.min, c.max, c.non_numeric, c.empty);
    }
  }
  fmt::print("\n  {} rows, {:.1f} MB in {:.2f} s: {:.0f} MB/s\n", summary.rows,
             static_cast<double>(summary.bytes) / 1e6, seconds,
             static_cast<double>(summary.bytes) / 1e6 / seconds);

  const auto memory = processor.memory_usage();
  fmt::print("\nprint(f\"Peak memory: {{processor.memory_usage()}}\")\n");
  fmt::print(
      "  Peak memory: {:.1f} MiB resident at most (VmHWM), {:.1f} MiB now, of which {:.1f} "
      "MiB anonymous\n",
      static_cast<double>(memory.peak_rss) / 1048576.0,
      static_cast<double>(memory.current_rss) / 1048576.0,
      static_cast<double>(memory.anon_rss) / 1048576.0);
  fmt::print(
      "  heap allocated while processing (tracemalloc): peak {:.1f} KiB, within the {} MiB "
      "budget: {}\n",
      static_cast<double>(traced.peak) / 1024.0, options.memory_budget >> 20,
      traced.peak < options.memory_budget ? "yes" : "NO");
  if (!own_file) std::filesystem::remove(path);
  return traced.peak < options.memory_budget ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // a missing file or a malformed row, named
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
