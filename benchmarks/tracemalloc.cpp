// Benchmarks of memlens::tracemalloc on an allocation-heavy workload: an inverted index of
// generated documents (std::map, std::unordered_map, strings, vectors and small objects made with
// new and delete, about 3M allocations of mixed sizes, from call stacks up to a dozen frames
// deep). The same workload runs untraced, with the allocation hook installed but idle, traced with
// 1 and with 16 frames, sampled (TraceOptions::sample_bytes = 512 KiB, 16 frames), and under
// heaptrack; then the tracer's memory per live traced allocation, the time of take_snapshot and
// Snapshot::statistics on 4M live allocations, and how close the sampled estimates of the
// largest sites of such a live set come to their exact figures. The summary at the end gives
// the ratios measured in this one run and judges the goals.
//
// "Untraced" means no hook at all: CMake builds this file twice, as bench_tracemalloc, which
// links the hook (tracemalloc/track_new.cpp), and as bench_tracemalloc_untraced, which does not.
// Both compile this file alike, so the workload's machine code is the same in both. Since the
// untraced workload cannot run in this process, no variant does: each repetition is a child
// process that runs the workload once and reports its own timings (the other variants run this
// executable itself), and the repetitions of all variants are interleaved at random, so that
// all of them meet the same load from other processes. The whole child is timed as well, from
// spawn to exit, which is how heaptrack (an LD_PRELOAD library and a second process that
// interprets its trace) is compared with the untraced process.

#include "memlens/tracemalloc.hpp"
#include "child_process.hpp"
#include "json_field.hpp"

#include <benchmark/benchmark.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#ifndef MEMLENS_BENCH_UNTRACED_EXE
#error "benchmarks/CMakeLists.txt defines MEMLENS_BENCH_UNTRACED_EXE, the untraced executable"
#endif

namespace {

namespace tracemalloc = memlens::tracemalloc;

// ---------------------------------------------------------------------------------------------
// The workload: batches of documents are written, indexed and queried, then dropped. Every
// function below is kept out of line, as the functions of a real program are when they live in
// many translation units: a traceback of 16 frames then has 16 frames to show.

namespace workload {

constexpr int kBatches = 24;
constexpr std::uint32_t kDocumentsPerBatch = 300;
constexpr int kQueriesPerBatch = 3000;
constexpr std::uint32_t kVocabulary = 8000;
constexpr int kSectionDepth = 3;  // sections nest up to 4 levels

/// xorshift64*: the same numbers in every run, so that every variant allocates alike.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed * 0x9e3779b97f4a7c15ULL + 1) {}
  std::uint64_t next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545f4914f6cdd1dULL;
  }
  std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }

 private:
  std::uint64_t state_;
};

/// A word of the vocabulary; small ids are far more frequent, as common words are in text.
std::uint32_t pick_word(Random& random) { return random.below(random.below(kVocabulary) + 1); }

/// The spelling of word `id`: 3 to 24 letters, so that about 40 % of the words outgrow
/// std::string's inline buffer and allocate.
[[gnu::noinline]] std::string spell(std::uint32_t id) {
  std::uint64_t bits = (std::uint64_t{id} + 1) * 0x9e3779b97f4a7c15ULL;
  std::string word(3 + bits % 22, ' ');
  for (char& c : word) {
    bits = bits * 6364136223846793005ULL + 1442695040888963407ULL;
    c = static_cast<char>('a' + (bits >> 33) % 26);
  }
  return word;
}

struct Section {
  std::string heading;
  std::vector<std::string> words;
  std::vector<std::unique_ptr<Section>> subsections;
};

struct Document {
  std::uint32_t id = 0;
  std::string title;
  std::string text;  // the words joined by spaces, grown by appending
  std::unique_ptr<Section> body;
};

/// One occurrence of a word: a 16-byte object, chained per word.
struct Posting {
  std::uint32_t document;
  std::uint32_t position;
  Posting* next;
};

struct Index {
  Index() = default;
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;
  ~Index() {
    for (auto& [word, head] : postings) {
      while (head != nullptr) delete std::exchange(head, head->next);
    }
  }

  std::vector<std::unique_ptr<Document>> documents;
  std::map<std::string, std::vector<std::uint32_t>> documents_by_word;
  std::unordered_map<std::string, Posting*> postings;
};

[[gnu::noinline]] std::unique_ptr<Section> write_section(Random& random, int depth,
                                                         std::string& text) {
  auto section = std::make_unique<Section>();
  section->heading = spell(pick_word(random)) + ' ' + spell(pick_word(random));
  const std::uint32_t words = 4 + random.below(24);
  for (std::uint32_t i = 0; i < words; ++i) {
    section->words.push_back(spell(pick_word(random)));
    text += section->words.back();
    text += ' ';
  }
  if (depth > 0) {
    for (std::uint32_t i = random.below(4); i > 0; --i) {
      section->subsections.push_back(write_section(random, depth - 1, text));
    }
  }
  return section;
}

[[gnu::noinline]] std::unique_ptr<Document> write_document(Random& random, std::uint32_t id) {
  auto document = std::make_unique<Document>();
  document->id = id;
  document->title = "document " + std::to_string(id) + " on " + spell(pick_word(random));
  document->body = write_section(random, kSectionDepth, document->text);
  return document;
}

