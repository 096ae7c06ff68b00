// Benchmarks of memlens::MemoryLeakDetector against objgraph on the same leak: a program holds
// 1,000,000 live objects (a linked chain, each item also in a list), and a registry keeps every
// session it is given, 1,000 per round. The detector takes a snapshot before the first round
// and after each of 3 rounds, then find_leaks names the leaking type and the chain of references
// that keeps the newest session alive. leaks_objgraph.py does the same with objgraph on CPython:
// show_growth 4 times, then find_backref_chain from the newest session to a module. Only these
// calls are timed; building the heap and appending the sessions are not. The summary at the end
// gives the ratios measured in this one run and judges the goals.
//
// objgraph keeps its peak counts inside the process, so the script runs each repetition in a
// fresh process. Each repetition here is a fresh process too (this program, run with
// --scenario): the first find_leaks in a process also reads the debug information to name the
// leaking line (tracemalloc's symbolization, cached afterwards), which a user pays once per
// process and a repetition in the same process would not. The script runs after this side's
// repetitions, so that the two never compete for CPUs or memory.
//
// `--items N` sets the number of live items on both sides (default 1,000,000); `--python PATH`
// the interpreter, which must import objgraph (default /usr/bin/python3: Debian's
// python3-objgraph).

#include <benchmark/benchmark.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "json_field.hpp"
#include "memlens/gc.hpp"
#include "memlens/object.hpp"
#include "memlens/sys.hpp"
#include "memlens/tools/memory_leak_detector.hpp"
#include "memlens/tracemalloc.hpp"
#include "memlens/track_new.hpp"  // as a program that watches for leaks: new is traced too
#include "memlens/visit.hpp"

// The program's types are in a named namespace, so that the detector's report names them as a
// user's would be ("leaks_bench::Session"), not as "(anonymous namespace)::Session".
namespace leaks_bench {

// The heap of leaks_objgraph.py: the same classes, references and globals.

/// Holds the previous item: the live objects form one chain as well as a list.
struct Item : memlens::Object {
  explicit Item(memlens::Ref<Item> previous) : next(std::move(previous)) {}
  memlens::Ref<Item> next;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("next", next)); }
};

struct Holder : memlens::Object {
  std::vector<memlens::Ref<Item>> items;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("items", items)); }
};

/// What leaks: holds no reference, so the collector does not track it, as CPython would not
/// if its __dict__ held only an int.
struct Session : memlens::Object {
  explicit Session(int value) : payload(value) {}
  int payload;
};

struct Registry : memlens::Object {
  std::vector<memlens::Ref<Session>> sessions;
  void traverse(memlens::Visitor& visit) override { visit(memlens::named("sessions", sessions)); }
};

// The module's globals.
memlens::Ref<Holder> holder;
memlens::Ref<Registry> registry;

}  // namespace leaks_bench

