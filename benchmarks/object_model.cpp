// Benchmarks of memlens' object model against its peers: the cost of copying and dropping a
// reference, of an object's whole life, of locking a weak reference, and the bytes a header
// takes. All figures come from one run, and the summary at the end gives their ratios.
//
// Peers: boost::intrusive_ptr with a thread-unsafe counter (the fair peer of Ref's plain count),
// std::shared_ptr (with atomic counts, as in any program that has started a thread),
// boost::intrusive_ptr with a thread-safe counter, and a naive non-atomic intrusive pointer, the
// floor any non-atomic Ref can reach. With two threads, what each side really pays: a Ref is
// used under HeapLock (taken per copy, or once per 64 copies), a shared_ptr is copied freely.
//
// The type accounting (sys::type_stats: make counts each object it creates, destruction each it
// frees) is compiled in or out by MEMLENS_TYPE_STATS, which must be the same in a whole program,
// so its cost cannot be measured inside one process. CMake builds this file twice, alike but for
// that macro: bench_object_model (accounting on, the default) and bench_object_model_untyped
// (MEMLENS_TYPE_STATS=0). For that comparison each repetition is a child process that makes and
// destroys a fixed number of objects in the loop the benchmarks use and reports its CPU time per
// object: the accounting variant and std::make_shared run in this executable, the other variant
// in bench_object_model_untyped, and the repetitions of all are interleaved at random, so that
// every variant meets the same load from other processes. The benchmarks above run in this
// process, with the accounting on, as a program built with the defaults.

#include <benchmark/benchmark.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>  // __libc_single_threaded, which libstdc++ consults
#define MEMLENS_BENCH_HAVE_SINGLE_THREADED 1
#endif

#include "child_process.hpp"
#include "json_field.hpp"
#include "memlens/object.hpp"
#include "memlens/sys.hpp"
#include "memlens/threads.hpp"
#include "memlens/weakref.hpp"

#if MEMLENS_HAVE_BOOST
#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>
#endif

#ifndef MEMLENS_BENCH_UNTYPED_EXE
#error "benchmarks/CMakeLists.txt defines MEMLENS_BENCH_UNTYPED_EXE, the untyped executable"
#endif

namespace {

// ---------------------------------------------------------------------------------------------
// The objects measured. Each family holds the same payload, so only the bookkeeping differs.

/// Holds no references: untracked, 16-byte header.
struct SmallObject : memlens::Object {
  int value = 0;
};

/// Holds a Ref and says so in traverse: tracked by the cycle collector, 32-byte header.
struct LinkedObject : memlens::Object {
  memlens::Ref<LinkedObject> next;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};

/// What std::make_shared and new/delete build in place of SmallObject and LinkedObject.
struct SmallValue {
  int value = 0;
};
struct LinkedValue {
  std::shared_ptr<LinkedValue> next;
};

#if MEMLENS_HAVE_BOOST
template <class CounterPolicy>
struct BoostObject : boost::intrusive_ref_counter<BoostObject<CounterPolicy>, CounterPolicy> {
  int value = 0;
};
#endif

struct NaiveObject {
  unsigned count = 1;
  int value = 0;
};

/// The simplest nullable, non-atomic intrusive pointer: no vtable, no flags, no trashcan.
class NaivePtr {
 public:
  explicit NaivePtr(NaiveObject* adopted) noexcept : object_(adopted) {}
  NaivePtr(const NaivePtr& other) noexcept : object_(other.object_) {
    if (object_) ++object_->count;
  }
  NaivePtr& operator=(const NaivePtr&) = delete;
  ~NaivePtr() {
    if (object_ && --object_->count == 0) delete object_;
  }