[[gnu::noinline]] void index_word(Index& index, const std::string& word, std::uint32_t document,
                                  std::uint32_t position) {
  std::vector<std::uint32_t>& documents = index.documents_by_word[word];
  if (documents.empty() || documents.back() != document) documents.push_back(document);
  Posting*& head = index.postings[word];
  head = new Posting{document, position, head};
}

[[gnu::noinline]] void index_section(Index& index, const Section& section, std::uint32_t document,
                                     std::uint32_t& position) {
  for (const std::string& word : section.words) index_word(index, word, document, position++);
  for (const auto& subsection : section.subsections) {
    index_section(index, *subsection, document, position);
  }
}

[[gnu::noinline]] void add_document(Index& index, Random& random, std::uint32_t id) {
  auto document = write_document(random, id);
  std::uint32_t position = 0;
  index_section(index, *document->body, id, position);
  index.documents.push_back(std::move(document));
}

[[gnu::noinline]] std::unique_ptr<Index> build_index(std::uint64_t seed) {
  Random random(seed);
  auto index = std::make_unique<Index>();
  for (std::uint32_t id = 0; id < kDocumentsPerBatch; ++id) add_document(*index, random, id);
  return index;
}

/// The documents holding two words, the positions of the first word in them, and a line of
/// report: temporaries, as a query makes.
[[gnu::noinline]] std::uint64_t query(const Index& index, Random& random) {
  const std::string first = spell(pick_word(random));
  const std::string second = spell(pick_word(random));
  const auto a = index.documents_by_word.find(first);
  const auto b = index.documents_by_word.find(second);
  if (a == index.documents_by_word.end() || b == index.documents_by_word.end()) return 1;
  std::vector<std::uint32_t> both;
  std::set_intersection(a->second.begin(), a->second.end(), b->second.begin(), b->second.end(),
                        std::back_inserter(both));
  std::set<std::uint32_t> positions;
  int seen = 0;
  for (const Posting* p = index.postings.at(first); p != nullptr && seen < 32; p = p->next) {
    ++seen;
    if (std::binary_search(both.begin(), both.end(), p->document)) positions.insert(p->position);
  }
  const std::string report =
      first + " & " + second + ": " + std::to_string(both.size()) + " documents";
  return both.size() + positions.size() + report.size();
}

[[gnu::noinline]] std::uint64_t run_batch(std::uint64_t seed) {
  const auto index = build_index(seed);
  Random random(seed ^ 0x5bd1e995);
  std::uint64_t checksum = index->documents_by_word.size();
  for (int i = 0; i < kQueriesPerBatch; ++i) checksum += query(*index, random);
  return checksum;
}

/// The whole workload; the checksum shows that every variant did the same work.
[[gnu::noinline]] std::uint64_t run() {
  std::uint64_t checksum = 0;
  for (int batch = 0; batch < kBatches; ++batch) {
    checksum = checksum * 31 + run_batch(static_cast<std::uint64_t>(batch) + 1);
  }
  return checksum;
}

/// Live allocations one index holds (measured with g++ 12 and libstdc++; the figures use the
/// count each snapshot finds, this only chooses how many indexes make the live set).
constexpr std::size_t kLiveAllocationsPerIndex = 87'600;

/// Indexes kept alive: about `allocations` live allocations.
[[gnu::noinline]] std::vector<std::unique_ptr<Index>> build_live_set(std::size_t allocations) {
  std::vector<std::unique_ptr<Index>> indexes;
  const std::size_t count = (allocations + kLiveAllocationsPerIndex / 2) / kLiveAllocationsPerIndex;
  for (std::size_t i = 0; i < std::max<std::size_t>(count, 1); ++i) {
    indexes.push_back(build_index(i + 1));
  }
  return indexes;
}

}  // namespace workload

// ---------------------------------------------------------------------------------------------
// The child processes: `--workload [--nframe=N [--sample-bytes=B]]` runs the workload once;
// `--live-set=N --nframe=N` builds about N live allocations and measures the tracer on them;
// `--accuracy=N --sample-bytes=B` builds the same live set traced exactly, then sampled, and
// compares the largest sites. Each prints one line: the marker, then a flat JSON object
// (child_process.hpp reads it).

using memlens_bench::ChildRun;
using memlens_bench::find_program;
using memlens_bench::json_field;
using memlens_bench::json_number;
using memlens_bench::kReportMarker;
using memlens_bench::run_child;

/// Whether this program's operator new feeds the tracer (bench_tracemalloc) or not
/// (bench_tracemalloc_untraced).
bool hook_installed() {
  tracemalloc::start(1);
  void* probe = ::operator new(64);  // a call, not a new-expression: never elided
  benchmark::DoNotOptimize(probe);
  const bool seen = tracemalloc::get_traced_memory().current >= 64;
  ::operator delete(probe);
  tracemalloc::stop();
  return seen;
}

/// The times of one call: real, and CPU (user + system) of this process.
struct Timed {
  double seconds = 0;
  double cpu_seconds = 0;
};

