// Benchmarks of the memory profiler's HTML report on a large capture: 1,000,000 live traces from
// 100,000 distinct call stacks, 16 frames deep, seen in three snapshots (300,000, 600,000, then
// all 1,000,000 traces). Timed: build_flame (each snapshot's statistics("traceback"), keeping the
// largest stacks) and write_html (render and write the page atomically); reported: the page's
// size. The goal is a page under 5 MB written in under 2 s.
//
// The capture is made the way Snapshot::load makes a snapshot from a file: traces that refer to
// symbolized tracebacks by index. Loading a file of this size, or making a million allocations
// from 100,000 distinct call paths (which would need 100,000 distinct functions compiled into
// this program), would give the same snapshot data and add only untimed setup. The stacks are
// shaped like a program's: 4,096 allocation sites (the innermost frames, called through a tree
// of helpers), each reached through 25 paths through the application's layers, with C++ names
// long and full of templates (so that escaping costs what it costs on real names). Sizes and
// traces per stack are skewed: a few stacks hold most of the memory, as usual.
//
// `--page PATH` keeps the last page written (that of the three snapshots) at PATH.

#include <benchmark/benchmark.h>
#include <fmt/core.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memlens/detail/profile_report.hpp>
#include <memlens/tracemalloc.hpp>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace report = memlens::detail::report;
namespace tracemalloc = memlens::tracemalloc;

constexpr std::size_t kTraces = 1'000'000;
constexpr std::size_t kStacks = 100'000;
constexpr std::size_t kDepth = 16;
constexpr std::size_t kSites = 4096;  // kStacks / kSites paths reach each site
constexpr double kGoalBytes = 5e6;
constexpr double kGoalSeconds = 2;

tracemalloc::Frame make_frame(std::size_t depth, std::size_t id) {
  const std::size_t module = id % 13;
  return tracemalloc::Frame{
      fmt::format("/home/dev/project/src/module_{}/layer_{}.cpp", module, depth),
      static_cast<int>(20 + id % 400),
      fmt::format("app::module_{}::Component<std::vector<app::Record<{}>>, std::allocator<char>>"
                  "::handle_{}(app::Request const&, std::string_view)",
                  module, depth, id)};
}

/// Stack `s`, most recent frame first: main, 7 frames of the application's layers chosen by
/// the path (s / kSites), 7 frames of the helper tree above the site, then the site.
std::vector<tracemalloc::Frame> stack_of(std::size_t s) {
  const std::size_t site = s % kSites;
  const std::size_t path = s / kSites;
  std::vector<tracemalloc::Frame> frames;
  frames.reserve(kDepth);
  frames.push_back(make_frame(15, site));  // the allocation site
  for (std::size_t d = 14; d >= 8; --d) {
    frames.push_back(make_frame(d, site >> (15 - d)));  // helpers shared by 2^k sites
  }
  for (std::size_t d = 7; d >= 1; --d) frames.push_back(make_frame(d, path * 7 + d));
  frames.push_back(tracemalloc::Frame{"/home/dev/project/src/main.cpp", 12, "main"});
  return frames;
}

struct Capture {
  std::vector<std::pair<std::string, tracemalloc::Snapshot>> snapshots;
};

const Capture& capture() {
  static const Capture made = [] {
    std::vector<tracemalloc::Traceback> tracebacks;
    tracebacks.reserve(kStacks);
    for (std::size_t s = 0; s < kStacks; ++s) tracebacks.emplace_back(stack_of(s), kDepth);
    // Every stack once, then skewed: stack ~ kStacks * u^4.
    std::mt19937_64 random(42);
    std::uniform_real_distribution<double> uniform(0, 1);
    std::vector<tracemalloc::detail::RawTrace> traces;
    traces.reserve(kTraces);
    for (std::size_t i = 0; i < kTraces; ++i) {
      std::size_t stack = i;
      if (i >= kStacks) {
        const double u = uniform(random);
        stack = static_cast<std::size_t>(static_cast<double>(kStacks) * u * u * u * u);
      }
      const std::size_t size = 16 + random() % 256 + (stack % 97 == 0 ? 4096 : 0);
      traces.push_back({size, static_cast<std::uint32_t>(stack), 0});
    }
    Capture c;
    const std::pair<const char*, std::size_t> moments[] = {
        {"warm-up", kTraces * 3 / 10}, {"serving", kTraces * 6 / 10}, {"peak", kTraces}};
    for (const auto& [label, n] : moments) {
      auto data = std::make_shared<tracemalloc::detail::SnapshotData>();
      data->traceback_limit = static_cast<int>(kDepth);
      data->tracebacks = tracebacks;
      std::call_once(data->symbolized_once, [] {});  // as load(): already symbolized
      data->traces.assign(traces.begin(), traces.begin() + static_cast<std::ptrdiff_t>(n));
      c.snapshots.emplace_back(label, tracemalloc::Snapshot(std::move(data)));
    }
    return c;
  }();
  return made;
}

