// Benchmarks of memlens' cycle collector against CPython 3.11's, on the same object graphs: the
// cost per object of gc::collect() on garbage cycles of several shapes and on a heap that is all
// reachable, of gc::get_referrers, and the pause of a young collection. Only the gc call is
// timed, never the construction of the graph. CPython's figures come from gc_cpython.py, which
// this program runs after its own benchmarks; the summary at the end gives the ratios and judges
// the goals on the figures of this one run.

#include <benchmark/benchmark.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#if __has_include(<malloc.h>) && defined(__GLIBC__)
#include <malloc.h>  // malloc_trim
#define MEMLENS_BENCH_HAVE_MALLOC_TRIM 1
#endif

#include "memlens/gc.hpp"
#include "json_field.hpp"

namespace {

// ---------------------------------------------------------------------------------------------
// The graphs. Node takes 48 bytes with its GcHead, as gc_cpython.py's __slots__ Node does with
// its PyGC_Head.

struct Node : memlens::Object {
  memlens::Ref<Node> next, prev;
  void traverse(memlens::Visitor& visit) override { visit(next, prev); }
};

constexpr std::size_t kMillion = 1'000'000;
constexpr std::size_t kYoungObjects = 700;  // CPython's default threshold of generation 0

/// `objects` / 2 garbage 2-cycles.
void build_pairs(std::size_t objects) {
  for (std::size_t i = 0; i < objects / 2; ++i) {
    auto a = memlens::make<Node>(), b = memlens::make<Node>();
    a->next = b;
    b->next = a;
  }
}

/// A ring of `objects` nodes through `next`; garbage once the returned head is dropped.
memlens::Ref<Node> build_ring(std::size_t objects) {
  auto head = memlens::make<Node>();
  auto tail = head;
  for (std::size_t i = 1; i < objects; ++i) {
    auto node = memlens::make<Node>();
    tail->next = node;
    tail = std::move(node);
  }
  tail->next = head;
  return head;
}

/// A garbage doubly linked list: every pair of neighbours is a 2-cycle.
void build_doubly_linked(std::size_t objects) {
  auto head = memlens::make<Node>();
  auto tail = head;
  for (std::size_t i = 1; i < objects; ++i) {
    auto node = memlens::make<Node>();
    tail->next = node;
    node->prev = std::move(tail);
    tail = std::move(node);
  }
}

/// Puts the allocator back in its pristine state once a graph is freed. glibc hands freed small
/// chunks back in LIFO order, so a rebuilt graph can lie scattered in memory, and the collector's
/// list walks then slow down up to 10x (a bare build/collect loop does by its third round).
/// CPython hands emptied pools out afresh; with this, both sides walk graphs laid out in
/// allocation order, whatever ran before.
void reset_allocator() {
#ifdef MEMLENS_BENCH_HAVE_MALLOC_TRIM
  malloc_trim(0);
#endif
}

// ---------------------------------------------------------------------------------------------
// Timing. Each iteration times one gc call with a steady clock and reports it through
// UseManualTime, so construction and teardown stay out of the figures.

/// What one iteration measured.
struct Timing {
  double seconds = 0;       // real time of the gc call
  double cpu_seconds = 0;   // its CPU time: less than `seconds` if other processes took the CPU
  std::size_t found = 0;    // what the gc call returned (objects found, or referrers)
  std::size_t objects = 0;  // what the cost is divided by: objects collected, or heap scanned
};

/// Times one gc call that returns a count.
template <class Call>
Timing timed(Call call) {
  // std::clock is a system call: it stays out of the real-time window.
  const std::clock_t cpu_start = std::clock();
  const auto start = std::chrono::steady_clock::now();
  Timing t;
  t.found = call();
  const auto end = std::chrono::steady_clock::now();
  const std::clock_t cpu_end = std::clock();
  t.seconds = std::chrono::duration<double>(end - start).count();
  t.cpu_seconds = static_cast<double>(cpu_end - cpu_start) / CLOCKS_PER_SEC;
  return t;
}

/// The loop every case shares; `iteration` returns a Timing. Fails the benchmark if the gc call
/// finds anything but `expected`: a figure for the wrong work means nothing.
template <class Iteration>
void run(benchmark::State& state, std::size_t expected, Iteration iteration) {
  double seconds = 0, cpu_seconds = 0;
  std::size_t objects = 0;
  for (auto _ : state) {
    const Timing t = iteration();
    if (t.found != expected) {
      static std::string message;  // must outlive the State
      message = fmt::format("the gc call found {}, expected {}", t.found, expected);
      state.SkipWithError(message.c_str());
      return;
    }
    state.SetIterationTime(t.seconds);
    seconds += t.seconds;
    cpu_seconds += t.cpu_seconds;
    objects = t.objects;
  }
  const auto iterations = static_cast<double>(state.iterations());
  state.counters["objects"] = static_cast<double>(objects);
  state.counters["ns/object"] = seconds * 1e9 / iterations / static_cast<double>(objects);
  // Of the gc calls alone (the CPU column also counts the untimed construction); slightly
  // above 1 for short calls, whose CPU window includes the clock reads.
  state.counters["cpu/real"] = cpu_seconds / seconds;
}

template <class Build>
void collect_garbage(benchmark::State& state, std::size_t objects, Build build) {
  run(state, objects, [&] {
    build(objects);
    Timing t = timed([] { return memlens::gc::collect(); });
    reset_allocator();
    t.objects = objects;
    return t;
  });
}

void collect_reachable(benchmark::State& state, std::size_t objects) {
  run(state, 0, [&] {
    auto root = build_ring(objects);
    Timing t = timed([] { return memlens::gc::collect(); });
    root.reset();
    memlens::gc::collect();
    reset_allocator();
    t.objects = objects;
    return t;
  });
}

void get_referrers(benchmark::State& state, std::size_t objects) {
  run(state, 1, [&] {
    auto root = build_ring(objects);
    auto target = root->next;
    const std::size_t heap = memlens::gc::get_objects().size();
    Timing t = timed([&] { return memlens::gc::get_referrers(target).size(); });
    root.reset();
    target.reset();
    memlens::gc::collect();
    reset_allocator();
    t.objects = heap;
    return t;
  });
}

/// collect(0) of kYoungObjects fresh objects in 2-cycles, with `old_heap` reachable objects in
/// the oldest generation, which a young collection must not pay for.
void young_collection(benchmark::State& state, std::size_t old_heap) {
  memlens::Ref<Node> root = old_heap ? build_ring(old_heap) : nullptr;
  memlens::gc::collect();  // the old heap moves to generation 2
  run(state, kYoungObjects, [] {
    build_pairs(kYoungObjects);
    Timing t = timed([] { return memlens::gc::collect(0); });
    t.objects = kYoungObjects;
    return t;
  });
  root.reset();
  memlens::gc::collect();
  reset_allocator();
}

// ---------------------------------------------------------------------------------------------
// The cases. A name is both the benchmark's and gc_cpython.py's shape name, and the repetitions
// are the script's too, so both sides report medians of as many runs.

struct Case {
  const char* name;
  const char* label;
  bool frees;       // every object measured is freed: the < 25 ns per freed object aim applies
  int repetitions;  // heavy cases run one iteration per repetition; young ones many
  void (*body)(benchmark::State&);
};

using benchmark::State;
constexpr Case kCases[] = {
    {"pairs", "collect(): 500k 2-cycles (1M objects)", true, 5,
     [](State& s) { collect_garbage(s, kMillion, build_pairs); }},
    {"ring", "collect(): 1M-node ring", true, 5,
     [](State& s) { collect_garbage(s, kMillion, [](std::size_t n) { build_ring(n); }); }},
    {"doubly_linked", "collect(): 1M-node doubly linked list", true, 5,
     [](State& s) { collect_garbage(s, kMillion, build_doubly_linked); }},
    {"reachable", "collect(): 1M reachable objects, frees none", false, 5,
     [](State& s) { collect_reachable(s, kMillion); }},
    {"ring_4m", "collect(): 4M-node ring", true, 3,
     [](State& s) { collect_garbage(s, 4 * kMillion, [](std::size_t n) { build_ring(n); }); }},
    {"get_referrers", "get_referrers(): 1M-object heap, per object", false, 5,
     [](State& s) { get_referrers(s, kMillion); }},
    {"young", "collect(0): 700 objects in 2-cycles", true, 5,
     [](State& s) { young_collection(s, 0); }},
    {"young_old_heap", "collect(0): the same, 1M old objects", true, 5,
     [](State& s) { young_collection(s, kMillion); }},
};

bool is_young(const Case& c) { return std::string_view(c.name).starts_with("young"); }

void register_benchmarks() {
  for (const Case& c : kCases) {
    auto* bench = benchmark::RegisterBenchmark(c.name, c.body)
                      ->UseManualTime()
                      ->Repetitions(c.repetitions)
                      ->ReportAggregatesOnly(true);
    if (is_young(c)) {
      // Tens of µs each, and each iteration also builds 700 objects untimed: a short minimum.
      bench->MinTime(0.05)->Unit(benchmark::kMicrosecond);
    } else {
      bench->Iterations(1)->Unit(benchmark::kMillisecond);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Gathering the results of this run.

/// One case's figures: the cost per object, and the time of one gc call (the pause).
struct Figures {
  double ns_per_object = 0;
  double ns = 0;
};

/// The console output, plus each case's median figures for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // Colors only on a terminal, so logs stay free of escape codes.
  SummaryReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) failed_.insert(run.run_name.function_name);
      if (run.error_occurred || run.aggregate_name != "median") continue;
      const auto counter = [&](const char* name, double missing) {
        const auto it = run.counters.find(name);
        return it == run.counters.end() ? missing : it->second.value;
      };
      figures_[run.run_name.function_name] = {
          counter("ns/object", 0),
          run.GetAdjustedRealTime() * 1e9 / benchmark::GetTimeUnitMultiplier(run.time_unit)};
      min_cpu_share_ = std::min(min_cpu_share_, counter("cpu/real", 1));
    }
  }