template <class Call>
Timed timed(Call&& call) {
  // std::clock is a system call: it stays out of the real-time window.
  const std::clock_t cpu_start = std::clock();
  const auto start = std::chrono::steady_clock::now();
  call();
  const auto end = std::chrono::steady_clock::now();
  const std::clock_t cpu_end = std::clock();
  return {std::chrono::duration<double>(end - start).count(),
          static_cast<double>(cpu_end - cpu_start) / CLOCKS_PER_SEC};
}

int workload_child(int nframe, std::size_t sample_bytes) {
  const bool hooked = hook_installed();
  if (nframe > 0 && !hooked) {
    fmt::print(stderr, "tracing needs the hook: run bench_tracemalloc, not this program\n");
    return 1;
  }
  if (nframe > 0) tracemalloc::start(nframe, {.sample_bytes = sample_bytes});
  std::uint64_t checksum = 0;
  const Timed t = timed([&] { checksum = workload::run(); });
  tracemalloc::stop();
  fmt::print(
      "{}{{\"hooked\": {}, \"nframe\": {}, \"seconds\": {:.6f}, \"cpu_seconds\": {:.6f}, "
      "\"checksum\": {}}}\n",
      kReportMarker, hooked, nframe, t.seconds, t.cpu_seconds, checksum);
  return 0;
}

int live_set_child(std::size_t allocations, int nframe) {
  if (!hook_installed()) {
    fmt::print(stderr, "the live set is traced through the hook: run bench_tracemalloc\n");
    return 1;
  }
  tracemalloc::start(nframe);
  const std::size_t baseline = tracemalloc::get_tracemalloc_memory();
  std::vector<std::unique_ptr<workload::Index>> live;
  const Timed build = timed([&] { live = workload::build_live_set(allocations); });
  const std::size_t tracer_memory = tracemalloc::get_tracemalloc_memory();

  // The first statistics() call on a snapshot symbolizes its tracebacks (addr2line), and this
  // process has symbolized nothing before: the cold cost a user meets.
  tracemalloc::Snapshot snapshot;
  std::vector<tracemalloc::Statistic> by_traceback, by_line;
  const Timed take = timed([&] { snapshot = tracemalloc::take_snapshot(); });
  const Timed traceback = timed([&] { by_traceback = snapshot.statistics("traceback"); });
  const Timed lineno = timed([&] { by_line = snapshot.statistics("lineno"); });
  tracemalloc::stop();

  std::size_t traces = 0;
  for (const auto& s : by_traceback) traces += s.count;
  std::string largest = "none";
  if (!by_line.empty()) {
    const tracemalloc::Statistic& top = by_line.front();
    largest = tracemalloc::to_string(top);  // "<file>:<line>: size=...", as Python prints it
    if (!top.traceback.empty()) {           // the file's name without its directory
      const std::string& file = top.traceback.front().filename;
      if (largest.starts_with(file)) {
        largest.replace(0, file.size(), std::filesystem::path(file).filename().string());
      }
    }
    std::replace(largest.begin(), largest.end(), '"', '\'');
  }
  fmt::print(
      "{}{{\"live\": {}, \"tracer_bytes\": {}, \"build_seconds\": {:.6f}, \"snapshot_seconds\": "
      "{:.6f}, \"snapshot_cpu_seconds\": {:.6f}, \"traceback_seconds\": {:.6f}, "
      "\"lineno_seconds\": {:.6f}, \"tracebacks\": {}, \"lines\": {}, \"largest\": \"{}\"}}\n",
      kReportMarker, traces, tracer_memory - baseline, build.seconds, take.seconds,
      take.cpu_seconds, traceback.seconds, lineno.seconds, by_traceback.size(), by_line.size(),
      largest);
  return 0;
}

/// The "lineno" statistics of the live set of about `allocations`, traced with `options`.
std::vector<tracemalloc::Statistic> live_set_statistics(std::size_t allocations,
                                                        tracemalloc::TraceOptions options) {
  tracemalloc::start(1, options);
  auto live = workload::build_live_set(allocations);
  auto statistics = tracemalloc::take_snapshot().statistics("lineno");
  tracemalloc::stop();
  return statistics;
}

/// The largest sites of the live set, exact and estimated from sampling: the largest relative
/// error of the estimated bytes of the kAccuracySites largest sites (by their exact bytes).
constexpr std::size_t kAccuracySites = 5;