report::Document document(report::Flame flame) {
  report::Document doc;
  doc.title = "Memory report: bench_profile_report";
  doc.summary = {{"Traces", "1,000,000"}, {"Distinct stacks", "100,000"}};
  for (std::size_t i = 0; i < 100'000; ++i) {  // a long run sampled every 10 ms
    const auto v = static_cast<std::uint64_t>(i) * 1000;
    doc.timeline.push_back({static_cast<double>(i) * 10, v, v, v + (64 << 20)});
  }
  doc.markers = {{0, "warm-up"}, {500'000, "serving"}, {999'990, "peak"}};
  doc.flame = std::move(flame);
  doc.flame_default = 2;
  return doc;
}

/// Where the page is written: `--page PATH` keeps it there (to open it), else a temporary file
/// removed at the end.
std::filesystem::path kept_page;

const std::filesystem::path& page_path() {
  static const std::filesystem::path path =
      kept_page.empty()
          ? std::filesystem::temp_directory_path() / "memlens_bench_profile_report.html"
          : kept_page;
  return path;
}

/// BM_build_flame_and_write_html's best time and page size, by number of snapshots.
struct Figures {
  double seconds = 0;
  double bytes = 0;
};
std::map<std::size_t, Figures> figures;
double statistics_seconds = 0;

/// Keeps the best (smallest) of the times a benchmark measured.
void keep_best(double& best, double s) { best = best == 0 ? s : std::min(best, s); }

/// What build_flame starts with, timed alone: tracemalloc's statistics("traceback") of each
/// snapshot.
void BM_statistics_traceback(benchmark::State& state) {
  const auto& snapshots = capture().snapshots;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    for (const auto& [label, snapshot] : snapshots) {
      auto stats = snapshot.statistics("traceback");
      benchmark::DoNotOptimize(stats);
    }
    keep_best(statistics_seconds,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
}

void BM_build_flame(benchmark::State& state) {
  const auto& snapshots = capture().snapshots;
  std::size_t stacks = 0;
  for (auto _ : state) {
    auto flame = report::build_flame(snapshots);
    stacks = flame.stacks.size();
    benchmark::DoNotOptimize(flame);
  }
  state.counters["stacks_kept"] = static_cast<double>(stacks);
}

void BM_write_html(benchmark::State& state) {
  const auto doc = document(report::build_flame(capture().snapshots));
  for (auto _ : state) report::write_html(doc, page_path());
  state.counters["file_bytes"] = static_cast<double>(std::filesystem::file_size(page_path()));
}

/// The goal's figure: from the snapshots to the page on disk, for the last snapshot alone (one
/// capture of 1,000,000 traces) and for all three.
void BM_build_flame_and_write_html(benchmark::State& state) {
  const auto& all = capture().snapshots;
  const auto n = static_cast<std::size_t>(state.range(0));
  const std::vector<std::pair<std::string, tracemalloc::Snapshot>> snapshots(
      all.end() - static_cast<std::ptrdiff_t>(n), all.end());
  std::size_t frames = 0, stacks = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto doc = document(report::build_flame(snapshots));
    doc.flame_default = n - 1;
    frames = doc.flame.frames.size();
    stacks = doc.flame.stacks.size();
    report::write_html(doc, page_path());
    keep_best(figures[n].seconds,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  figures[n].bytes = static_cast<double>(std::filesystem::file_size(page_path()));
  state.counters["file_bytes"] = figures[n].bytes;
  state.counters["frames"] = static_cast<double>(frames);
  state.counters["stacks_kept"] = static_cast<double>(stacks);
}

BENCHMARK(BM_statistics_traceback)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_build_flame)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_write_html)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_build_flame_and_write_html)
    ->ArgName("snapshots")
    ->Arg(1)
    ->Arg(3)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  for (std::size_t i = 1; i + 1 < args.size(); ++i) {
    if (std::string_view(args[i]) == "--page") {
      kept_page = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
  }
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (kept_page.empty()) std::filesystem::remove(page_path());
  fmt::print("\nSummary: {} traces from {} distinct stacks of {} frames; best of 3 runs\n", kTraces,
             kStacks, kDepth);
  for (const auto& [n, f] : figures) {
    fmt::print(
        "  {} snapshot{}: page {:.2f} MB (goal < 5 MB: {}), build_flame + write_html {:.0f} ms "
        "(goal < 2 s: {})\n",
        n, n == 1 ? "" : "s", f.bytes / 1e6, f.bytes < kGoalBytes ? "met" : "NOT met",
        f.seconds * 1e3, f.seconds < kGoalSeconds ? "met" : "NOT met");
  }
  if (statistics_seconds > 0) {
    fmt::print("  of which tracemalloc's statistics(\"traceback\") of the 3 snapshots: {:.0f} ms\n",
               statistics_seconds * 1e3);
  }
  double load = 0;
  if (getloadavg(&load, 1) == 1 && load > 1.5) {
    fmt::print("  other processes were running (load average {:.1f}): times are inflated\n", load);
  }
  return 0;
}
