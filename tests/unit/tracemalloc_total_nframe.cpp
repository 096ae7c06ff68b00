// memlens::tracemalloc: Traceback::total_nframe, the depth of the stack before truncation to the
// traceback limit: counted by the frame-pointer walk and the unwinder beyond the frames they
// store, part of the interned traceback's key, kept by get_object_traceback and by snapshot
// files (since version 2; version 1 files still load, without it).
// Stacks of known depth come from recursions of noinline functions that do work after the
// recursive call, so that no call becomes a tail call or a loop. The test target is built with
// frame pointers; the global operator new is traced through tracemalloc_hook.cpp.
#include <pthread.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memlens/detail/trace_core.hpp>
#include <memlens/tracemalloc.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memlens_test.hpp"
#include "unit/tracemalloc_test.hpp"

namespace tracemalloc = memlens::tracemalloc;

namespace test_tracemalloc_total_nframe {

using test_tracemalloc_common::escape;
using test_tracemalloc_common::Tracing;

/// Deeper than what the tracer captures at start(5) (5 + 16 frames), so frames are left over.
constexpr int kDepth = 40;

/// Allocates `size` bytes with new[] `depth` frames of itself below its caller.
__attribute__((noinline)) char* allocate_at_depth(int depth, std::size_t size) {
  char* p = depth <= 1 ? new char[size] : allocate_at_depth(depth - 1, size);
  escape(p);
  return p;
}

/// Allocates through an inlined function of this file and std::vector's code, so that return
/// addresses and frames do not match one to one: one address expands into this function's
/// frame and its caller's, and the standard library's frames are dropped.
[[gnu::always_inline]] inline std::vector<char> inlined_vector(std::size_t size) {
  return std::vector<char>(size);
}

/// inlined_vector `depth` frames of itself below its caller.
__attribute__((noinline)) std::vector<char> vector_at_depth(int depth, std::size_t size) {
  std::vector<char> v = depth <= 1 ? inlined_vector(size) : vector_at_depth(depth - 1, size);
  escape(v.data());
  return v;
}

/// The trace of the one allocation of `size` bytes in `snapshot`, or nullptr.
const tracemalloc::Trace* find_trace(const tracemalloc::Snapshot& snapshot, std::size_t size) {
  const tracemalloc::Trace* found = nullptr;
  for (const auto& t : snapshot.traces()) {
    if (t.size != size) continue;
    if (found != nullptr) return nullptr;  // not the one allocation of that size
    found = &t;
  }
  return found;
}

/// What a stack walk returned.
struct Walk {
  int stored = 0;
  std::uint16_t total = 0;
};

/// Walks the stack from here with the frame-pointer walk or the unwinder, storing at most `max`
/// return addresses (at most 512).
__attribute__((noinline)) Walk walk_here(bool unwind, int max) {
  namespace t = memlens::detail::trace;
  std::uintptr_t pcs[512];
  Walk w;
  w.stored = unwind ? t::unwind_frames(pcs, max, &w.total)
                    : t::walk_frames(__builtin_frame_address(0), pcs, max, &w.total);
  escape(pcs);
  return w;
}

/// walk_here `depth` frames of itself below its caller.
__attribute__((noinline)) Walk walk_at_depth(int depth, bool unwind, int max) {
  Walk w = depth <= 1 ? walk_here(unwind, max) : walk_at_depth(depth - 1, unwind, max);
  escape(&w);
  return w;
}

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif

/// Runs `body` on a thread with a stack of `bytes`, for recursions deeper than the main
/// thread's stack allows.
void run_on_big_stack(std::size_t bytes, std::function<void()> body) {
  pthread_attr_t attr;
  REQUIRE(pthread_attr_init(&attr) == 0);
  REQUIRE(pthread_attr_setstacksize(&attr, bytes) == 0);
  pthread_t thread;
  auto run = [](void* arg) -> void* {
    (*static_cast<std::function<void()>*>(arg))();
    return nullptr;
  };
  REQUIRE(pthread_create(&thread, &attr, run, &body) == 0);
  REQUIRE(pthread_join(thread, nullptr) == 0);
  pthread_attr_destroy(&attr);
}

/// A snapshot file written byte by byte, as trace_file.hpp lays it out.
class FileBytes {
 public:
  template <class T>
  FileBytes& put(T value) {
    char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    bytes_.append(raw, sizeof(T));
    return *this;
  }
  FileBytes& put_string(std::string_view s) {
    put(static_cast<std::uint32_t>(s.size()));
    bytes_ += s;
    return *this;
  }
  FileBytes& put_magic() {
    bytes_.append("MLTRACE\0", 8);
    return *this;
  }
  FileBytes& put_frame(std::string_view file, std::int32_t line, std::string_view function) {
    return put_string(file).put(line).put_string(function);
  }
  /// The bytes followed by their FNV-1a (64-bit), the file's checksum.
  std::string finish() const {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : bytes_) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ULL;
    }
    FileBytes out = *this;
    out.put(h);
    return out.bytes_;
  }

 private:
  std::string bytes_;
};