 private:
  NaiveObject* object_;
};

// ---------------------------------------------------------------------------------------------
// Benchmark names, shared by the registration and the summary.

namespace names {
constexpr const char* ref_copy = "copy_destroy/memlens::Ref";
constexpr const char* shared_copy = "copy_destroy/std::shared_ptr";
#if MEMLENS_HAVE_BOOST
constexpr const char* boost_safe_copy = "copy_destroy/boost::intrusive_ptr<thread_safe_counter>";
constexpr const char* boost_unsafe_copy =
    "copy_destroy/boost::intrusive_ptr<thread_unsafe_counter>";
#endif
constexpr const char* naive_copy = "copy_destroy/naive_intrusive_ptr";

constexpr const char* make_small = "make_destroy/int/memlens::make";
constexpr const char* make_shared_small = "make_destroy/int/std::make_shared";
constexpr const char* new_small = "make_destroy/int/new_delete";
constexpr const char* make_linked = "make_destroy/tracked/memlens::make";
constexpr const char* make_shared_linked = "make_destroy/tracked/std::make_shared";
constexpr const char* new_linked = "make_destroy/tracked/new_delete";

constexpr const char* weak_lock = "lock_drop/memlens::Weak";
constexpr const char* weak_ptr_lock = "lock_drop/std::weak_ptr";

// Two threads copying one shared object at once. Google Benchmark appends what it varies.
constexpr const char* two_threads = "/real_time/threads:2";
constexpr const char* ref_copy_locked = "copy_destroy_2_threads/memlens::Ref+HeapLock_per_copy";
constexpr const char* ref_copy_batched =
    "copy_destroy_2_threads/memlens::Ref+HeapLock_per_64_copies";
constexpr const char* shared_copy_threads = "copy_destroy_2_threads/std::shared_ptr";
/// Copies per HeapLock in the batched variant.
constexpr int batch = 64;
}  // namespace names

/// Which executable a child process of the type accounting's comparison runs.
enum class Program {
  self,     // this one: MEMLENS_TYPE_STATS=1
  untyped,  // bench_object_model_untyped: MEMLENS_TYPE_STATS=0
};

/// One variant of the type accounting's comparison; each repetition is a child process.
struct LifetimeCase {
  const char* name;  // the benchmark's
  const char* loop;  // what the child makes and destroys: its --lifetimes= argument
  Program program;
};

constexpr LifetimeCase kLifetimeCases[] = {
    {"type_accounting/int/memlens::make", "int/make", Program::self},
    {"type_accounting/int/memlens::make(MEMLENS_TYPE_STATS=0)", "int/make", Program::untyped},
    {"type_accounting/int/std::make_shared", "int/make_shared", Program::self},
    {"type_accounting/tracked/memlens::make", "tracked/make", Program::self},
    {"type_accounting/tracked/memlens::make(MEMLENS_TYPE_STATS=0)", "tracked/make",
     Program::untyped},
    {"type_accounting/tracked/std::make_shared", "tracked/make_shared", Program::self},
};
/// Child processes per variant: the difference sought is a fraction of a nanosecond per object,
/// below what one run on a shared machine can tell.
constexpr int kLifetimeRepetitions = 9;
/// Objects each child makes and destroys untimed, then timed: about 0.2 s of work, long enough
/// that start-up and a scheduler tick do not count, short enough for many repetitions.
constexpr std::int64_t kWarmUpLifetimes = std::int64_t{1} << 20;
constexpr std::int64_t kLifetimes = std::int64_t{1} << 24;

// ---------------------------------------------------------------------------------------------
// Benchmark bodies. DoNotOptimize makes each pointer escape, so counts really go up and down
// in memory, as when a reference is stored somewhere and later dropped; nothing else is added.

template <class Ptr>
void copy_and_destroy(benchmark::State& state, const Ptr& original) {
  // Copies of a pointer that lives in memory, as in a program's data structures: without this,
  // a compiler that inlined the object's creation knows the pointer is not null, and measures
  // that rather than the copy.
  const Ptr* source = &original;
  benchmark::DoNotOptimize(source);
  for (auto _ : state) {
    Ptr copy(*source);
    benchmark::DoNotOptimize(copy);
  }
}

/// One copy per iteration, the heap lock taken and released around each: the strictest way to
/// follow the rule that every use of memlens objects from several threads holds HeapLock.
void copy_and_destroy_locked(benchmark::State& state, const memlens::Ref<SmallObject>& original) {
  const memlens::Ref<SmallObject>* source = &original;
  benchmark::DoNotOptimize(source);
  for (auto _ : state) {
    memlens::HeapLock lock;
    memlens::Ref<SmallObject> copy(*source);
    benchmark::DoNotOptimize(copy);
  }
}

/// `names::batch` copies per iteration under one HeapLock, as a thread that holds the lock
/// while it works on objects (CPython's threads hold the GIL so).
void copy_and_destroy_batched(benchmark::State& state, const memlens::Ref<SmallObject>& original) {
  const memlens::Ref<SmallObject>* source = &original;
  benchmark::DoNotOptimize(source);
  for (auto _ : state) {
    memlens::HeapLock lock;
    for (int i = 0; i < names::batch; ++i) {
      memlens::Ref<SmallObject> copy(*source);
      benchmark::DoNotOptimize(copy);
    }
  }
}

/// The object both threads of a two-thread benchmark copy, made once whichever starts first.
const memlens::Ref<SmallObject>& shared_memlens_object() {
  static const memlens::Ref<SmallObject> object = [] {
    memlens::HeapLock lock;
    return memlens::make<SmallObject>();
  }();
  return object;
}
const std::shared_ptr<SmallValue>& shared_std_object() {
  static const std::shared_ptr<SmallValue> object = std::make_shared<SmallValue>();
  return object;
}

template <class Make>
void make_and_destroy(benchmark::State& state, Make make) {
  for (auto _ : state) {
    auto object = make();
    benchmark::DoNotOptimize(object);
  }
}

template <class WeakPtr>
void lock_and_drop(benchmark::State& state, const WeakPtr& weak) {
  for (auto _ : state) {
    auto strong = weak.lock();
    benchmark::DoNotOptimize(strong);
  }
}

void register_benchmarks() {
  using benchmark::RegisterBenchmark;
  using benchmark::State;

  RegisterBenchmark(names::ref_copy,
                    [](State& state) { copy_and_destroy(state, memlens::make<SmallObject>()); });
  RegisterBenchmark(names::shared_copy,
                    [](State& state) { copy_and_destroy(state, std::make_shared<SmallValue>()); });
#if MEMLENS_HAVE_BOOST
  RegisterBenchmark(names::boost_safe_copy, [](State& state) {
    using Object = BoostObject<boost::thread_safe_counter>;
    copy_and_destroy(state, boost::intrusive_ptr<Object>(new Object));
  });
  RegisterBenchmark(names::boost_unsafe_copy, [](State& state) {
    using Object = BoostObject<boost::thread_unsafe_counter>;
    copy_and_destroy(state, boost::intrusive_ptr<Object>(new Object));
  });
#endif
  RegisterBenchmark(names::naive_copy,
                    [](State& state) { copy_and_destroy(state, NaivePtr(new NaiveObject)); });

  RegisterBenchmark(names::make_small, [](State& state) {
    make_and_destroy(state, [] { return memlens::make<SmallObject>(); });
  });
  RegisterBenchmark(names::make_shared_small, [](State& state) {
    make_and_destroy(state, [] { return std::make_shared<SmallValue>(); });
  });
  RegisterBenchmark(names::new_small, [](State& state) {
    make_and_destroy(state, [] { return std::unique_ptr<SmallValue>(new SmallValue); });
  });
  RegisterBenchmark(names::make_linked, [](State& state) {
    make_and_destroy(state, [] { return memlens::make<LinkedObject>(); });
  });
  RegisterBenchmark(names::make_shared_linked, [](State& state) {
    make_and_destroy(state, [] { return std::make_shared<LinkedValue>(); });
  });
  RegisterBenchmark(names::new_linked, [](State& state) {
    make_and_destroy(state, [] { return std::unique_ptr<LinkedValue>(new LinkedValue); });
  });

  RegisterBenchmark(names::weak_lock, [](State& state) {
    const auto object = memlens::make<SmallObject>();
    lock_and_drop(state, memlens::Weak<SmallObject>(object));
  });
  RegisterBenchmark(names::weak_ptr_lock, [](State& state) {
    const auto object = std::make_shared<SmallValue>();
    lock_and_drop(state, std::weak_ptr<SmallValue>(object));
  });

  // Wall-clock time over the copies both threads made: what a copy costs the program.
  RegisterBenchmark(names::ref_copy_locked,
                    [](State& state) { copy_and_destroy_locked(state, shared_memlens_object()); })
      ->Threads(2)
      ->UseRealTime();
  RegisterBenchmark(names::ref_copy_batched,
                    [](State& state) { copy_and_destroy_batched(state, shared_memlens_object()); })
      ->Threads(2)
      ->UseRealTime();
  RegisterBenchmark(names::shared_copy_threads,
                    [](State& state) { copy_and_destroy(state, shared_std_object()); })
      ->Threads(2)
      ->UseRealTime();
}

// ---------------------------------------------------------------------------------------------
// The type accounting's comparison. The child (`--lifetimes=<loop>`) prints one line: the marker,
// then a flat JSON object.

using memlens_bench::ChildRun;
using memlens_bench::json_field;
using memlens_bench::json_number;
using memlens_bench::kReportMarker;
using memlens_bench::run_child;

/// The loop of make_and_destroy, `n` times; out of line, so both executables run it as a
/// function of its own, aligned alike (-falign-functions in CMakeLists.txt).
template <class Make>
[[gnu::noinline]] void make_and_destroy_n(std::int64_t n, Make make) {
  for (std::int64_t i = 0; i < n; ++i) {
    auto object = make();
    benchmark::DoNotOptimize(object);
  }
}

template <class Make>
int time_lifetimes(Make make) {
  // The pool's pages, the caches and the branch predictors warm, as in a running program.
  make_and_destroy_n(kWarmUpLifetimes, make);
  // std::clock is a system call: it stays out of the real-time window.
  const std::clock_t cpu_start = std::clock();
  const auto start = std::chrono::steady_clock::now();
  make_and_destroy_n(kLifetimes, make);
  const auto end = std::chrono::steady_clock::now();
  const std::clock_t cpu_end = std::clock();
  const double ns = std::chrono::duration<double, std::nano>(end - start).count();
  const double cpu_ns = 1e9 * static_cast<double>(cpu_end - cpu_start) / CLOCKS_PER_SEC;
  // What the accounting saw: every object made, with it; nothing, without.
  std::uint64_t counted = 0;
  for (const auto& type : memlens::sys::type_stats()) counted += type.created;
  const auto per_object = [](double total) { return total / static_cast<double>(kLifetimes); };
  fmt::print("{}{{\"type_stats\": {}, \"ns\": {:.4f}, \"cpu_ns\": {:.4f}, \"counted\": {}}}\n",
             kReportMarker, MEMLENS_TYPE_STATS != 0, per_object(ns), per_object(cpu_ns), counted);
  return 0;
}

/// The objects are those of the benchmarks above, made by the same expressions.
int lifetimes_child(std::string_view loop) {
  if (loop == "int/make") return time_lifetimes([] { return memlens::make<SmallObject>(); });
  if (loop == "int/make_shared") {
    return time_lifetimes([] { return std::make_shared<SmallValue>(); });
  }
  if (loop == "tracked/make") return time_lifetimes([] { return memlens::make<LinkedObject>(); });
  if (loop == "tracked/make_shared") {
    return time_lifetimes([] { return std::make_shared<LinkedValue>(); });
  }
  fmt::print(stderr, "unknown --lifetimes={}\n", loop);
  return 2;
}

/// The executables the comparison runs.
struct Programs {
  std::string self;
  std::string untyped;
};
Programs programs;

/// Keeps the message alive for the State, which keeps only the pointer.
void fail(benchmark::State& state, std::string message) {
  static std::string kept;
  kept = std::move(message);
  state.SkipWithError(kept.c_str());
}

/// Each iteration is one child process; the time reported is its CPU time per object
/// (UseManualTime): the loop is single-threaded and makes no system call, so that is its real
/// time without the waits for a CPU that other processes cause. The real time is a counter.
void measure_lifetimes(benchmark::State& state, const LifetimeCase& c) {
  const bool untyped = c.program == Program::untyped;
  const std::vector<std::string> command = {untyped ? programs.untyped : programs.self,
                                            fmt::format("--lifetimes={}", c.loop)};
  for (auto _ : state) {
    const ChildRun run = run_child(command);
    const auto ns = json_number(run.report, "ns");
    const auto cpu_ns = json_number(run.report, "cpu_ns");
    const auto counted = json_number(run.report, "counted");
    const auto type_stats = json_field(run.report, "type_stats");
    if (!run.exited_zero || !ns || !cpu_ns || !counted || !type_stats) {
      return fail(state, run.problem(command.front()));
    }
    if ((*type_stats == "true") == untyped) {
      return fail(state, fmt::format("{} was built with MEMLENS_TYPE_STATS={}", command.front(),
                                     untyped ? 1 : 0));
    }
    const bool makes_memlens_objects = std::string_view(c.loop).ends_with("/make");
    const double expected =
        makes_memlens_objects && !untyped ? static_cast<double>(kWarmUpLifetimes + kLifetimes) : 0;
    if (*counted != expected) {
      return fail(state, fmt::format("type_stats counted {} objects made, expected {}", *counted,
                                     expected));
    }
    state.SetIterationTime(*cpu_ns * 1e-9);
    state.counters["real_ns"] = *ns;
    state.counters["cpu/real"] = *cpu_ns / *ns;
  }
}

void register_lifetime_benchmarks() {
  for (const LifetimeCase& c : kLifetimeCases) {
    benchmark::RegisterBenchmark(c.name, [c](benchmark::State& s) { measure_lifetimes(s, c); })
        ->UseManualTime()
        ->Iterations(1)
        ->Repetitions(kLifetimeRepetitions)
        ->ReportAggregatesOnly(true)
        ->Unit(benchmark::kNanosecond);
  }
}

// ---------------------------------------------------------------------------------------------
// Memory per object.

std::size_t allocated_bytes = 0;

/// Counts the bytes std::allocate_shared requests. Stateless, so the control block stores no
/// allocator and has the layout make_shared gives it with std::allocator.
template <class T>
struct CountingAllocator {
  using value_type = T;
  CountingAllocator() = default;
  template <class U>
  CountingAllocator(const CountingAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    allocated_bytes += n * sizeof(T);
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  template <class U>
  bool operator==(const CountingAllocator<U>&) const noexcept {
    return true;
  }
};

/// The bytes std::make_shared<T>() requests: the control block and T in one block.
template <class T>
std::size_t make_shared_bytes() {
  allocated_bytes = 0;
  const auto object = std::allocate_shared<T>(CountingAllocator<T>());
  return allocated_bytes;
}

/// The bytes memlens::make<T>() requests, as it computes them: the GcHead of a tracked object
/// (padded to T's alignment), then T itself.
template <class T>
constexpr std::size_t make_bytes() {
  if (!memlens::detail::is_tracked_type<T>) return sizeof(T);
  return std::max(alignof(T), sizeof(memlens::detail::GcHead)) + sizeof(T);
}

// ---------------------------------------------------------------------------------------------
// Collecting the results of this run and printing their ratios.

/// The console output, plus each benchmark's real time in nanoseconds for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // Colors only on a terminal, so logs stay free of escape codes.
  SummaryReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (std::string_view(run.run_name.function_name).starts_with("type_accounting/")) {
        record_lifetime(run);  // timed in a child: this process's CPU time says nothing
        continue;
      }
      if (run.error_occurred) continue;
      const double ns =
          run.GetAdjustedRealTime() * 1e9 / benchmark::GetTimeUnitMultiplier(run.time_unit);
      if (run.run_type == Run::RT_Iteration) {
        iterations_[run.run_name.str()].push_back(ns);
      } else if (run.aggregate_name == "median") {
        medians_[run.run_name.str()] = ns;
      } else {
        continue;
      }
      max_wait_ = std::max(max_wait_, run.GetAdjustedRealTime() / run.GetAdjustedCPUTime() - 1);
    }
  }

  /// The real time per iteration: with --benchmark_repetitions, the median of the repetitions.
  /// nullopt if the benchmark did not run (filtered out, or Boost missing).
  std::optional<double> ns(const std::string& name) const {
    if (auto it = medians_.find(name); it != medians_.end()) return it->second;
    auto it = iterations_.find(name);
    if (it == iterations_.end()) return std::nullopt;
    std::vector<double> times = it->second;
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    return times[times.size() / 2];
  }

  /// The largest share of a benchmark's real time spent waiting for a CPU (0.1 = 10% more real
  /// time than CPU time): other processes competed with this one.
  double max_wait() const { return max_wait_; }

  /// A type accounting case: the medians of its child processes.
  struct Lifetime {
    double cpu_ns = 0;     // CPU time per object
    double real_ns = 0;    // real time per object
    double cpu_share = 1;  // CPU time / real time: below 1, the child waited for a CPU
  };

  /// nullopt if the case did not run or failed.
  std::optional<Lifetime> lifetime(const std::string& name) const {
    const auto it = lifetimes_.find(name);
    if (it == lifetimes_.end() || lifetime_errors_.count(name)) return std::nullopt;
    return it->second;
  }

  /// Why the case failed; empty if it did not.
  std::string lifetime_error(const std::string& name) const {
    const auto it = lifetime_errors_.find(name);
    return it == lifetime_errors_.end() ? std::string() : it->second;
  }

 private:
  void record_lifetime(const Run& run) {
    const std::string& name = run.run_name.function_name;
    if (run.error_occurred) {
      lifetime_errors_[name] = run.error_message;
      return;
    }
    if (run.aggregate_name != "median") return;
    const auto counter = [&](const char* key) {
      const auto it = run.counters.find(key);
      return it == run.counters.end() ? 0 : it->second.value;
    };
    lifetimes_[name] = {
        run.GetAdjustedRealTime() * 1e9 / benchmark::GetTimeUnitMultiplier(run.time_unit),
        counter("real_ns"), counter("cpu/real")};
  }

  std::map<std::string, Lifetime> lifetimes_;
  std::map<std::string, std::string> lifetime_errors_;
  std::map<std::string, std::vector<double>> iterations_;
  std::map<std::string, double> medians_;  // reported alone with --benchmark_report_aggregates_only
  double max_wait_ = 0;
};