namespace {

using namespace leaks_bench;
using memlens_bench::ChildRun;
using memlens_bench::json_field;
using memlens_bench::json_number;
using memlens_bench::kReportMarker;
using memlens_bench::run_child;

constexpr std::size_t kDefaultItems = 1'000'000;
constexpr int kSessionsPerRound = 1000;
constexpr int kRounds = 3;
constexpr int kSnapshots = kRounds + 1;  // show_growth's calls in the script
/// Repetitions of each side, each a process; the script is given the same number.
constexpr int kRepetitions = 5;

// ---------------------------------------------------------------------------------------------
// The child (`--scenario --items=N`): one scenario, reported on one line, the marker then a flat
// JSON object. A check that fails ends it with a non-zero status: a time for the wrong work
// means nothing.

/// Real seconds of one call. Real time, as the script measures (time.perf_counter), and because
/// the symbolization runs in other processes (addr2line), which this one's CPU time misses.
template <class Call>
double seconds(Call&& call) {
  const auto start = std::chrono::steady_clock::now();
  call();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void build_heap(std::size_t items) {
  holder = memlens::make<Holder>();
  memlens::Ref<Item> previous;
  for (std::size_t i = 0; i < items; ++i) {
    previous = memlens::make<Item>(std::move(previous));
    holder->items.push_back(previous);
  }
  registry = memlens::make<Registry>();
}

/// What is wrong with what find_leaks found; empty if it is what the heap holds: Session grew by
/// 1000 in each of the window's two intervals (its default 3 snapshots: the last 3 of 4), nothing
/// else grew, and the path runs from the registry, held by a global, to the newest session.
std::string check(const std::vector<memlens::SuspectedLeak>& leaks) {
  if (leaks.empty()) return "find_leaks found nothing";
  std::string names;
  for (const auto& leak : leaks) {
    names += (names.empty() ? "" : ", ") + (leak.type_name.empty() ? "a site" : leak.type_name);
  }
  if (leaks.size() != 1) return fmt::format("find_leaks suspects {}: expected Session only", names);
  const memlens::SuspectedLeak& leak = leaks.front();
  if (leak.type_name != "leaks_bench::Session") return "find_leaks suspects " + names;
  if (leak.count_growth != 2 * kSessionsPerRound ||
      leak.count_per_interval !=
          std::vector<std::ptrdiff_t>{kSessionsPerRound, kSessionsPerRound}) {
    return fmt::format("Session grew by {} over {} intervals: expected 2000, 1000 in each",
                       leak.count_growth, leak.count_per_interval.size());
  }
  const auto& path = leak.retaining_path;
  const std::string last_edge = fmt::format(".sessions[{}]", registry->sessions.size() - 1);
  if (path.size() != 2 || path[0].object != memlens::Ref<memlens::Object>(registry) ||
      path[1].edge != last_edge ||
      path[1].object != memlens::Ref<memlens::Object>(registry->sessions.back()) ||
      leak.outside_references != 1) {
    return fmt::format(
        "the retaining path has {} steps: expected the registry (held by one global), then {}",
        path.size(), last_edge);
  }
  return {};
}

int scenario_child(std::size_t items) {
  const double build = seconds([&] { build_heap(items); });

  memlens::MemoryLeakDetector detector;
  detector.start_monitoring();
  double snapshot[kSnapshots];
  snapshot[0] = seconds([&] { detector.take_snapshot(); });
  int payload = 0;
  for (int round = 1; round <= kRounds; ++round) {
    for (int i = 0; i < kSessionsPerRound; ++i) {
      registry->sessions.push_back(memlens::make<Session>(payload++));
    }
    snapshot[round] = seconds([&] { detector.take_snapshot(); });
  }
  std::vector<memlens::SuspectedLeak> leaks;
  const double find_leaks = seconds([&] { leaks = detector.find_leaks(); });
  if (const std::string problem = check(leaks); !problem.empty()) {
    fmt::print(stderr, "{}\n", problem);
    return 1;
  }
  const memlens::SuspectedLeak& leak = leaks.front();
  const std::string site =
      leak.site.size() > 0
          ? fmt::format("{}:{}", std::filesystem::path(leak.site[0].filename).filename().string(),
                        leak.site[0].lineno)
          : "none";
  std::size_t live = 0;
  for (const auto& type : memlens::sys::type_stats()) live += type.count;

  // Where the time goes: the parts of take_snapshot and find_leaks that the public API can run
  // alone, on the same heap, after the measured calls. find_leaks again finds the symbols cached
  // and its memory once used: the difference from the first is mostly the symbolization.
  const double collect = seconds([] { memlens::gc::collect(); });
  const double traces = seconds([] {
    auto snapshot = memlens::tracemalloc::take_snapshot();
    benchmark::DoNotOptimize(snapshot);
  });
  const double type_stats = seconds([] {
    auto stats = memlens::sys::type_stats();
    benchmark::DoNotOptimize(stats);
  });
  const double find_leaks_again = seconds([&] {
    auto again = detector.find_leaks();
    benchmark::DoNotOptimize(again);
  });
  detector.stop_monitoring();

  double snapshots = 0;
  for (double s : snapshot) snapshots += s;
  fmt::print(
      "{}{{\"items\": {}, \"live\": {}, \"build_s\": {:.6f}, \"snapshots_s\": {:.6f}, "
      "\"first_snapshot_s\": {:.6f}, \"last_snapshot_s\": {:.6f}, \"find_leaks_s\": {:.6f}, "
      "\"total_s\": {:.6f}, \"collect_s\": {:.6f}, \"traces_s\": {:.6f}, \"type_stats_s\": "
      "{:.6f}, \"find_leaks_again_s\": {:.6f}, \"path\": \"{} {} -> {}\", \"site\": \"{}\"}}\n",
      kReportMarker, items, live, build, snapshots, snapshot[0], snapshot[kRounds], find_leaks,
      snapshots + find_leaks, collect, traces, type_stats, find_leaks_again,
      memlens::type_name(leak.retaining_path[0].object), leak.retaining_path[1].edge,
      memlens::type_name(leak.retaining_path[1].object), site);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The benchmark: each iteration is one child process; the time reported is its snapshots plus
// find_leaks (UseManualTime), and the counters carry its other figures.

/// What the driver knows.
struct Settings {
  std::string self;
  std::string python = "/usr/bin/python3";
  std::size_t items = kDefaultItems;
};
Settings settings;

/// The retaining path and the leaking line the children found.
std::string found_path;
std::string found_site;

/// Keeps the message alive for the State, which keeps only the pointer.
void fail(benchmark::State& state, std::string message) {
  static std::string kept;
  kept = std::move(message);
  state.SkipWithError(kept.c_str());
}

constexpr const char* kCounters[] = {
    "live",         "build_s",   "snapshots_s", "first_snapshot_s", "last_snapshot_s",
    "find_leaks_s", "collect_s", "traces_s",    "type_stats_s",     "find_leaks_again_s"};

void measure_scenario(benchmark::State& state) {
  const std::vector<std::string> command = {settings.self, "--scenario",
                                            fmt::format("--items={}", settings.items)};
  for (auto _ : state) {
    const ChildRun run = run_child(command);
    const auto total = json_number(run.report, "total_s");
    if (!run.exited_zero || !total) return fail(state, run.problem(command.front()));
    state.SetIterationTime(*total);
    for (const char* key : kCounters)
      state.counters[key] = json_number(run.report, key).value_or(0);
    found_path = json_field(run.report, "path").value_or("");
    found_site = json_field(run.report, "site").value_or("");
  }
}

std::string scenario_name() { return fmt::format("leaks/items:{}", settings.items); }

void register_benchmarks() {
  benchmark::RegisterBenchmark(scenario_name().c_str(), measure_scenario)
      ->UseManualTime()
      ->Iterations(1)
      ->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMillisecond);
}

// ---------------------------------------------------------------------------------------------
// Gathering the results of this run.

/// The scenario's medians: its total (snapshots + find_leaks) and the counters.
struct Figures {
  double total = 0;
  std::map<std::string, double> counters;

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
      if (run.error_occurred) failure_ = run.error_message;
      if (run.error_occurred || run.aggregate_name != "median") continue;
      figures_.emplace();
      figures_->total = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
      for (const auto& [name, counter] : run.counters) figures_->counters[name] = counter.value;
    }
  }

