// DatasetProcessor against the usual ways of summing the numeric columns of a big CSV file: the
// wall time, CPU time, throughput and peak anonymous memory of each, on the same file in the
// same run, and their ratios against the goals at the end.
//
// Contenders, each computing the row count and the sum and count of every numeric column (id,
// amount, quantity, score, ratio) of csvgen's file (examples/csv_generator.hpp):
//   naive         the whole file read into a std::string, cut into lines, each line into fields
//                 by an RFC 4180 splitter, std::stod on the numeric ones
//   getline_stod  std::getline on a std::ifstream, then the same splitter and std::stod
//   fccp          fast-cpp-csv-parser's CSVReader, set up at its fastest (no trimming, its own
//                 number parser); compiled in when CMake finds libfccp/csv.h (libfccp-dev)
//   memlens_1T    DatasetProcessor::aggregate_file with threads = 1, other options default
//   memlens_2T    the same with threads = 2
// Each repetition of each contender is a child process forked for it, so that its peak memory is
// its own. The parent checks that every contender finds the same rows and amount sum.
//
// The file: MEMLENS_DATASET_FILE (default dataset_1gib.csv in the working directory, or
// dataset_<N>mib.csv for another size, so a quick run never overwrites the big file) of
// MEMLENS_DATASET_MIB MiB (default 1024). It is generated when missing or not of that size
// (build/benchmarks/generate_csv makes the same file) and read once before timing, so every
// contender reads from the page cache.
//
//   MEMLENS_DATASET_MIB=64 build/benchmarks/bench_dataset
//   MEMLENS_DATASET_FILE=/tmp/bench-data/dataset_1gib.csv build/benchmarks/bench_dataset
//
// The repetitions of the contenders are interleaved at random (unless
// --benchmark_enable_random_interleaving is given), so that all meet the same load from other
// processes. Google Benchmark's Time column is the child's wall time; its CPU column is this
// process's, which only waits: the child's own CPU time is the cpu_s counter.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "../examples/csv_generator.hpp"
#include "memlens/tools/dataset_processor.hpp"

#if MEMLENS_HAVE_FCCP
// A system include, but this warning comes from its code inlined into ours (a file name copied
// with strncpy), which the system-header exemption does not cover.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-truncation"
#include <libfccp/csv.h>
#pragma GCC diagnostic pop
#endif

namespace {

constexpr int kRepetitions = 3;
constexpr std::uint64_t kSeed = 42;
constexpr double kMiB = 1024.0 * 1024.0;

// The goals the summary checks; they are stated for the 1 GiB file.
constexpr double kGoalOneThreadGBps = 1.5;
constexpr double kGoalTwoThreadsGBps = 2.5;
constexpr double kGoalAnonMiB = 16;
constexpr double kGoalOverFccp = 2;

struct Settings {
  std::filesystem::path path;
  std::uint64_t mib = 1024;
  std::uint64_t bytes = 0;  // the file's actual size
};
Settings settings;

// ---------------------------------------------------------------------------------------------
// What every contender computes.

constexpr std::size_t kNumeric = 5;
constexpr std::array<const char*, kNumeric> kNumericNames = {"id", "amount", "quantity", "score",
                                                             "ratio"};
// Where the numeric columns are in csvgen's rows.
constexpr std::array<std::size_t, kNumeric> kNumericFields = {0, 3, 4, 5, 6};
constexpr std::size_t kFields = 7;
constexpr std::size_t kAmount = 1;

/// Trivially copyable: a child sends it through a pipe as bytes.
struct Totals {
  std::uint64_t rows = 0;
  std::array<double, kNumeric> sum{};
  std::array<std::uint64_t, kNumeric> count{};