int accuracy_child(std::size_t allocations, std::size_t sample_bytes) {
  if (!hook_installed()) {
    fmt::print(stderr, "the live set is traced through the hook: run bench_tracemalloc\n");
    return 1;
  }
  // The workload is deterministic: both runs allocate the same blocks at the same lines.
  const auto exact = live_set_statistics(allocations, {});
  const auto sampled = live_set_statistics(allocations, {.sample_bytes = sample_bytes});
  std::map<std::pair<std::string, int>, std::size_t> estimates;
  for (const auto& s : sampled) {
    if (!s.traceback.empty()) {
      estimates[{s.traceback.front().filename, s.traceback.front().lineno}] += s.size;
    }
  }
  double max_error = 0;
  std::size_t smallest = 0;  // the exact bytes of the smallest of the sites compared
  std::string sites;
  for (std::size_t i = 0; i < std::min(kAccuracySites, exact.size()); ++i) {
    const auto& s = exact[i];
    if (s.traceback.empty()) continue;
    const auto it = estimates.find({s.traceback.front().filename, s.traceback.front().lineno});
    const double estimate = it == estimates.end() ? 0 : static_cast<double>(it->second);
    const double error = std::abs(estimate / static_cast<double>(s.size) - 1);
    max_error = std::max(max_error, error);
    smallest = s.size;
    sites += fmt::format("{}{}:{} {:.1f} MiB {:+.1f}%", sites.empty() ? "" : ", ",
                         std::filesystem::path(s.traceback.front().filename).filename().string(),
                         s.traceback.front().lineno, static_cast<double>(s.size) / (1 << 20),
                         100 * (estimate / static_cast<double>(s.size) - 1));
  }
  std::size_t total = 0;
  for (const auto& s : exact) total += s.size;
  fmt::print(
      "{}{{\"max_error\": {:.6f}, \"total_bytes\": {}, \"smallest_site_bytes\": {}, "
      "\"sites\": \"{}\"}}\n",
      kReportMarker, max_error, total, smallest, sites);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// heaptrack's files.

/// A fresh directory for heaptrack's files, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "memlens_bench_heaptrack.XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// Empty if the directory could not be made.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// The benchmarks. Each iteration is one child process; the time reported is the child's own
// measurement (UseManualTime), and the counters carry its other figures. The CPU column of the
// console is this process's, which only waits: the children's CPU times are in the counters.

/// What the driver knows about its children.
struct Programs {
  std::string self;       // bench_tracemalloc, with the hook
  std::string untraced;   // bench_tracemalloc_untraced
  std::string heaptrack;  // empty: not installed
  std::string heaptrack_version;
  std::unique_ptr<TempDir> heaptrack_dir;
  std::string heaptrack_file;  // kept from the first heaptrack run, to count its allocations
  std::optional<std::uint64_t> checksum;  // the workload's, the same in every variant
};

Programs programs;

enum class Runner { untraced, self, heaptrack };

struct WorkloadCase {
  const char* name;
  const char* label;
  Runner runner;
  int nframe;  // 0: not tracing
  int repetitions;
  std::size_t sample_bytes;  // TraceOptions::sample_bytes
};

/// The sampled variants' mean: one sample per 512 KiB allocated, on average.
constexpr std::size_t kSampleBytes = 512 * 1024;

constexpr WorkloadCase kWorkloadCases[] = {
    {"workload/untraced", "untraced (no hook)", Runner::untraced, 0, 15, 0},
    {"workload/idle", "hook installed, idle", Runner::self, 0, 15, 0},
    {"workload/1_frame", "tracing, 1 frame", Runner::self, 1, 7, 0},
    {"workload/16_frames", "tracing, 16 frames", Runner::self, 16, 7, 0},
    {"workload/sampled_512KiB", "sampled 512 KiB, 16 fr.", Runner::self, 16, 11, kSampleBytes},
    {"workload/heaptrack", "heaptrack", Runner::heaptrack, 0, 5, 0},
};

/// The live set whose largest sites are estimated from sampling and compared with the exact.
constexpr std::size_t kAccuracyAllocations = 4'000'000;
constexpr int kAccuracyRepetitions = 3;

struct LiveSetCase {
  const char* name;
  const char* label;
  std::size_t allocations;
  int nframe;
  bool snapshot_goals;  // the take_snapshot and statistics goals apply (4M live allocations)
  bool memory_goal;     // the 24-byte goal applies (1 frame)
};

constexpr std::size_t kMillion = 1'000'000;

constexpr LiveSetCase kLiveSetCases[] = {
    {"live_set/1M/1_frame", "~1M live, 1 frame", kMillion, 1, false, true},
    {"live_set/4M/1_frame", "~4M live, 1 frame", 4 * kMillion, 1, true, true},
    {"live_set/4M/16_frames", "~4M live, 16 frames", 4 * kMillion, 16, true, false},
};
constexpr int kLiveSetRepetitions = 3;

/// Keeps the message alive for the State, which keeps only the pointer.
void fail(benchmark::State& state, std::string message) {
  static std::string kept;
  kept = std::move(message);
  state.SkipWithError(kept.c_str());
}

/// Keeps the first heaptrack file, to count its allocations later; deletes the others.
void tidy_heaptrack_dir() {
  const std::string& dir = programs.heaptrack_dir->path();
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ignored)) {
    if (entry.path() == programs.heaptrack_file) continue;
    if (programs.heaptrack_file.empty() && entry.path().stem() == "run") {
      programs.heaptrack_file = dir + "/counted" + entry.path().extension().string();
      std::filesystem::rename(entry.path(), programs.heaptrack_file, ignored);
      continue;
    }
    std::filesystem::remove(entry.path(), ignored);
  }
}