/// A file holding one traceback of two frames (a.cpp:3 in f, b.cpp:7 in g) and one trace of
/// 100 bytes; version 2 files store `total` after the frame count, version 3 files
/// `sample_bytes` after the traceback limit.
std::string two_frame_file(std::uint32_t version, std::uint32_t total = 0,
                           std::uint64_t sample_bytes = 0) {
  FileBytes f;
  f.put_magic().put(version).put(std::uint32_t{2});
  if (version >= 3) f.put(sample_bytes);
  f.put(std::uint64_t{1}).put(std::uint32_t{2});
  if (version >= 2) f.put(total);
  f.put_frame("a.cpp", 3, "f").put_frame("b.cpp", 7, "g");
  f.put(std::uint64_t{1}).put(std::uint32_t{0}).put(std::uint32_t{0}).put(std::uint64_t{100});
  return f.finish();
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("memlens_tn_" + std::to_string(getpid()) + "_" + name))
      .string();
}

/// Loads `bytes` as a snapshot file.
tracemalloc::Snapshot load_bytes(const std::string& bytes) {
  const std::string path = temp_path("crafted.snap");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  struct Remove {
    std::string path;
    ~Remove() { std::filesystem::remove(path); }
  } remove{path};
  return tracemalloc::Snapshot::load(path);
}

}  // namespace test_tracemalloc_total_nframe

namespace tn = test_tracemalloc_total_nframe;

TEST_CASE("tracemalloc: total_nframe counts the frames beyond the traceback limit",
          "[tracemalloc]") {
  for (int nframe : {1, 5}) {
    INFO("start(" << nframe << ")");
    tn::Tracing tracing(nframe);
    const std::size_t size = 70001 + static_cast<std::size_t>(nframe);
    char* p = tn::allocate_at_depth(tn::kDepth, size);
    auto snapshot = tracemalloc::take_snapshot();
    auto object_tb = tracemalloc::get_object_traceback(p);
    delete[] p;

    const tracemalloc::Trace* trace = tn::find_trace(snapshot, size);
    REQUIRE(trace != nullptr);
    const auto& tb = trace->traceback;
    CHECK(tb.size() == static_cast<std::size_t>(nframe));
    REQUIRE(tb.total_nframe().has_value());
    CHECK(*tb.total_nframe() >= static_cast<std::size_t>(tn::kDepth));
    CHECK(*tb.total_nframe() > tb.size());
    REQUIRE(object_tb.has_value());
    CHECK(*object_tb == tb);
    CHECK(object_tb->total_nframe() == tb.total_nframe());
  }
}

TEST_CASE("tracemalloc: a stack deeper by 3 has a total_nframe larger by 3", "[tracemalloc]") {
  for (int nframe : {1, 5}) {
    INFO("start(" << nframe << ")");
    tn::Tracing tracing(nframe);
    char* shallow = tn::allocate_at_depth(tn::kDepth, 70011);
    char* deep = tn::allocate_at_depth(tn::kDepth + 3, 70013);
    auto snapshot = tracemalloc::take_snapshot();
    delete[] shallow;
    delete[] deep;

    const tracemalloc::Trace* a = tn::find_trace(snapshot, 70011);
    const tracemalloc::Trace* b = tn::find_trace(snapshot, 70013);
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    REQUIRE(a->traceback.total_nframe().has_value());
    REQUIRE(b->traceback.total_nframe().has_value());
    CHECK(*b->traceback.total_nframe() - *a->traceback.total_nframe() == 3);
    // The frames the limit keeps are the same lines, so the tracebacks are equal.
    CHECK(a->traceback == b->traceback);
    CHECK(std::hash<tracemalloc::Traceback>()(a->traceback) ==
          std::hash<tracemalloc::Traceback>()(b->traceback));

    // As in Python, statistics group by frames and their keys have no total_nframe: both traces
    // are one statistic, by traceback as by line.
    for (std::string key : {"traceback", "lineno"}) {
      INFO("statistics(\"" << key << "\")");
      const tracemalloc::Traceback expected =
          key == "lineno" ? tracemalloc::Traceback({a->traceback.front()}) : a->traceback;
      int matching = 0;
      for (const auto& s : snapshot.statistics(key)) {
        CHECK_FALSE(s.traceback.total_nframe().has_value());
        if (s.traceback != expected) continue;
        ++matching;
        CHECK(s.size == 70011 + 70013);
        CHECK(s.count == 2);
      }
      CHECK(matching == 1);
    }
    for (const auto& d : snapshot.compare_to(tracemalloc::Snapshot(), "traceback")) {
      CHECK_FALSE(d.traceback.total_nframe().has_value());
    }
  }
}

