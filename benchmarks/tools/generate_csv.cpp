// generate_csv: writes the deterministic CSV that bench_dataset reads (csvgen::Generator), for
// runs that want the file made ahead of time or elsewhere than the benchmark would put it.
//
//   generate_csv [path] [--size BYTES | --mib N | --gib N] [--seed N]
//
// Defaults: dataset.csv, 1 GiB, seed 42 (the benchmark's seed). The file has at least the size
// asked for, in whole rows. Bad arguments print the usage and exit with status 2.

#include <fmt/core.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "../../examples/csv_generator.hpp"

namespace {

constexpr std::string_view kUsage =
    "usage: generate_csv [path] [--size BYTES | --mib N | --gib N] [--seed N]\n"
    "  path      the file to write (default dataset.csv)\n"
    "  --size    its size in bytes (default 1 GiB); --mib and --gib in MiB or GiB\n"
    "  --seed    the generator's seed (default 42, as bench_dataset)\n";

struct Arguments {
  std::filesystem::path path = "dataset.csv";
  std::uint64_t bytes = std::uint64_t{1} << 30;
  std::uint64_t seed = 42;
};

std::optional<std::uint64_t> parse_count(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

/// The arguments, or nullopt with the reason printed.
std::optional<Arguments> parse_arguments(int argc, char** argv) {
  Arguments args;
  bool have_path = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view option = arg, value;
    bool inline_value = false;
    if (arg.starts_with("--")) {
      if (const auto eq = arg.find('='); eq != std::string_view::npos) {
        option = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        inline_value = true;
      }
    } else if (!have_path && !arg.empty()) {
      args.path = std::filesystem::path(std::string(arg));
      have_path = true;
      continue;
    } else {
      fmt::print(stderr, "generate_csv: unexpected argument '{}'\n", arg);
      return std::nullopt;
    }
    if (option != "--size" && option != "--mib" && option != "--gib" && option != "--seed") {
      fmt::print(stderr, "generate_csv: unknown option '{}'\n", arg);
      return std::nullopt;
    }
    if (!inline_value) {
      if (i + 1 == argc) {
        fmt::print(stderr, "generate_csv: {} wants a value\n", option);
        return std::nullopt;
      }
      value = argv[++i];
    }
    const auto number = parse_count(value);
    // A scale that overflows would silently write a tiny file.
    const std::uint64_t shift = option == "--mib" ? 20 : option == "--gib" ? 30 : 0;
    if (!number || (option != "--seed" && *number == 0) ||
        (shift > 0 && *number > (UINT64_MAX >> shift))) {
      fmt::print(stderr, "generate_csv: {} wants a{} integer, not '{}'\n", option,
                 option == "--seed" ? " non-negative" : " positive", value);
      return std::nullopt;
    }
    if (option == "--seed")
      args.seed = *number;
    else
      args.bytes = *number << shift;
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      fmt::print("{}", kUsage);
      return 0;
    }
  }
  const auto args = parse_arguments(argc, argv);
  if (!args) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  try {
    const auto start = std::chrono::steady_clock::now();
    const std::uint64_t rows = csvgen::Generator(args->seed).write_file(args->path, args->bytes);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::uint64_t bytes = std::filesystem::file_size(args->path);
    fmt::print("{}: {} rows, {} bytes in {:.2f} s (seed {})\n", args->path.string(), rows, bytes,
               seconds, args->seed);
  } catch (const std::exception& e) {
    fmt::print(stderr, "generate_csv: {}\n", e.what());
    return 1;
  }
  return 0;
}