  /// nullopt if the scenario did not run or failed.
  std::optional<Figures> figures() const { return failure_.empty() ? figures_ : std::nullopt; }
  const std::string& failure() const { return failure_; }

 private:
  std::optional<Figures> figures_;
  std::string failure_;
};

/// objgraph's figures, as leaks_objgraph.py printed them (medians of its repetitions).
struct ObjgraphResults {
  std::string version;  // "CPython 3.11.2, objgraph 3.5.0"; empty: the comparison did not run
  std::string problem;  // why it did not run
  double show_growth = 0;
  double backref_chain = 0;
  double total = 0;
  int chain_length = 0;
};

/// Runs leaks_objgraph.py, which sits next to this source file, with as many repetitions.
ObjgraphResults run_objgraph() {
  ObjgraphResults results;
  const auto script = std::filesystem::path(__FILE__).parent_path() / "leaks_objgraph.py";
  if (!std::filesystem::exists(script)) {
    results.problem = fmt::format("{} not found", script.string());
    return results;
  }
  if (!run_child({settings.python, "-c", "import objgraph"}).exited_zero) {
    results.problem = fmt::format(
        "{} cannot import objgraph (Debian: apt install python3-objgraph; or --python PATH)",
        settings.python);
    return results;
  }
  const std::vector<std::string> command = {settings.python, script.string(),
                                            "--items",       std::to_string(settings.items),
                                            "--repetitions", std::to_string(kRepetitions),
                                            "--json"};
  fmt::print("\nobjgraph's side: {} {} --items {} --repetitions {} --json\n", settings.python,
             script.string(), settings.items, kRepetitions);
  std::fflush(stdout);
  const ChildRun run = run_child(command);
  const auto line = run.output.substr(0, run.output.find('\n'));
  fmt::print("  {}\n", line);
  const auto show_growth = json_number(line, "show_growth_total");
  const auto backref_chain = json_number(line, "backref_chain");
  const auto total = json_number(line, "total");
  const auto chain = json_number(line, "chain_length");
  if (!run.exited_zero || !show_growth || !backref_chain || !total || !chain) {
    results.problem = run.problem("leaks_objgraph.py");
    return results;
  }
  results.version =
      fmt::format("Python {}, objgraph {}", json_field(line, "python_version").value_or("?"),
                  json_field(line, "objgraph_version").value_or("?"));
  results.show_growth = *show_growth;
  results.backref_chain = *backref_chain;
  results.total = *total;
  results.chain_length = static_cast<int>(*chain);
  return results;
}