  void add(std::size_t column, double value) {
    sum[column] += value;
    ++count[column];
  }
};

/// The fields of one line, unquoted as RFC 4180 says ("" inside quotes is one quote). A line
/// end inside quotes is not looked for: these baselines cut lines first, as such code does.
std::vector<std::string> split_fields(std::string_view line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c != '"') {
        fields.back() += c;
      } else if (i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

void add_line_with_stod(Totals& totals, std::string_view line) {
  const std::vector<std::string> fields = split_fields(line);
  if (fields.size() != kFields) {
    throw std::runtime_error(
        fmt::format("{} fields, not {}, in: {}", fields.size(), kFields, line));
  }
  ++totals.rows;
  for (std::size_t c = 0; c < kNumeric; ++c) {
    try {
      totals.add(c, std::stod(fields[kNumericFields[c]]));
    } catch (const std::invalid_argument&) {
      // an empty quantity: not a number, as in the other contenders
    } catch (const std::out_of_range&) {
    }
  }
}

Totals run_naive(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::string text(std::filesystem::file_size(path), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (static_cast<std::size_t>(in.gcount()) != text.size()) {
    throw std::runtime_error("short read of " + path.string());
  }
  std::vector<std::string_view> lines;
  const std::string_view all = text;
  for (std::size_t start = 0; start < all.size();) {
    std::size_t end = all.find('\n', start);
    if (end == std::string_view::npos) end = all.size();
    lines.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  Totals totals;
  for (std::size_t i = 1; i < lines.size(); ++i) {  // line 0 is the header
    if (!lines[i].empty()) add_line_with_stod(totals, lines[i]);
  }
  return totals;
}

Totals run_getline_stod(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::string line;
  std::getline(in, line);  // the header
  Totals totals;
  while (std::getline(in, line)) {
    if (!line.empty()) add_line_with_stod(totals, line);
  }
  return totals;
}

#if MEMLENS_HAVE_FCCP
Totals run_fccp(const std::filesystem::path& path) {
  // No trimming and doubles parsed by fccp itself: the least work it can be asked to do for
  // these columns. Quantity can be empty, which fccp's number parser rejects: it is read as text.
  io::CSVReader<kFields, io::trim_chars<>, io::double_quote_escape<',', '"'>> reader(path.string());
  reader.read_header(io::ignore_no_column, "id", "timestamp", "category", "amount", "quantity",
                     "score", "ratio");
  Totals totals;
  double id = 0, amount = 0, score = 0, ratio = 0;
  char* timestamp = nullptr;
  char* category = nullptr;
  char* quantity = nullptr;
  while (reader.read_row(id, timestamp, category, amount, quantity, score, ratio)) {
    ++totals.rows;
    totals.add(0, id);
    totals.add(1, amount);
    if (*quantity != '\0') {
      long long q = 0;
      const char* end = quantity + std::strlen(quantity);
      if (std::from_chars(quantity, end, q).ptr == end) totals.add(2, static_cast<double>(q));
    }
    totals.add(3, score);
    totals.add(4, ratio);
  }
  return totals;
}
#endif

Totals run_memlens(const std::filesystem::path& path, unsigned threads) {
  const memlens::DatasetProcessor processor(10000, {.threads = threads});
  const memlens::DatasetSummary summary = processor.aggregate_file(path);
  Totals totals;
  totals.rows = summary.rows;
  for (std::size_t c = 0; c < kNumeric; ++c) {
    const memlens::ColumnStats& column = summary.column(kNumericNames[c]);
    totals.sum[c] = column.sum;
    totals.count[c] = column.count;
  }
  return totals;
}

struct Contender {
  const char* name;   // the benchmark's name
  const char* label;  // its name in the summary
  std::function<Totals(const std::filesystem::path&)> run;
};

const std::vector<Contender>& contenders() {
  static const std::vector<Contender> all = {
    {"dataset/naive", "naive (string + stod)", run_naive},
    {"dataset/getline_stod", "getline + stod", run_getline_stod},
#if MEMLENS_HAVE_FCCP
    {"dataset/fccp", "fast-cpp-csv-parser", run_fccp},
#endif
    {"dataset/memlens_1T", "memlens 1 thread", [](const auto& p) { return run_memlens(p, 1); }},
    {"dataset/memlens_2T", "memlens 2 threads", [](const auto& p) { return run_memlens(p, 2); }},
  };
  return all;
}

// ---------------------------------------------------------------------------------------------
// One repetition: a child process.

/// What the child sends back; trivially copyable, written to the pipe as bytes.
struct ChildReport {
  bool ok = false;
  char error[480] = {};
  Totals totals;
  double wall_s = 0;
  double cpu_s = 0;
  double peak_anon = 0;   // bytes
  double anon_start = 0;  // bytes, RssAnon when the contender starts
};

double seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

/// Runs the contender in this (child) process and measures it.
///
/// Peak anonymous RSS: Linux keeps a high-water mark of the whole RSS (VmHWM) only, not of its
/// anonymous part. The figure here is VmHWM minus the file-backed and shared pages resident at
/// the end (VmRSS - RssAnon, read in the same pass of /proc/self/status), with VmHWM reset to
/// the current RSS first (clear_refs 5). That is exact when the file-backed pages do not shrink
/// during the run, as here: every contender read()s the file (DatasetProcessor's use_mmap is off
/// by default; the summary says so if that changes, since mapped windows, resident at the peak
/// and unmapped by the end, would then count as anonymous). A thread sampling RssAnon every
/// millisecond, the other way, would take CPU from the two-thread contenders on a small
/// machine and miss short peaks. The figure includes the anonymous pages the child shares with
/// the parent after fork (anon_start_MiB), as a process of its own would have its runtime's.
ChildReport measure_in_child(const Contender& contender) {
  ChildReport report;
  if (const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC); fd >= 0) {
    // Without it fork's own reset of the high-water mark to the current RSS still holds.
    [[maybe_unused]] const ::ssize_t written = ::write(fd, "5", 1);
    ::close(fd);
  }
  try {
    report.anon_start = static_cast<double>(memlens::process_memory().anon_rss);
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    const auto start = std::chrono::steady_clock::now();
    report.totals = contender.run(settings.path);
    report.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // RUSAGE_SELF counts every thread of the process, the ones that have ended too.
    ::getrusage(RUSAGE_SELF, &after);
    report.cpu_s = seconds(after.ru_utime) - seconds(before.ru_utime) + seconds(after.ru_stime) -
                   seconds(before.ru_stime);
    const memlens::ProcessMemory end = memlens::process_memory();
    const std::uint64_t file_backed = end.current_rss - std::min(end.current_rss, end.anon_rss);
    report.peak_anon = static_cast<double>(
        std::max(end.anon_rss, end.peak_rss - std::min(end.peak_rss, file_backed)));
    report.ok = true;
  } catch (const std::exception& e) {
    std::snprintf(report.error, sizeof report.error, "%s", e.what());
  }
  return report;
}

/// Forks a child that runs the contender once; its report, or nullopt with `problem` set.
std::optional<ChildReport> run_in_child(const Contender& contender, std::string& problem) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    problem = fmt::format("pipe: {}", std::strerror(errno));
    return std::nullopt;
  }
  std::fflush(nullptr);  // nothing buffered here is written twice
  const pid_t pid = ::fork();
  if (pid < 0) {
    problem = fmt::format("fork: {}", std::strerror(errno));
    ::close(fds[0]);
    ::close(fds[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    ::close(fds[0]);
    const ChildReport report = measure_in_child(contender);
    const char* p = reinterpret_cast<const char*>(&report);
    std::size_t left = sizeof report;
    while (left > 0) {
      const ::ssize_t n = ::write(fds[1], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(3);
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    // The parent's atexit handlers and static destructors are not the child's to run.
    ::_exit(0);
  }
  ::close(fds[1]);
  ChildReport report;
  char* p = reinterpret_cast<char*>(&report);
  std::size_t got = 0;
  while (got < sizeof report) {
    const ::ssize_t n = ::read(fds[0], p + got, sizeof report - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got != sizeof report || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    problem = WIFSIGNALED(status)
                  ? fmt::format("the child died of signal {}", WTERMSIG(status))
                  : fmt::format("the child exited with status {} after {} bytes of its report",
                                WIFEXITED(status) ? WEXITSTATUS(status) : -1, got);
    return std::nullopt;
  }
  if (!report.ok) {
    problem = fmt::format("{} failed: {}", contender.name, report.error);
    return std::nullopt;
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// The benchmarks.

/// The first result of the run, which every other must match.
struct Reference {
  std::string name;
  Totals totals;
};
std::optional<Reference> reference;

std::optional<std::string> disagreement(const Contender& contender, const Totals& totals) {
  if (!reference) {
    reference = Reference{contender.name, totals};
    return std::nullopt;
  }
  const Totals& ref = reference->totals;
  const double a = totals.sum[kAmount], b = ref.sum[kAmount];
  if (totals.rows == ref.rows && std::abs(a - b) <= 1e-6 * std::max(std::abs(b), 1.0)) {
    return std::nullopt;
  }
  return fmt::format("{} found {} rows, amount sum {:.17g}; {} found {} rows, amount sum {:.17g}",
                     contender.name, totals.rows, a, reference->name, ref.rows, b);
}

/// Keeps the message alive for the State, which keeps only the pointer.
void fail(benchmark::State& state, std::string message) {
  static std::string kept;
  kept = std::move(message);
  state.SkipWithError(kept.c_str());
}

void measure(benchmark::State& state, const Contender& contender) {
  for (auto _ : state) {
    std::string problem;
    const auto report = run_in_child(contender, problem);
    if (!report) {
      fail(state, problem);
      break;
    }
    if (auto mismatch = disagreement(contender, report->totals)) {
      fail(state, *mismatch);
      break;
    }
    state.SetIterationTime(report->wall_s);
    state.counters["GB/s"] = static_cast<double>(settings.bytes) / report->wall_s / 1e9;
    state.counters["cpu_s"] = report->cpu_s;
    state.counters["peak_anon_MiB"] = report->peak_anon / kMiB;
    state.counters["anon_start_MiB"] = report->anon_start / kMiB;
    state.counters["rows"] = static_cast<double>(report->totals.rows);
  }
}

void register_benchmarks() {
  for (const Contender& contender : contenders()) {
    benchmark::RegisterBenchmark(contender.name,
                                 [&contender](benchmark::State& s) { measure(s, contender); })
        ->UseManualTime()
        ->Iterations(1)
        ->Repetitions(kRepetitions)
        ->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMillisecond);
  }
}

// ---------------------------------------------------------------------------------------------
// The summary.

/// A contender's medians, or why it failed.
struct Figures {
  double wall_s = 0;
  std::map<std::string, double> counters;
  std::string failure;

  double counter(const std::string& name) const {
    const auto it = counters.find(name);
    return it == counters.end() ? 0 : it->second;
  }
};

class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // Colors only on a terminal, so logs stay free of escape codes.
  SummaryReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      Figures& figures = figures_[run.run_name.function_name];
      if (run.error_occurred) figures.failure = run.error_message;
      if (run.error_occurred || run.aggregate_name != "median") continue;
      figures.wall_s = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
      for (const auto& [name, counter] : run.counters) figures.counters[name] = counter.value;
    }
  }

  /// The contender's medians; nullopt if it did not run or failed.
  std::optional<Figures> figures(const std::string& name) const {
    const auto it = figures_.find(name);
    if (it == figures_.end() || !it->second.failure.empty() || it->second.wall_s <= 0) {
      return std::nullopt;
    }
    return it->second;
  }
  std::string failure(const std::string& name) const {
    const auto it = figures_.find(name);
    return it == figures_.end() ? std::string() : it->second.failure;
  }

 private:
  std::map<std::string, Figures> figures_;
};

std::string verdict(bool met) { return met ? "met" : "NOT met"; }

void print_summary(const SummaryReporter& results) {
  fmt::print(
      "\nSummary of this run: {} ({} bytes, {} MiB asked), medians of {} repetitions, each in a "
      "child process of its own; GB/s = 10^9 bytes of the file per second of wall time\n",
      settings.path.string(), settings.bytes, settings.mib, kRepetitions);
  double load = 0;
  if (getloadavg(&load, 1) == 1 && load > 1.5) {
    fmt::print(
        "Other processes were running (load average {:.1f} on {} CPUs; this program adds 1 or "
        "2): figures are noisy, compare several runs\n",
        load, std::thread::hardware_concurrency());
  }
  if (memlens::ProcessorOptions{}.use_mmap) {
    fmt::print(
        "DatasetProcessor maps the file by default: its peak anon figures include the mapped "
        "pages resident at the peak (an upper bound)\n");
  }

  fmt::print("\n  {:<24} {:>9} {:>9} {:>8} {:>15} {:>16}\n", "contender", "wall s", "CPU s", "GB/s",
             "peak anon MiB", "anon at start");
  for (const Contender& c : contenders()) {
    if (const auto f = results.figures(c.name)) {
      fmt::print("  {:<24} {:>9.3f} {:>9.3f} {:>8.3f} {:>15.1f} {:>16.1f}\n", c.label, f->wall_s,
                 f->counter("cpu_s"), f->counter("GB/s"), f->counter("peak_anon_MiB"),
                 f->counter("anon_start_MiB"));
    } else if (const std::string failure = results.failure(c.name); failure.empty()) {
      fmt::print("  {:<24} not run\n", c.label);
    } else {
      fmt::print("  {:<24} FAILED: {}\n", c.label, failure);
    }
  }
#if !MEMLENS_HAVE_FCCP
  fmt::print("  fast-cpp-csv-parser: not built (libfccp/csv.h not found at configure time)\n");
#endif

  const auto gbps = [&](const char* name) -> std::optional<double> {
    if (const auto f = results.figures(name)) return f->counter("GB/s");
    return std::nullopt;
  };
  const auto anon = [&](const char* name) -> std::optional<double> {
    if (const auto f = results.figures(name)) return f->counter("peak_anon_MiB");
    return std::nullopt;
  };
  const auto one = gbps("dataset/memlens_1T"), two = gbps("dataset/memlens_2T");
  const auto fccp = gbps("dataset/fccp"), naive = gbps("dataset/naive");
  const auto ratio = [](std::optional<double> a, std::optional<double> b) -> std::optional<double> {
    if (!a || !b || *b <= 0) return std::nullopt;
    return *a / *b;
  };
  const auto show = [](std::optional<double> v, const char* format) {
    return v ? fmt::format(fmt::runtime(format), *v) : std::string("n/a");
  };

  fmt::print("\n  Ratios of throughput (GB/s over GB/s, this run)\n");
  fmt::print("  {:<34} {:>8}\n", "memlens 1T / fccp", show(ratio(one, fccp), "{:.2f}x"));
  fmt::print("  {:<34} {:>8}\n", "memlens 2T / fccp", show(ratio(two, fccp), "{:.2f}x"));
  fmt::print("  {:<34} {:>8}\n", "memlens 1T / naive", show(ratio(one, naive), "{:.2f}x"));
  fmt::print("  {:<34} {:>8}\n", "memlens 2T / memlens 1T", show(ratio(two, one), "{:.2f}x"));

  fmt::print("\n  Goals{}\n",
             settings.mib == 1024
                 ? ""
                 : fmt::format(" (stated for a 1 GiB file; this one is {} MiB)", settings.mib));
  const auto goal = [&](std::string_view what, std::optional<double> value, const char* format,
                        bool met) {
    fmt::print("  {:<34} {:>10}  {}\n", what, show(value, format),
               value ? verdict(met) : std::string("n/a"));
  };
  goal(fmt::format("memlens 1T >= {} GB/s", kGoalOneThreadGBps), one, "{:.3f} GB/s",
       one && *one >= kGoalOneThreadGBps);
  goal(fmt::format("memlens 2T >= {} GB/s", kGoalTwoThreadsGBps), two, "{:.3f} GB/s",
       two && *two >= kGoalTwoThreadsGBps);
  const auto anon_one = anon("dataset/memlens_1T"), anon_two = anon("dataset/memlens_2T");
  goal(fmt::format("memlens 1T peak anon <= {} MiB", kGoalAnonMiB), anon_one, "{:.1f} MiB",
       anon_one && *anon_one <= kGoalAnonMiB);
  goal(fmt::format("memlens 2T peak anon <= {} MiB", kGoalAnonMiB), anon_two, "{:.1f} MiB",
       anon_two && *anon_two <= kGoalAnonMiB);
  const auto over_one = ratio(one, fccp), over_two = ratio(two, fccp);
  goal(fmt::format("memlens 1T >= {}x fccp", kGoalOverFccp), over_one, "{:.2f}x",
       over_one && *over_one >= kGoalOverFccp);
  goal(fmt::format("memlens 2T >= {}x fccp", kGoalOverFccp), over_two, "{:.2f}x",
       over_two && *over_two >= kGoalOverFccp);
}

// ---------------------------------------------------------------------------------------------
// The file.

std::optional<std::uint64_t> environment_count(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  std::uint64_t value = 0;
  const char* end = text + std::strlen(text);
  const auto [ptr, error] = std::from_chars(text, end, value);
  if (error != std::errc() || ptr != end || value == 0 || value > (std::uint64_t{1} << 24)) {
    throw std::runtime_error(
        fmt::format("{} wants a positive number of MiB, not '{}'", name, text));
  }
  return value;
}

/// Whether the file looks like csvgen's of that size: its header, and whole rows that just pass
/// the size asked (write_file stops at the first row that reaches it; a row is under 200 bytes).
bool usable(const std::filesystem::path& path, std::uint64_t bytes) {
  std::error_code error;
  const std::uint64_t size = std::filesystem::file_size(path, error);
  if (error || size < bytes || size >= bytes + 200) return false;
  std::ifstream in(path, std::ios::binary);
  std::string first;
  std::getline(in, first);
  return first + '\n' == csvgen::header;
}

/// Reads every page of the file through a mapping, so that the contenders find it in the page
/// cache and this process keeps no anonymous memory for their children to inherit.
void warm_page_cache(const std::filesystem::path& path, std::uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open {}", path.string()));
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw std::runtime_error(fmt::format("cannot map {}", path.string()));
  ::madvise(map, size, MADV_SEQUENTIAL);
  const auto* bytes = static_cast<const volatile unsigned char*>(map);
  unsigned sum = 0;
  for (std::uint64_t i = 0; i < size; i += 4096) sum += bytes[i];
  benchmark::DoNotOptimize(sum);
  ::munmap(map, size);
}

void prepare_dataset() {
  if (const auto mib = environment_count("MEMLENS_DATASET_MIB")) settings.mib = *mib;
  const std::uint64_t bytes = settings.mib << 20;
  const char* file = std::getenv("MEMLENS_DATASET_FILE");
  settings.path = file != nullptr && *file != '\0' ? std::filesystem::path(file)
                  : settings.mib == 1024
                      ? std::filesystem::path("dataset_1gib.csv")
                      : std::filesystem::path(fmt::format("dataset_{}mib.csv", settings.mib));
  if (!usable(settings.path, bytes)) {
    fmt::print("Writing {} ({} MiB, seed {})...\n", settings.path.string(), settings.mib, kSeed);
    std::fflush(stdout);
    if (settings.path.has_parent_path()) {
      std::filesystem::create_directories(settings.path.parent_path());
    }
    const auto start = std::chrono::steady_clock::now();
    const std::uint64_t rows = csvgen::Generator(kSeed).write_file(settings.path, bytes);
    // Written back now rather than by the kernel while the contenders run.
    if (const int fd = ::open(settings.path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    fmt::print("  {} rows in {:.1f} s\n", rows,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  settings.bytes = std::filesystem::file_size(settings.path);
  const auto start = std::chrono::steady_clock::now();
  warm_page_cache(settings.path, settings.bytes);
  fmt::print("{}: {} bytes, read once into the page cache in {:.2f} s\n", settings.path.string(),
             settings.bytes,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  bool listing = false, interleaving_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    listing = listing || arg.starts_with("--benchmark_list_tests");
    interleaving_given =
        interleaving_given || arg.starts_with("--benchmark_enable_random_interleaving");
  }
  static char interleave[] = "--benchmark_enable_random_interleaving=true";
  if (!interleaving_given) args.insert(args.begin() + 1, interleave);
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  if (!listing) {
    try {
      prepare_dataset();
    } catch (const std::exception& e) {
      fmt::print(stderr, "bench_dataset: {}\n", e.what());
      return 1;
    }
  }
  register_benchmarks();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (!listing) print_summary(reporter);
  return 0;
}