TEST_CASE("tracemalloc: with a limit above the stack's depth total_nframe is size()",
          "[tracemalloc]") {
  tn::Tracing tracing(memlens::detail::trace::max_nframe);
  char* p = tn::allocate_at_depth(8, 70021);
  std::vector<char> v = tn::vector_at_depth(8, 70023);
  auto snapshot = tracemalloc::take_snapshot();
  auto object_tb = tracemalloc::get_object_traceback(p);
  auto vector_tb = tracemalloc::get_object_traceback(v.data());
  delete[] p;

  for (std::size_t size : {70021, 70023}) {
    INFO("size " << size);
    const tracemalloc::Trace* trace = tn::find_trace(snapshot, size);
    REQUIRE(trace != nullptr);
    CHECK(trace->traceback.size() >= 8 + 1);  // the recursion and this test, at least
    CHECK(trace->traceback.total_nframe() == trace->traceback.size());
  }
  REQUIRE(object_tb.has_value());
  CHECK(object_tb->total_nframe() == object_tb->size());
  REQUIRE(vector_tb.has_value());
  CHECK(vector_tb->total_nframe() == vector_tb->size());
}

TEST_CASE("tracemalloc: the stack walks count the frames they do not store up to 65535",
          "[tracemalloc][threads]") {
  for (bool unwind : {false, true}) {
    INFO((unwind ? "unwind_frames" : "walk_frames"));
    const tn::Walk shallow = tn::walk_at_depth(tn::kDepth, unwind, 2);
    const tn::Walk deep = tn::walk_at_depth(tn::kDepth + 3, unwind, 2);
    CHECK(shallow.stored == 2);
    CHECK(deep.stored == 2);
    CHECK(shallow.total >= tn::kDepth);
    CHECK(deep.total - shallow.total == 3);
    // Room for the whole stack: everything counted is stored.
    const tn::Walk whole = tn::walk_at_depth(tn::kDepth, unwind, 512);
    CHECK(whole.stored == whole.total);
    CHECK(whole.total == shallow.total);
    // Room for exactly the whole stack: the end of the chain is not counted twice.
    const tn::Walk exact = tn::walk_at_depth(tn::kDepth, unwind, whole.total);
    CHECK(exact.stored == whole.total);
    CHECK(exact.total == whole.total);

    // 70000 frames: the count stops at 65535 (CPython's 16 bits) rather than wrap around.
    // Not under ThreadSanitizer: its runtime once deadlocked in this recursion (a signal taken
    // while it switched trace parts); the other builds check the count.
    if (tn::kThreadSanitizer) {
      WARN("ThreadSanitizer build: the 70000-frame walk is checked by the other builds");
    } else {
      tn::Walk deepest;
      tn::run_on_big_stack(std::size_t{256} << 20,
                           [&] { deepest = tn::walk_at_depth(70000, unwind, 2); });
      CHECK(deepest.stored == 2);
      CHECK(deepest.total == 65535);
    }
  }
}

TEST_CASE("tracemalloc: the same frames from stacks of different depths are two tracebacks",
          "[tracemalloc]") {
  memlens::detail::trace::TracebackTable table;
  const std::uintptr_t pcs[] = {0x1000, 0x2000};
  const std::uint32_t shallow = table.intern(pcs, 2, 10);
  const std::uint32_t deep = table.intern(pcs, 2, 13);
  CHECK(shallow != deep);
  CHECK(table.intern(pcs, 2, 10) == shallow);
  CHECK(table.intern(pcs, 2, 13) == deep);
  REQUIRE(table.nrecords == 2);
  CHECK(table.records[shallow].count == 2);
  CHECK(table.records[shallow].total == 10);
  CHECK(table.records[deep].total == 13);
  table.clear();
}

TEST_CASE("tracemalloc: dump and load keep total_nframe", "[tracemalloc]") {
  tn::Tracing tracing(3);
  char* deep = tn::allocate_at_depth(tn::kDepth, 70031);
  char* shallow = tn::allocate_at_depth(2, 70033);
  auto snapshot = tracemalloc::take_snapshot();
  delete[] deep;
  delete[] shallow;
  const std::string path = tn::temp_path("round_trip.snap");
  snapshot.dump(path);
  auto loaded = tracemalloc::Snapshot::load(path);
  std::filesystem::remove(path);

  for (std::size_t size : {70031, 70033}) {
    INFO("size " << size);
    const tracemalloc::Trace* before = tn::find_trace(snapshot, size);
    const tracemalloc::Trace* after = tn::find_trace(loaded, size);
    REQUIRE(before != nullptr);
    REQUIRE(after != nullptr);
    REQUIRE(before->traceback.total_nframe().has_value());
    CHECK(after->traceback == before->traceback);
    CHECK(after->traceback.total_nframe() == before->traceback.total_nframe());
  }
  CHECK(*tn::find_trace(loaded, 70031)->traceback.total_nframe() >
        *tn::find_trace(loaded, 70033)->traceback.total_nframe());
}

