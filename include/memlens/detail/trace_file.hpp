// memlens: the snapshot file format of tracemalloc (internal): Snapshot::dump and
// Snapshot::load. Included at the end of memlens/tracemalloc.hpp.
//
// Layout (native little-endian, x86-64 and aarch64 alike):
//   "MLTRACE\0"  u32 version (3)  u32 traceback_limit  u64 sample_bytes (0: every allocation)
//   u64 tracebacks, each: u32 frames, u32 total_nframe (0xffffffff: unknown; at least frames),
//     then the frames, each: u32 n, filename[n], i32 lineno, u32 n, function[n]
//   u64 traces, each: u32 domain, u32 traceback index, u64 size
//   u64 FNV-1a of every byte before it
// Versions 1 and 2, still read, have no sample_bytes (they are of tracing every allocation);
// version 1 has no total_nframe either.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memlens/detail/files.hpp"
#include "memlens/tracemalloc.hpp"

namespace memlens::tracemalloc::detail {

inline constexpr char snapshot_magic[8] = {'M', 'L', 'T', 'R', 'A', 'C', 'E', '\0'};
inline constexpr std::uint32_t snapshot_version = 3;
/// The oldest version load() reads.
inline constexpr std::uint32_t snapshot_oldest_version = 1;
/// A traceback's total_nframe in the file when it is unknown.
inline constexpr std::uint32_t snapshot_unknown_total = 0xffffffffU;

inline std::uint64_t fnv1a(const char* data, std::size_t size) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < size; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 0x100000001b3ULL;
  }
  return h;
}