std::string verdict(bool met) { return met ? "goal met" : "goal NOT met"; }

/// "9.8x faster" or "1.2x slower": how memlens compares with a peer.
std::string ratio_text(double memlens_ns, double peer_ns) {
  const double ratio = peer_ns / memlens_ns;
  const double shown = ratio >= 1 ? ratio : 1 / ratio;
  return fmt::format("{:.{}f}x {}", shown, shown < 10 ? 2 : 1, ratio >= 1 ? "faster" : "slower");
}

void print_row(std::string_view label, std::string_view figure, std::string_view comparison = "",
               std::string_view goal = "") {
  std::string row = fmt::format("  {:<44} {:>14}  {:<22} {}", label, figure, comparison, goal);
  row.erase(row.find_last_not_of(' ') + 1);
  fmt::print("{}\n", row);
}

void print_time_row(std::string_view label, std::optional<double> ns,
                    std::string_view comparison = "", std::string_view goal = "") {
  print_row(label, ns ? fmt::format("{:.2f} ns", *ns) : "n/a", comparison, goal);
}

/// One row for a peer, with memlens' speed relative to it.
void print_peer_row(std::string_view label, std::optional<double> memlens_ns,
                    std::optional<double> peer_ns, std::string_view goal = "") {
  const std::string comparison =
      memlens_ns && peer_ns ? fmt::format("memlens {}", ratio_text(*memlens_ns, *peer_ns)) : "";
  print_time_row(label, peer_ns, comparison, goal);
}