// ---------------------------------------------------------------------------------------------
// The summary.

std::string verdict(bool met) { return met ? "goal met" : "goal NOT met"; }

std::string ms(double seconds) {
  return fmt::format("{:.{}f} ms", seconds * 1e3, seconds < 1e-3 ? 3 : 1);
}

void print_row(std::string_view label, std::string_view ours, std::string_view theirs,
               std::string_view ratio, std::string_view goal = "") {
  std::string row =
      fmt::format("  {:<40} {:>11} {:>11} {:>12}  {}", label, ours, theirs, ratio, goal);
  row.erase(row.find_last_not_of(' ') + 1);
  fmt::print("{}\n", row);
}

void print_summary(const SummaryReporter& results, const ObjgraphResults& objgraph) {
  fmt::print(
      "\nSummary of this run: {} live items; real time, the median of {} repetitions on each "
      "side, each a process of its own\n",
      settings.items, kRepetitions);
  if (objgraph.version.empty()) {
    fmt::print("objgraph comparison skipped: {}\n", objgraph.problem);
  } else {
    fmt::print("{} ran the same heap and steps (leaks_objgraph.py)\n", objgraph.version);
  }
  double load = 0;
  if (getloadavg(&load, 1) == 1 && load > 1.5) {
    fmt::print(
        "Other processes were running (load average {:.1f} on {} CPUs; this program adds 1): "
        "figures are noisy, compare several runs\n",
        load, std::thread::hardware_concurrency());
  }
  const auto ours = results.figures();
  if (!ours) {
    fmt::print("\nmemlens' scenario failed: {}\n", results.failure());
    return;
  }
  const bool compared = !objgraph.version.empty();
  const auto ratio = [&](double memlens_s, double objgraph_s) {
    return compared ? fmt::format("{:.1f}x", objgraph_s / memlens_s) : std::string("n/a");
  };
  const auto theirs = [&](double s) { return compared ? ms(s) : std::string("n/a"); };

  fmt::print("\n");
  print_row("", "memlens", "objgraph", "objgraph /");
  print_row("", "", "", "memlens");
  const double snapshots = ours->counter("snapshots_s");
  const double find_leaks = ours->counter("find_leaks_s");
  print_row(fmt::format("{} snapshots / show_growth calls", kSnapshots), ms(snapshots),
            theirs(objgraph.show_growth), ratio(snapshots, objgraph.show_growth));
  const bool at_scale = settings.items >= kDefaultItems;
  print_row("find_leaks / find_backref_chain", ms(find_leaks), theirs(objgraph.backref_chain),
            ratio(find_leaks, objgraph.backref_chain),
            at_scale ? "target find_leaks < 1 s: " + verdict(find_leaks < 1) : "");
  std::string total_goal = "target >= 20x: ";
  total_goal += compared ? verdict(objgraph.total >= 20 * ours->total) : "n/a";
  print_row("total", ms(ours->total), theirs(objgraph.total), ratio(ours->total, objgraph.total),
            total_goal);
  // Not the goal's figure: what a process pays once its symbols are cached (a second search).
  const double again = ours->counter("find_leaks_again_s");
  print_row("total, find_leaks' symbols cached", ms(snapshots + again), theirs(objgraph.total),
            ratio(snapshots + again, objgraph.total));
  fmt::print(
      "  (medians of each figure apart: the total's median need not be the sum of the others')\n");

  fmt::print("\nWhat each side found\n");
  fmt::print("  memlens: Session +2000 over the window's 2 intervals; path {}; allocated at {}\n",
             found_path, found_site);
  if (compared) {
    fmt::print(
        "  objgraph: Session +1000 in the last show_growth; a chain of {} objects (module -> "
        "dict -> Registry -> list -> Session)\n",
        objgraph.chain_length);
  }
  fmt::print(
      "  find_leaks also compares every type and allocation site over the window and finds the "
      "allocation site;\n  find_backref_chain only searches back from the object it is given.\n");

  fmt::print(
      "\nWhere memlens' time goes (medians; parts timed alone after the scenario, on the "
      "same heap of {} live objects)\n",
      static_cast<std::size_t>(ours->counter("live")));
  const double collect = ours->counter("collect_s");
  const double traces = ours->counter("traces_s");
  const double type_stats = ours->counter("type_stats_s");
  fmt::print(
      "  take_snapshot: first {}, last {}; of one, gc::collect() {}, "
      "tracemalloc::take_snapshot() {}, sys::type_stats() {}\n",
      ms(ours->counter("first_snapshot_s")), ms(ours->counter("last_snapshot_s")), ms(collect),
      ms(traces), ms(type_stats));
  fmt::print(
      "  find_leaks: first {}, again {} (symbols cached): the symbolization (addr2line) and the "
      "first use of its memory about {}\n",
      ms(find_leaks), ms(again), ms(find_leaks - again));
  fmt::print("  building the heap (untimed): {}\n", ms(ours->counter("build_s")));
}