class SnapshotWriter {
 public:
  template <class T>
  void put(T value) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out_.append(bytes, sizeof(T));
  }
  void put_string(const std::string& s) {
    put(static_cast<std::uint32_t>(s.size()));
    out_ += s;
  }
  void put_raw(const char* data, std::size_t n) { out_.append(data, n); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

class SnapshotReader {
 public:
  SnapshotReader(const std::string& path, std::string_view data) : path_(path), data_(data) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw SnapshotFileError("tracemalloc: cannot load snapshot '" + path_ + "': " + what);
  }
  template <class T>
  T get() {
    if (data_.size() - pos_ < sizeof(T)) fail("file is truncated");
    T value;
    std::memcpy(&value, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string get_string() {
    auto n = get<std::uint32_t>();
    if (data_.size() - pos_ < n) fail("file is truncated");
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  /// A count of items of at least `item_size` bytes each, checked against the bytes left so
  /// that a corrupt count cannot make us reserve gigabytes.
  std::uint64_t get_count(std::size_t item_size) {
    auto n = get<std::uint64_t>();
    if (n > (data_.size() - pos_) / item_size) fail("file is corrupt (impossible count)");
    return n;
  }
  std::size_t left() const { return data_.size() - pos_; }

 private:
  std::string path_;
  std::string_view data_;
  std::size_t pos_ = 0;
};

}  // namespace memlens::tracemalloc::detail

namespace memlens::tracemalloc {

inline void Snapshot::dump(const std::string& path) const {
  const auto& tracebacks = data_->symbolized();
  detail::SnapshotWriter w;
  w.put_raw(detail::snapshot_magic, sizeof(detail::snapshot_magic));
  w.put(detail::snapshot_version);
  w.put(static_cast<std::uint32_t>(data_->traceback_limit));
  w.put(static_cast<std::uint64_t>(data_->sample_bytes));
  w.put(static_cast<std::uint64_t>(tracebacks.size()));
  for (const auto& tb : tracebacks) {
    w.put(static_cast<std::uint32_t>(tb.size()));
    const auto total = tb.total_nframe();
    w.put(total ? static_cast<std::uint32_t>(
                      std::min<std::size_t>(*total, detail::snapshot_unknown_total - 1))
                : detail::snapshot_unknown_total);
    for (const auto& f : tb) {
      w.put_string(f.filename);
      w.put(static_cast<std::int32_t>(f.lineno));
      w.put_string(f.function);
    }
  }
  w.put(static_cast<std::uint64_t>(data_->traces.size()));
  for (const auto& t : data_->traces) {
    w.put(t.domain);
    w.put(t.traceback);
    w.put(static_cast<std::uint64_t>(t.size));
  }
  w.put(detail::fnv1a(w.bytes().data(), w.bytes().size()));

  memlens::detail::write_file_atomically<SnapshotFileError>(path, w.bytes(),
                                                            "tracemalloc: cannot dump snapshot to");
}

inline Snapshot Snapshot::load(const std::string& path) {
  std::string bytes;
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
      throw SnapshotFileError("tracemalloc: cannot load snapshot '" + path +
                              "': " + std::strerror(errno));
    }
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) bytes.append(buf, n);
    bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) {
      throw SnapshotFileError("tracemalloc: cannot load snapshot '" + path + "': read error");
    }
  }
  detail::SnapshotReader header(path, bytes);
  if (bytes.size() < sizeof(detail::snapshot_magic) ||
      std::memcmp(bytes.data(), detail::snapshot_magic, sizeof(detail::snapshot_magic)) != 0) {
    header.fail("not a memlens tracemalloc snapshot (bad magic)");
  }
  if (bytes.size() < sizeof(detail::snapshot_magic) + 4) header.fail("file is truncated");
  std::uint32_t version;
  std::memcpy(&version, bytes.data() + sizeof(detail::snapshot_magic), sizeof(version));
  if (version < detail::snapshot_oldest_version || version > detail::snapshot_version) {
    header.fail("unsupported version " + std::to_string(version) + " (this memlens reads " +
                std::to_string(detail::snapshot_oldest_version) + " to " +
                std::to_string(detail::snapshot_version) + ")");
  }
  constexpr std::size_t fixed = sizeof(detail::snapshot_magic) + 4 + 4 + 8 + 8 + 8;
  if (bytes.size() < fixed) header.fail("file is truncated");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, sizeof(stored));
  if (stored != detail::fnv1a(bytes.data(), bytes.size() - 8)) {
    header.fail("file is truncated or corrupt (checksum mismatch)");
  }

  detail::SnapshotReader r(path, std::string_view(bytes).substr(0, bytes.size() - 8));
  r.get<std::uint64_t>();  // magic
  r.get<std::uint32_t>();  // version
  auto data = std::make_shared<detail::SnapshotData>();
  auto limit = r.get<std::uint32_t>();
  if (limit < 1 || limit > static_cast<std::uint32_t>(memlens::detail::trace::max_nframe)) {
    r.fail("file is corrupt (traceback limit " + std::to_string(limit) + ")");
  }
  data->traceback_limit = static_cast<int>(limit);
  if (version >= 3) {
    const auto sample_bytes = r.get<std::uint64_t>();
    if (sample_bytes > TraceOptions::max_sample_bytes) {
      r.fail("file is corrupt (sample_bytes " + std::to_string(sample_bytes) + ")");
    }
    data->sample_bytes = static_cast<std::size_t>(sample_bytes);
  }
  const bool has_totals = version >= 2;
  auto ntracebacks = r.get_count(has_totals ? 8 : 4);
  data->tracebacks.reserve(ntracebacks);
  for (std::uint64_t i = 0; i < ntracebacks; ++i) {
    auto nframes = r.get<std::uint32_t>();
    std::optional<std::size_t> total_nframe;
    if (has_totals) {
      auto total = r.get<std::uint32_t>();
      if (total != detail::snapshot_unknown_total) {
        if (total < nframes) {
          r.fail("file is corrupt (traceback " + std::to_string(i) + " has " +
                 std::to_string(nframes) + " frames but total_nframe " + std::to_string(total) +
                 ")");
        }
        total_nframe = total;
      }
    }
    if (nframes > r.left() / 12) r.fail("file is corrupt (impossible count)");
    std::vector<Frame> frames;
    frames.reserve(nframes);
    for (std::uint32_t k = 0; k < nframes; ++k) {
      Frame f;
      f.filename = r.get_string();
      f.lineno = r.get<std::int32_t>();
      f.function = r.get_string();
      frames.push_back(std::move(f));
    }
    data->tracebacks.emplace_back(std::move(frames), total_nframe);
  }
  std::call_once(data->symbolized_once, [] {});
  auto ntraces = r.get_count(16);
  data->traces.reserve(ntraces);
  for (std::uint64_t i = 0; i < ntraces; ++i) {
    detail::RawTrace t{};
    t.domain = r.get<std::uint32_t>();
    t.traceback = r.get<std::uint32_t>();
    t.size = static_cast<std::size_t>(r.get<std::uint64_t>());
    if (t.traceback >= ntracebacks) r.fail("file is corrupt (traceback index out of range)");
    data->traces.push_back(t);
  }
  if (r.left() != 0) r.fail("file is corrupt (trailing bytes)");
  return Snapshot(std::move(data));
}

}  // namespace memlens::tracemalloc