bool shared_ptr_counts_are_atomic() {
#ifdef MEMLENS_BENCH_HAVE_SINGLE_THREADED
  return !__libc_single_threaded;
#else
  return true;  // older libstdc++ decides on __gthread_active_p, true once linked with pthread
#endif
}

/// "0.63x": a ratio of times (below 1, the first is faster).
std::string times_text(double ratio) { return fmt::format("{:.3f}x", ratio); }

/// The type accounting's comparison: each variant's median over its child processes.
void print_accounting(const SummaryReporter& results) {
  fmt::print(
      "\nMake an object, then destroy it, with the type accounting (sys::type_stats) and without "
      "it (MEMLENS_TYPE_STATS=0):\nCPU time per object, each the median of {} child processes "
      "({}M objects each), interleaved at random\n",
      kLifetimeRepetitions, kLifetimes >> 20);
  const auto row = [](std::string_view label, std::string_view with, std::string_view without,
                      std::string_view shared, std::string_view with_shared,
                      std::string_view without_shared, std::string_view with_without,
                      std::string_view cost, std::string_view goal) {
    std::string text =
        fmt::format("  {:<26} {:>9} {:>9} {:>11}  {:>12} {:>12} {:>11} {:>10}  {}", label, with,
                    without, shared, with_shared, without_shared, with_without, cost, goal);
    text.erase(text.find_last_not_of(' ') + 1);
    fmt::print("{}\n", text);
  };
  row("", "with", "without", "make_shared", "with /", "without /", "with /", "cost", "");
  row("", "", "", "", "make_shared", "make_shared", "without", "per object", "");
  double min_cpu_share = 1;
  for (const char* kind : {"int", "tracked"}) {
    const std::string prefix = fmt::format("type_accounting/{}/", kind);
    const std::string names[] = {prefix + "memlens::make",
                                 prefix + "memlens::make(MEMLENS_TYPE_STATS=0)",
                                 prefix + "std::make_shared"};
    std::optional<SummaryReporter::Lifetime> figures[3];
    std::string problems;
    for (int i = 0; i < 3; ++i) {
      figures[i] = results.lifetime(names[i]);
      if (figures[i]) min_cpu_share = std::min(min_cpu_share, figures[i]->cpu_share);
      if (const std::string error = results.lifetime_error(names[i]); !error.empty()) {
        problems += fmt::format("{}error in {}: {}", problems.empty() ? "" : "; ", names[i], error);
      }
    }
    const auto& [with, without, shared] = figures;
    const auto ns = [](const std::optional<SummaryReporter::Lifetime>& f) {
      return f ? fmt::format("{:.2f} ns", f->cpu_ns) : std::string("n/a");
    };
    const auto over = [](const std::optional<SummaryReporter::Lifetime>& a,
                         const std::optional<SummaryReporter::Lifetime>& b) {
      return a && b ? times_text(a->cpu_ns / b->cpu_ns) : std::string();
    };
    std::string goal = "target with accounting no slower than make_shared: ";
    goal += with && shared ? verdict(with->cpu_ns <= shared->cpu_ns) : "n/a";
    if (!problems.empty()) goal = problems;
    row(std::string_view(kind) == "int" ? "int payload, untracked" : "with a reference, tracked",
        ns(with), ns(without), ns(shared), over(with, shared), over(without, shared),
        over(with, without),
        with && without ? fmt::format("{:+.2f} ns", with->cpu_ns - without->cpu_ns) : "", goal);
  }
  fmt::print(
      "  Ratios are of times: below 1, the first is faster. The cost is what the accounting adds "
      "to an object's life in\n  this loop as the compiler built it: the two counter updates, "
      "and what they change in its inlining of make.\n");
  if (min_cpu_share < 0.9) {
    fmt::print("  Some children waited for a CPU (down to {:.0f}% of their time on one)\n",
               100 * min_cpu_share);
  }
}