TEST_CASE("tracemalloc: snapshot files of version 1 to 3 load with total_nframe checked",
          "[tracemalloc]") {
  const std::vector<tracemalloc::Frame> frames = {{"a.cpp", 3, "f"}, {"b.cpp", 7, "g"}};
  auto traceback_of = [](const tracemalloc::Snapshot& s) {
    REQUIRE(s.traces().size() == 1);
    CHECK(s.traces()[0].size == 100);
    CHECK(s.traceback_limit() == 2);
    return s.traces()[0].traceback;
  };

  // Version 1, written before total_nframe existed: unknown.
  CHECK(tn::load_bytes(tn::two_frame_file(1)).sample_bytes() == 0);
  auto v1 = traceback_of(tn::load_bytes(tn::two_frame_file(1)));
  CHECK(std::vector<tracemalloc::Frame>(v1.begin(), v1.end()) == frames);
  CHECK_FALSE(v1.total_nframe().has_value());

  auto v2 = traceback_of(tn::load_bytes(tn::two_frame_file(2, 9)));
  CHECK(std::vector<tracemalloc::Frame>(v2.begin(), v2.end()) == frames);
  CHECK(v2.total_nframe() == std::optional<std::size_t>(9));
  CHECK(traceback_of(tn::load_bytes(tn::two_frame_file(2, 2))).total_nframe() ==
        std::optional<std::size_t>(2));
  CHECK_FALSE(
      traceback_of(tn::load_bytes(tn::two_frame_file(2, 0xffffffffU))).total_nframe().has_value());

  // Fewer frames in the stack than in its traceback: impossible.
  for (std::uint32_t total : {0U, 1U}) {
    INFO("total_nframe " << total);
    CHECK_THROWS_AS(tn::load_bytes(tn::two_frame_file(2, total)), tracemalloc::SnapshotFileError);
    CHECK_THROWS_WITH(tn::load_bytes(tn::two_frame_file(2, total)),
                      memlens_test::contains("file is corrupt") &&
                          memlens_test::contains("total_nframe " + std::to_string(total)));
  }
  // Version 3 adds the sampling rate; 1 and 2 were written when every allocation was traced.
  CHECK(tn::load_bytes(tn::two_frame_file(2, 9)).sample_bytes() == 0);
  const auto v3 = tn::load_bytes(tn::two_frame_file(3, 9, 4096));
  CHECK(v3.sample_bytes() == 4096);
  CHECK(traceback_of(v3).total_nframe() == std::optional<std::size_t>(9));
  CHECK_THROWS_WITH(tn::load_bytes(tn::two_frame_file(3, 9, std::uint64_t{1} << 41)),
                    memlens_test::contains("file is corrupt") &&
                        memlens_test::contains("sample_bytes 2199023255552"));
  CHECK_THROWS_WITH(tn::load_bytes(tn::two_frame_file(4, 9)),
                    memlens_test::contains("unsupported version 4"));
  CHECK_THROWS_WITH(tn::load_bytes(tn::two_frame_file(0)),
                    memlens_test::contains("unsupported version 0"));
}

TEST_CASE("tracemalloc: Traceback's total_nframe is not part of equality or order or hash",
          "[tracemalloc]") {
  const std::vector<tracemalloc::Frame> frames = {{"a.cpp", 3, "f"}};
  const tracemalloc::Traceback unknown(frames);
  const tracemalloc::Traceback known(frames, 5);
  CHECK_FALSE(tracemalloc::Traceback().total_nframe().has_value());
  CHECK_FALSE(unknown.total_nframe().has_value());
  CHECK(known.total_nframe() == std::optional<std::size_t>(5));
  CHECK(known == unknown);
  CHECK_FALSE(known < unknown);
  CHECK_FALSE(unknown < known);
  CHECK(std::hash<tracemalloc::Traceback>()(known) == std::hash<tracemalloc::Traceback>()(unknown));
  const tracemalloc::Traceback copy = known;
  CHECK(copy.total_nframe() == known.total_nframe());
  CHECK(tracemalloc::Traceback(frames, 1).total_nframe() == std::optional<std::size_t>(1));
  CHECK_THROWS_AS(tracemalloc::Traceback(frames, 0), memlens::ValueError);
}