  /// The case's figures, or nullptr if it did not run.
  const Figures* figures(const std::string& name) const {
    const auto it = figures_.find(name);
    return it == figures_.end() ? nullptr : &it->second;
  }

  /// Whether the case stopped on an error (the gc call found the wrong number of objects).
  bool failed(const std::string& name) const { return failed_.count(name) != 0; }

  /// The smallest share of a gc call's real time that it spent on a CPU (below 1: it waited
  /// while other processes ran).
  double min_cpu_share() const { return min_cpu_share_; }

 private:
  std::map<std::string, Figures> figures_;
  std::set<std::string> failed_;
  double min_cpu_share_ = 1;
};

/// CPython's figures, as gc_cpython.py printed them.
struct CPythonResults {
  std::string version;                   // "CPython 3.11.7"; empty: the comparison did not run
  std::string problem;                   // why it did not run, or did not complete
  std::map<std::string, Figures> cases;  // by shape name
};

using memlens_bench::json_field;

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

/// Runs gc_cpython.py, which sits next to this source file, on `shapes`.
CPythonResults run_cpython(const std::vector<std::string>& shapes) {
  CPythonResults results;
  const auto script = std::filesystem::path(__FILE__).parent_path() / "gc_cpython.py";
  if (std::system("command -v python3 > /dev/null 2>&1") != 0) {
    results.problem = "python3 not found";
    return results;
  }
  if (!std::filesystem::exists(script)) {
    results.problem = fmt::format("{} not found", std::filesystem::absolute(script).string());
    return results;
  }
  std::string command = "python3 " + shell_quote(script.string());
  for (const auto& shape : shapes) command += " " + shell_quote(shape);
  fmt::print("\nCPython's side: {}\n", command);
  std::fflush(stdout);  // before the child writes to the same stream

  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) {
    results.problem = "could not start python3";
    return results;
  }
  std::string line;
  for (int c; (c = std::fgetc(pipe)) != EOF;) {
    if (c != '\n') {
      line += static_cast<char>(c);
      continue;
    }
    fmt::print("  {}\n", line);
    const auto version = json_field(line, "python");
    const auto implementation = json_field(line, "implementation");
    if (version && implementation) results.version = *implementation + " " + *version;
    const auto shape = json_field(line, "shape");
    const auto per_object = json_field(line, "ns_per_object");
    const auto ns = json_field(line, "ns");
    if (shape && per_object && ns) {
      results.cases[*shape] = {std::strtod(per_object->c_str(), nullptr),
                               std::strtod(ns->c_str(), nullptr)};
    }
    line.clear();
  }
  if (const int status = pclose(pipe); status != 0) {
    results.problem = fmt::format("gc_cpython.py failed (wait status {})", status);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// The summary.

std::string verdict(bool met) { return met ? "goal met" : "goal NOT met"; }

/// "9.8x faster" or "1.2x slower": how memlens compares with CPython.
std::string ratio_text(double ratio) {
  const double shown = ratio >= 1 ? ratio : 1 / ratio;
  return fmt::format("{:.{}f}x {}", shown, shown < 10 ? 2 : 1, ratio >= 1 ? "faster" : "slower");
}

std::string ns_text(const Figures* figures) {
  return figures ? fmt::format("{:.1f} ns", figures->ns_per_object) : "n/a";
}

void print_row(std::string_view label, std::string_view ours, std::string_view theirs,
               std::string_view ratio, std::string_view goal, std::string_view aim) {
  std::string row = fmt::format("  {:<44} {:>10} {:>10}  {:<16} {:<13} {}", label, ours, theirs,
                                ratio, goal, aim);
  row.erase(row.find_last_not_of(' ') + 1);
  fmt::print("{}\n", row);
}

void print_summary(const SummaryReporter& results, const CPythonResults& cpython) {
  fmt::print("\nSummary of this run: ns per object, the median of the repetitions\n");
  if (cpython.version.empty()) {
    fmt::print("CPython comparison skipped: {}\n", cpython.problem);
  } else {
    fmt::print("{} ran the same graphs (gc_cpython.py){}\n", cpython.version,
               cpython.problem.empty() ? "" : fmt::format("; {}", cpython.problem));
    if (!cpython.version.starts_with("CPython 3.11.")) {
      fmt::print("The goals were set against CPython 3.11\n");
    }
  }
  fmt::print("Both heaps are laid out in allocation order (see reset_allocator)\n");
  double load = 0;
  if (getloadavg(&load, 1) == 1 && load > 1.5) {
    fmt::print(
        "Other processes were running (load average {:.1f} on {} CPUs; this program adds "
        "1): figures are noisy, compare several runs\n",
        load, std::thread::hardware_concurrency());
  }
  if (results.min_cpu_share() < 0.9) {
    fmt::print("Some gc calls waited for a CPU (down to {:.0f}% of their time on one)\n",
               100 * results.min_cpu_share());
  }

  fmt::print("\n");
  print_row("", "memlens", "CPython", "CPython/memlens", ">= 4x", "7x and < 25 ns/freed object");
  bool all_met = true;
  auto judge = [&](bool met) {
    all_met = all_met && met;
    return verdict(met);
  };
  for (const Case& c : kCases) {
    const auto it = cpython.cases.find(c.name);
    const Figures* theirs = it == cpython.cases.end() ? nullptr : &it->second;
    if (results.failed(c.name)) {
      all_met = false;
      print_row(c.label, "error", ns_text(theirs), "", verdict(false), "");
      continue;
    }
    const Figures* ours = results.figures(c.name);
    std::string ratio, goal, aim;
    if (ours && theirs) {
      const double r = theirs->ns_per_object / ours->ns_per_object;
      ratio = ratio_text(r);
      goal = judge(r >= 4);
    }
    if (ours) {
      // The aim is a stretch goal: shown, not counted in the verdict below.
      const bool fast = !c.frees || ours->ns_per_object < 25;
      if (theirs) {
        aim = fast && theirs->ns_per_object >= 7 * ours->ns_per_object ? "met" : "not met";
      } else {
        aim = fast ? "ns part met" : "not met";
      }
    }
    print_row(c.label, ns_text(ours), ns_text(theirs), ratio, goal, aim);
  }

  // The pauses themselves, with and without an old heap that a young collection must not touch.
  auto pause = [&](const char* name) {
    std::string text;
    if (const Figures* ours = results.figures(name)) {
      text = fmt::format("memlens {:.1f} µs", ours->ns / 1e3);
    }
    if (const auto it = cpython.cases.find(name); it != cpython.cases.end()) {
      text += fmt::format("{}CPython {:.1f} µs", text.empty() ? "" : ", ", it->second.ns / 1e3);
    }
    return text.empty() ? std::string("n/a") : text;
  };
  if (results.figures("young") || results.figures("young_old_heap")) {
    fmt::print("\nYoung-collection pause (collect(0), 700 objects): {}; with 1M old objects: {}\n",
               pause("young"), pause("young_old_heap"));
  }

  const auto ring = results.figures("ring");
  const auto ring_4m = results.figures("ring_4m");
  if (ring && ring_4m) {
    const double growth = ring_4m->ns_per_object / ring->ns_per_object - 1;
    fmt::print(
        "Linear cost: ring of 1M {:.1f} ns/object, of 4M {:.1f} ns/object ({:+.1f}%); "
        "target within 20%: {}\n",
        ring->ns_per_object, ring_4m->ns_per_object, 100 * growth,
        judge(growth >= -0.2 && growth <= 0.2));
  }
  fmt::print("\nGoals (>= 4x CPython per object on every shape; linear cost): {}\n",
             !all_met                ? "NOT all met"
             : cpython.cases.empty() ? "not judged without CPython's figures"
                                     : "all met");
}

}  // namespace

int main(int argc, char** argv) {
  // As gc_cpython.py: no automatic collection, so only the calls measured ever collect.
  memlens::gc::disable();

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  // CPython runs the cases that ran here (--benchmark_filter applies to both sides), afterwards,
  // so that the two never compete for CPUs or memory.
  std::vector<std::string> shapes;
  for (const Case& c : kCases) {
    if (reporter.figures(c.name)) shapes.emplace_back(c.name);
  }
  CPythonResults cpython;
  if (shapes.empty()) {
    cpython.problem = "no case ran";
  } else {
    cpython = run_cpython(shapes);
  }
  print_summary(reporter, cpython);
  return 0;
}