void print_summary(const SummaryReporter& results) {
  fmt::print(
      "\nSummary of this run: real time per iteration (the median of repetitions, if any), "
      "memlens compared with each peer\n");
  fmt::print("std::shared_ptr counts are {} here\n",
             shared_ptr_counts_are_atomic() ? "atomic (a thread was started)"
                                            : "NOT atomic: figures flatter shared_ptr");
  if (results.max_wait() > 0.1) {
    fmt::print(
        "The machine was busy (real time up to {:.0f}% over CPU time): figures are noisy; "
        "--benchmark_repetitions=5 reports medians\n",
        100 * results.max_wait());
  }
  fmt::print("\n");

  // Goals are judged only on figures this run produced.
  auto goal = [](std::string_view what, std::optional<bool> met) {
    return fmt::format("target {}: {}", what, met ? verdict(*met) : "n/a");
  };

  fmt::print("Copy a strong reference, then destroy the copy (one thread)\n");
  const auto ref = results.ns(names::ref_copy);
  const auto shared = results.ns(names::shared_copy);
  print_time_row("memlens::Ref", ref, "",
                 goal("<= 1 ns", ref ? std::optional(*ref <= 1.0) : std::nullopt));
  // The fair peer first: a plain count against a plain count.
#if MEMLENS_HAVE_BOOST
  print_peer_row("boost::intrusive_ptr, thread_unsafe_counter", ref,
                 results.ns(names::boost_unsafe_copy));
#else
  print_row("boost::intrusive_ptr", "n/a", "Boost not found");
#endif
  print_peer_row("naive intrusive pointer", ref, results.ns(names::naive_copy));
  print_peer_row(
      "std::shared_ptr (atomic counts)", ref, shared,
      goal(">= 5x faster", ref && shared ? std::optional(*shared >= 5 * *ref) : std::nullopt));
#if MEMLENS_HAVE_BOOST
  print_peer_row("boost::intrusive_ptr, thread_safe_counter", ref,
                 results.ns(names::boost_safe_copy));
#endif

  fmt::print(
      "\nTwo threads copy one object at once (wall-clock time per copy, over both threads' "
      "copies)\n");
  const auto shared_threads =
      results.ns(std::string(names::shared_copy_threads) + names::two_threads);
  const auto locked = results.ns(std::string(names::ref_copy_locked) + names::two_threads);
  const auto batched = results.ns(std::string(names::ref_copy_batched) + names::two_threads);
  print_time_row("std::shared_ptr, copied freely", shared_threads);
  auto print_memlens_row = [&](std::string_view label, std::optional<double> ns) {
    print_time_row(label, ns,
                   ns && shared_threads
                       ? fmt::format("memlens {}", ratio_text(*ns, *shared_threads))
                       : std::string());
  };
  print_memlens_row("memlens::Ref, HeapLock per copy", locked);
  print_memlens_row(fmt::format("memlens::Ref, HeapLock per {} copies", names::batch),
                    batched ? std::optional(*batched / names::batch) : std::nullopt);

  auto print_lifetime = [&](std::string_view title, const char* make, const char* make_shared,
                            const char* new_delete) {
    fmt::print("\n{}\n", title);
    const auto ours = results.ns(make);
    const auto theirs = results.ns(make_shared);
    print_time_row("memlens::make", ours);
    print_peer_row(
        "std::make_shared", ours, theirs,
        goal("no slower", ours && theirs ? std::optional(*ours <= *theirs) : std::nullopt));
    print_peer_row("new + delete (no header, no count)", ours, results.ns(new_delete));
  };
  print_lifetime("Make an object, then destroy it: an int payload, untracked", names::make_small,
                 names::make_shared_small, names::new_small);
  print_lifetime(
      "Make an object, then destroy it: holding a null reference (memlens: tracked by the GC)",
      names::make_linked, names::make_shared_linked, names::new_linked);

  print_accounting(results);

  fmt::print("\nLock a weak reference to a live object, then drop the result\n");
  const auto weak = results.ns(names::weak_lock);
  print_time_row("memlens::Weak::lock", weak);
  print_peer_row("std::weak_ptr::lock", weak, results.ns(names::weak_ptr_lock));

  fmt::print("\nMemory per object (bytes requested from operator new)\n");
  constexpr std::size_t header = sizeof(memlens::Object);
  constexpr std::size_t tracked_header = header + sizeof(memlens::detail::GcHead);
  const std::size_t control_block = make_shared_bytes<LinkedValue>() - sizeof(LinkedValue);
  print_row("memlens header, untracked", fmt::format("{} B", header), "",
            goal("<= 16 B", header <= 16));
  print_row("memlens header, tracked", fmt::format("{} B", tracked_header), "",
            goal("<= 32 B", tracked_header <= 32));
  print_row("std::make_shared control block (measured)", fmt::format("{} B", control_block));
  print_row("int payload: make / make_shared / new",
            fmt::format("{} / {} / {} B", make_bytes<SmallObject>(),
                        make_shared_bytes<SmallValue>(), sizeof(SmallValue)));
  print_row("with a reference: make / make_shared / new",
            fmt::format("{} / {} / {} B", make_bytes<LinkedObject>(),
                        make_shared_bytes<LinkedValue>(), sizeof(LinkedValue)));
  print_row("handles: Ref / shared_ptr",
            fmt::format("{} / {} B", sizeof(memlens::Ref<memlens::Object>),
                        sizeof(std::shared_ptr<int>)));
  print_row(
      "handles: Weak / weak_ptr",
      fmt::format("{} / {} B", sizeof(memlens::Weak<memlens::Object>), sizeof(std::weak_ptr<int>)));
}

}  // namespace