void measure_workload(benchmark::State& state, const WorkloadCase& c) {
  std::vector<std::string> command;
  switch (c.runner) {
    case Runner::untraced:
      command = {programs.untraced, "--workload"};
      break;
    case Runner::self:
      command = {programs.self, "--workload", fmt::format("--nframe={}", c.nframe),
                 fmt::format("--sample-bytes={}", c.sample_bytes)};
      break;
    case Runner::heaptrack:
      command = {programs.heaptrack, "-o", programs.heaptrack_dir->path() + "/run",
                 programs.untraced, "--workload"};
      break;
  }
  for (auto _ : state) {
    const ChildRun run = run_child(command);
    if (c.runner == Runner::heaptrack) tidy_heaptrack_dir();
    const auto seconds = json_number(run.report, "seconds");
    const auto cpu_seconds = json_number(run.report, "cpu_seconds");
    const auto checksum = json_field(run.report, "checksum");
    const auto hooked = json_field(run.report, "hooked");
    if (!run.exited_zero || !seconds || !cpu_seconds || !checksum || !hooked) {
      return fail(state, run.problem(command.front()));
    }
    if ((*hooked == "true") != (c.runner == Runner::self)) {
      return fail(state, fmt::format("{} has{} the allocation hook", command.front(),
                                     *hooked == "true" ? "" : " not"));
    }
    const auto sum = std::strtoull(checksum->c_str(), nullptr, 10);
    if (!programs.checksum) programs.checksum = sum;
    if (sum != *programs.checksum) {
      return fail(state, fmt::format("the workload's checksum is {}, {} elsewhere: not the same "
                                     "work in every variant",
                                     sum, *programs.checksum));
    }
    state.SetIterationTime(*seconds);
    state.counters["cpu_s"] = *cpu_seconds;
    state.counters["process_s"] = run.seconds;
    state.counters["process_cpu_s"] = run.cpu_seconds;
    state.counters["cpu/real"] = *cpu_seconds / *seconds;
  }
}

/// The largest statistics("lineno") entry of a live set, as its child printed it.
std::map<std::string, std::string> largest_line;

/// Each accuracy run's sites: file:line, exact MiB, error of the estimate.
std::vector<std::string> accuracy_sites;

void measure_live_set(benchmark::State& state, const LiveSetCase& c) {
  const std::vector<std::string> command = {programs.self,
                                            fmt::format("--live-set={}", c.allocations),
                                            fmt::format("--nframe={}", c.nframe)};
  for (auto _ : state) {
    const ChildRun run = run_child(command);
    const char* keys[] = {"live",
                          "tracer_bytes",
                          "snapshot_seconds",
                          "snapshot_cpu_seconds",
                          "traceback_seconds",
                          "lineno_seconds",
                          "tracebacks"};
    std::map<std::string, double> figures;
    for (const char* key : keys) {
      const auto value = json_number(run.report, key);
      if (!run.exited_zero || !value) return fail(state, run.problem(command.front()));
      figures[key] = *value;
    }
    state.SetIterationTime(figures["snapshot_seconds"]);
    state.counters["live"] = figures["live"];
    state.counters["B/alloc"] = figures["tracer_bytes"] / figures["live"];
    state.counters["snapshot_s"] = figures["snapshot_seconds"];
    state.counters["snapshot_cpu_s"] = figures["snapshot_cpu_seconds"];
    state.counters["traceback_s"] = figures["traceback_seconds"];
    state.counters["lineno_s"] = figures["lineno_seconds"];
    state.counters["tracebacks"] = figures["tracebacks"];
    largest_line[c.name] = json_field(run.report, "largest").value_or("");
  }
}

void measure_accuracy(benchmark::State& state) {
  const std::vector<std::string> command = {programs.self,
                                            fmt::format("--accuracy={}", kAccuracyAllocations),
                                            fmt::format("--sample-bytes={}", kSampleBytes)};
  for (auto _ : state) {
    const ChildRun run = run_child(command);
    const auto max_error = json_number(run.report, "max_error");
    const auto total = json_number(run.report, "total_bytes");
    const auto smallest = json_number(run.report, "smallest_site_bytes");
    if (!run.exited_zero || !max_error || !total || !smallest) {
      return fail(state, run.problem(command.front()));
    }
    state.SetIterationTime(run.seconds);
    state.counters["max_err"] = *max_error;
    state.counters["live_MiB"] = *total / (1 << 20);
    state.counters["site_MiB"] = *smallest / (1 << 20);
    accuracy_sites.push_back(json_field(run.report, "sites").value_or(""));
  }
}

void register_benchmarks() {
  for (const WorkloadCase& c : kWorkloadCases) {
    if (c.runner == Runner::heaptrack && programs.heaptrack.empty()) continue;
    benchmark::RegisterBenchmark(c.name, [c](benchmark::State& s) { measure_workload(s, c); })
        ->UseManualTime()
        ->Iterations(1)
        ->Repetitions(c.repetitions)
        ->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMillisecond);
  }
  for (const LiveSetCase& c : kLiveSetCases) {
    benchmark::RegisterBenchmark(c.name, [c](benchmark::State& s) { measure_live_set(s, c); })
        ->UseManualTime()
        ->Iterations(1)
        ->Repetitions(kLiveSetRepetitions)
        ->ReportAggregatesOnly(true)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("accuracy/4M/sampled_512KiB", measure_accuracy)
      ->UseManualTime()
      ->Iterations(1)
      ->Repetitions(kAccuracyRepetitions)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMillisecond);
}

// ---------------------------------------------------------------------------------------------
// Gathering the results of this run.