/// Takes `--items N` (or `--items=N`) and `--python PATH` (or `--python=PATH`) out of the
/// arguments, for Google Benchmark to see only its own. False on a bad value.
bool take_own_arguments(std::vector<char*>& args) {
  for (std::size_t i = 1; i < args.size();) {
    const std::string_view arg = args[i];
    std::optional<std::string> value;
    std::string_view name;
    for (std::string_view option : {"--items", "--python"}) {
      if (arg == option && i + 1 < args.size()) {
        value = args[i + 1];
        args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                   args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      } else if (arg.starts_with(option) && arg.size() > option.size() &&
                 arg[option.size()] == '=') {
        value = std::string(arg.substr(option.size() + 1));
        args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        continue;
      }
      name = option;
      break;
    }
    if (!value) {
      ++i;
      continue;
    }
    if (name == "--python") {
      settings.python = *value;
      continue;
    }
    char* end = nullptr;
    const unsigned long long items = std::strtoull(value->c_str(), &end, 10);
    if (end == value->c_str() || *end != '\0' || items == 0) {
      fmt::print(stderr, "--items wants a positive number, not '{}'\n", *value);
      return false;
    }
    settings.items = static_cast<std::size_t>(items);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  if (!take_own_arguments(args)) return 1;
  if (args.size() >= 2 && std::string_view(args[1]) == "--scenario") {
    return scenario_child(settings.items);
  }

  std::error_code error;
  settings.self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (error) settings.self = argv[0];
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  register_benchmarks();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  // objgraph runs afterwards, unless the scenario was filtered out.
  ObjgraphResults objgraph;
  if (reporter.figures()) {
    objgraph = run_objgraph();
  } else {
    objgraph.problem = "memlens' scenario did not run";
  }
  print_summary(reporter, objgraph);
  return 0;
}