int main(int argc, char** argv) {
  // libstdc++ counts shared_ptr references without atomics while the process has never had a
  // second thread; real programs have threads, so start one and measure the atomic path.
  std::thread([] {}).join();

  constexpr std::string_view child_flag = "--lifetimes=";
  if (argc >= 2 && std::string_view(argv[1]).starts_with(child_flag)) {
    return lifetimes_child(std::string_view(argv[1]).substr(child_flag.size()));
  }
  if (!MEMLENS_TYPE_STATS) {
    fmt::print(stderr,
               "This is the program without type accounting that bench_object_model runs (with "
               "--lifetimes=...); run bench_object_model.\n");
    return 2;
  }
  std::error_code error;
  programs.self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (error) programs.self = argv[0];
  programs.untyped = MEMLENS_BENCH_UNTYPED_EXE;
  if (access(programs.untyped.c_str(), X_OK) != 0) {
    fmt::print(stderr, "{} not found: build the target bench_object_model_untyped\n",
               programs.untyped);
    return 1;
  }

  // The type accounting's variants meet the same load from other processes: their repetitions
  // are interleaved (a later --benchmark_enable_random_interleaving=false turns it off). The
  // benchmarks that run in this process have one repetition each, in random order with them.
  std::vector<char*> args(argv, argv + argc);
  char interleave[] = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave);
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  register_benchmarks();
  register_lifetime_benchmarks();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_summary(reporter);
  return 0;
}