/// One case's medians: the time reported (the child's own measurement) and the counters.
struct Figures {
  double seconds = 0;
  std::map<std::string, double> counters;

  double counter(const std::string& name) const {
    const auto it = counters.find(name);
    return it == counters.end() ? 0 : it->second;
  }
};

/// The console output, plus each case's medians for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // Colors only on a terminal, so logs stay free of escape codes.
  SummaryReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) failed_[run.run_name.function_name] = run.error_message;
      if (run.error_occurred || run.aggregate_name != "median") continue;
      Figures& f = figures_[run.run_name.function_name];
      f.seconds = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
      for (const auto& [name, counter] : run.counters) f.counters[name] = counter.value;
    }
  }

  /// The case's medians, or nullptr if it did not run or failed.
  const Figures* figures(const std::string& name) const {
    if (failed_.count(name)) return nullptr;
    const auto it = figures_.find(name);
    return it == figures_.end() ? nullptr : &it->second;
  }

  /// Why the case failed; empty if it did not.
  std::string failure(const std::string& name) const {
    const auto it = failed_.find(name);
    return it == failed_.end() ? std::string() : it->second;
  }

 private:
  std::map<std::string, Figures> figures_;
  std::map<std::string, std::string> failed_;
};

// ---------------------------------------------------------------------------------------------
// The summary.

std::string verdict(bool met) { return met ? "goal met" : "goal NOT met"; }

std::string seconds_text(double seconds) { return fmt::format("{:.3f} s", seconds); }

std::string ratio_text(double ratio) { return fmt::format("{:.{}f}x", ratio, ratio < 10 ? 2 : 1); }

std::string millions(double count) { return fmt::format("{:.2f}M", count / 1e6); }

/// The number heaptrack_print gives for `label` ("calls to allocation functions") in the file
/// the first heaptrack run left; nullopt if it cannot tell.
std::optional<double> heaptrack_count(std::string_view label) {
  if (programs.heaptrack_file.empty()) return std::nullopt;
  const auto print = find_program("heaptrack_print");
  if (!print) return std::nullopt;
  const ChildRun run =
      run_child({*print, "-f", programs.heaptrack_file, "--print-peaks=0", "--print-allocators=0",
                 "--print-temporary=0", "--print-leaks=0"});
  const auto at = run.output.find(fmt::format("{}: ", label));
  if (!run.exited_zero || at == std::string::npos) return std::nullopt;
  return std::strtod(run.output.c_str() + at + label.size() + 2, nullptr);
}

struct Load {
  double start = 0;
  double end = 0;
};

void print_summary(const SummaryReporter& results, const Load& load) {
  fmt::print(
      "\nSummary of this run: medians of the repetitions, each repetition a process of its own\n");
  const unsigned cpus = std::thread::hardware_concurrency();
  fmt::print("Load average (1 min): {:.2f} at the start, {:.2f} at the end, on {} CPUs\n",
             load.start, load.end, cpus);
  if (std::max(load.start, load.end) > 1.5) {
    fmt::print(
        "Other processes were running (this program's children add about 1, heaptrack about "
        "2): figures are noisy, compare several runs\n");
  }
  double min_cpu_share = 1;
  for (const WorkloadCase& c : kWorkloadCases) {
    if (c.runner == Runner::heaptrack) continue;  // waits for its interpreter by design
    if (const Figures* f = results.figures(c.name)) {
      min_cpu_share = std::min(min_cpu_share, f->counter("cpu/real"));
    }
  }
  if (min_cpu_share < 0.9) {
    fmt::print("Some workload runs waited for a CPU (down to {:.0f}% of their time on one)\n",
               100 * min_cpu_share);
  }
  if (const auto calls = heaptrack_count("calls to allocation functions")) {
    fmt::print("The workload makes {} allocations (heaptrack's count, process start-up included)\n",
               millions(*calls));
  }

  bool all_met = true;
  bool all_judged = true;
  const auto judge = [&](const std::string& goal, std::optional<bool> met) {
    if (!met) {
      all_judged = false;
      return fmt::format("{}: n/a", goal);
    }
    all_met = all_met && *met;
    return fmt::format("{}: {}", goal, verdict(*met));
  };

  // The workload.
  fmt::print("\n  {:<22} {:^31}   {:^31}\n", "", "the workload, timed inside it",
             "the whole process, spawn to exit");
  const auto row = [](std::string_view label, std::string_view a, std::string_view b,
                      std::string_view c, std::string_view d, std::string_view e,
                      std::string_view f, std::string_view goal) {
    std::string text = fmt::format("  {:<22} {:>9} {:>10} {:>10}   {:>9} {:>10} {:>10}   {}", label,
                                   a, b, c, d, e, f, goal);
    text.erase(text.find_last_not_of(' ') + 1);
    fmt::print("{}\n", text);
  };
  row("", "real", "ratio", "CPU ratio", "real", "ratio", "CPU ratio", "goal (CPU ratio)");
  const Figures* untraced = results.figures("workload/untraced");
  for (const WorkloadCase& c : kWorkloadCases) {
    std::string label = c.label;
    if (c.runner == Runner::heaptrack) {
      if (programs.heaptrack.empty()) {
        row(label, "skipped", "", "", "", "", "", "heaptrack is not installed (not in PATH)");
        continue;
      }
      label = programs.heaptrack_version.empty() ? label : programs.heaptrack_version;
    }
    const Figures* f = results.figures(c.name);
    std::string goal;
    std::optional<double> ratio;
    if (f && untraced) ratio = f->counter("cpu_s") / untraced->counter("cpu_s");
    switch (c.runner != Runner::self ? -1 : c.sample_bytes != 0 ? -2 : c.nframe) {
      case -2:
        goal = judge("<= 1.10x", ratio ? std::optional(*ratio <= 1.10) : std::nullopt);
        break;
      case 0:
        goal = judge("<= 1.05x", ratio ? std::optional(*ratio <= 1.05) : std::nullopt);
        break;
      case 1:
        goal = judge("<= 1.3x", ratio ? std::optional(*ratio <= 1.3) : std::nullopt);
        break;
      case 16:
        goal = judge("<= 2x", ratio ? std::optional(*ratio <= 2) : std::nullopt);
        break;
      default:
        if (c.runner == Runner::heaptrack) goal = "the issue measured 7.1x";
    }
    if (!f) {
      const std::string failure = results.failure(c.name);
      row(label, "n/a", "", "", "", "", "", failure.empty() ? goal : "error: " + failure);
      continue;
    }
    const auto over = [](double value, double reference) { return ratio_text(value / reference); };
    if (!untraced) {
      row(label, seconds_text(f->seconds), "", "", seconds_text(f->counter("process_s")), "", "",
          goal);
      continue;
    }
    row(label, seconds_text(f->seconds), over(f->seconds, untraced->seconds),
        over(f->counter("cpu_s"), untraced->counter("cpu_s")),
        seconds_text(f->counter("process_s")),
        over(f->counter("process_s"), untraced->counter("process_s")),
        over(f->counter("process_cpu_s"), untraced->counter("process_cpu_s")), goal);
  }
  fmt::print(
      "  Ratios to the untraced run. The goals judge the workload's CPU time: the workload is "
      "single-threaded, so\n  that is its real time on an idle machine, without the waits for a "
      "CPU that other processes cause.\n  Heaptrack's CPU time counts its library inside the "
      "process and, for the whole process, its interpreter.\n");
  const Figures* heaptrack = results.figures("workload/heaptrack");
  const Figures* sixteen = results.figures("workload/16_frames");
  if (untraced && heaptrack && sixteen) {
    fmt::print(
        "  Overhead over the untraced process, spawn to exit: heaptrack +{:.0f}%, memlens with 16 "
        "frames +{:.0f}%\n",
        100 * (heaptrack->counter("process_s") / untraced->counter("process_s") - 1),
        100 * (sixteen->counter("process_s") / untraced->counter("process_s") - 1));
  }

  const Figures* sampled = results.figures("workload/sampled_512KiB");
  if (untraced && sampled && sixteen) {
    fmt::print(
        "  Sampled at 512 KiB with 16 frames: {} the untraced CPU time, against {} tracing every "
        "allocation\n  with 16 frames (CPython's sampled mode: 1.23x)\n",
        ratio_text(sampled->counter("cpu_s") / untraced->counter("cpu_s")),
        ratio_text(sixteen->counter("cpu_s") / untraced->counter("cpu_s")));
  }

  // The live sets.
  fmt::print(
      "\n  Live traced allocations, kept by the workload's indexes   (CPython: 48.8 B per "
      "allocation; take_snapshot\n  and statistics 2.7-4.9 s, up to 75 s)\n");
  const auto live_row = [](std::string_view label, std::string_view live, std::string_view bytes,
                           std::string_view snapshot, std::string_view traceback,
                           std::string_view lineno, std::string_view tracebacks) {
    std::string text = fmt::format("  {:<22} {:>7} {:>10} {:>14} {:>14} {:>14} {:>11}", label, live,
                                   bytes, snapshot, traceback, lineno, tracebacks);
    text.erase(text.find_last_not_of(' ') + 1);
    fmt::print("{}\n", text);
  };
  live_row("", "live", "tracer B", "take_snapshot", "statistics", "statistics", "tracebacks");
  live_row("", "allocs", "per alloc", "", "(traceback)", "(lineno)", "");
  std::vector<std::string> goals;
  for (const LiveSetCase& c : kLiveSetCases) {
    const Figures* f = results.figures(c.name);
    if (!f) {
      const std::string failure = results.failure(c.name);
      live_row(c.label, "n/a", "", "", "", "", failure.empty() ? "" : "error: " + failure);
      all_judged = false;
      continue;
    }
    const double bytes = f->counter("B/alloc");
    live_row(c.label, millions(f->counter("live")), fmt::format("{:.1f} B", bytes),
             seconds_text(f->seconds), seconds_text(f->counter("traceback_s")),
             seconds_text(f->counter("lineno_s")), fmt::format("{:.0f}", f->counter("tracebacks")));
    if (c.memory_goal) {
      goals.push_back(fmt::format("{}: {:.1f} B per allocation, {}", c.label, bytes,
                                  judge("<= 24 B", bytes <= 24)));
    }
    if (c.snapshot_goals) {
      goals.push_back(fmt::format("{}: take_snapshot {}, statistics(\"traceback\") {}", c.label,
                                  judge("<= 0.5 s", f->seconds <= 0.5),
                                  judge("<= 1 s", f->counter("traceback_s") <= 1)));
    }
  }
  fmt::print(
      "  statistics(\"traceback\") is the snapshot's first call: it symbolizes the tracebacks "
      "(addr2line, in a\n  process that has symbolized nothing before); statistics(\"lineno\") "
      "follows on the same snapshot.\n");
  for (const std::string& goal : goals) fmt::print("  {}\n", goal);
  for (auto c = std::rbegin(kLiveSetCases); c != std::rend(kLiveSetCases); ++c) {
    if (const auto it = largest_line.find(c->name); it != largest_line.end()) {
      fmt::print("  The largest \"lineno\" statistic ({}): {}\n", c->label, it->second);
      break;
    }
  }

  // The accuracy of the sampled estimates.
  fmt::print(
      "\n  Sampled estimates (512 KiB) of the {} largest \"lineno\" sites of a ~4M live set\n",
      kAccuracySites);
  if (const Figures* f = results.figures("accuracy/4M/sampled_512KiB")) {
    const double error = f->counter("max_err");
    const double site = f->counter("site_MiB");
    fmt::print(
        "  live {:.0f} MiB; the smallest of the sites {:.1f} MiB, about {:.0f} samples of small "
        "blocks, so a relative\n  standard deviation of about {:.1f}% for it\n",
        f->counter("live_MiB"), site, site * 2, 100 / std::sqrt(std::max(site * 2, 1.0)));
    for (const std::string& sites : accuracy_sites) fmt::print("  {}\n", sites);
    fmt::print("  Largest relative error (median of {} runs): {:.1f}%, {}\n", kAccuracyRepetitions,
               100 * error, judge("<= 10%", error <= 0.10));
  } else {
    const std::string failure = results.failure("accuracy/4M/sampled_512KiB");
    fmt::print("  n/a{}\n", failure.empty() ? "" : ": error: " + failure);
    all_judged = false;
  }

  fmt::print("\nGoals: {}\n", !all_met      ? "NOT all met"
                              : !all_judged ? "all that could be judged met"
                                            : "all met");
}

/// The first line heaptrack --version prints ("heaptrack 1.4.0").
std::string program_version(const std::string& program) {
  const ChildRun run = run_child({program, "--version"});
  std::string line = run.output.substr(0, run.output.find('\n'));
  return run.exited_zero ? line : std::string();
}

double load_average() {
  double load = 0;
  return getloadavg(&load, 1) == 1 ? load : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view mode = argc >= 2 ? argv[1] : "";
  if (mode == "--workload" || mode.starts_with("--live-set=") || mode.starts_with("--accuracy=")) {
    int nframe = 0;
    std::size_t sample_bytes = 0;
    for (int i = 2; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg.starts_with("--nframe=")) nframe = std::atoi(argv[i] + std::strlen("--nframe="));
      if (arg.starts_with("--sample-bytes=")) {
        sample_bytes = std::strtoull(argv[i] + std::strlen("--sample-bytes="), nullptr, 10);
      }
    }
    if (mode == "--workload") return workload_child(nframe, sample_bytes);
    if (mode.starts_with("--accuracy=")) {
      return accuracy_child(std::strtoull(argv[1] + std::strlen("--accuracy="), nullptr, 10),
                            sample_bytes);
    }
    const auto allocations = std::strtoull(argv[1] + std::strlen("--live-set="), nullptr, 10);
    return live_set_child(allocations, nframe > 0 ? nframe : 1);
  }
  if (!hook_installed()) {
    fmt::print(stderr,
               "This is the untraced workload that bench_tracemalloc runs (with --workload); "
               "run bench_tracemalloc.\n");
    return 2;
  }

  std::error_code error;
  programs.self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (error) programs.self = argv[0];
  programs.untraced = MEMLENS_BENCH_UNTRACED_EXE;
  if (access(programs.untraced.c_str(), X_OK) != 0) {
    fmt::print(stderr, "{} not found: build the target bench_tracemalloc_untraced\n",
               programs.untraced);
    return 1;
  }
  if (const auto heaptrack = find_program("heaptrack")) {
    programs.heaptrack_dir = std::make_unique<TempDir>();
    if (programs.heaptrack_dir->path().empty()) {
      fmt::print(stderr, "heaptrack skipped: could not make a temporary directory\n");
    } else {
      programs.heaptrack = *heaptrack;
      programs.heaptrack_version = program_version(*heaptrack);
    }
  } else {
    fmt::print("heaptrack not found in PATH: its comparison is skipped\n");
  }

  // Every variant meets the same load from other processes: their repetitions are interleaved
  // (a later --benchmark_enable_random_interleaving=false turns it off).
  std::vector<char*> args(argv, argv + argc);
  char interleave[] = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave);
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  register_benchmarks();
  Load load;
  load.start = load_average();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  load.end = load_average();
  benchmark::Shutdown();
  print_summary(reporter, load);
  programs.heaptrack_dir.reset();  // removes heaptrack's files
  return 0;
}
