// memlens: DatasetProcessor, statistics of a CSV file of any size computed in a fixed memory
// budget, on one thread or several, with the same results on any number of threads (exercise 12).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <fmt/format.h>

#include "memlens/errors.hpp"

namespace memlens {

/// How far a DatasetProcessor has come: given to ProcessorOptions::progress after each segment
/// of the file (256 KiB with the default budget) and once at the end.
struct Progress {
  std::uint64_t bytes_done = 0;        ///< bytes of the file consumed so far
  std::uint64_t bytes_total = 0;       ///< the file's size
  std::uint64_t rows = 0;              ///< data rows consumed so far (skipped bad rows included)
  std::chrono::nanoseconds elapsed{};  ///< since process_file was called
};

/// What a DatasetProcessor does with a malformed row: throw ValueError (the default), or skip it
/// and count it in the results (ChunkResult::bad_rows, bad_lines).
enum class BadRowAction { raise, skip };

/// How a DatasetProcessor reads. Every field has a usable default.
struct ProcessorOptions {
  /// Threads that parse. 1 parses on the thread that iterates; more start that many workers,
  /// which read and parse segments of the file in turn. Results are identical for every value.
  unsigned threads = 1;
  /// Read through windows of a memory mapping (madvise MADV_SEQUENTIAL; a thread unmaps its
  /// window when it maps its next) instead of read() into a buffer. Measured no faster on one
  /// thread and slower on two, on Linux with the file in the page cache, hence off by default.
  bool use_mmap = false;
  char delimiter = ',';
  /// Called on the iterating thread as the file is consumed; ProgressBar draws one. (The {}
  /// lets g++ -Wextra accept a designated initializer that leaves it out.)
  std::function<void(const Progress&)> progress{};
  /// Bounds the bytes of everything the processor holds together: a buffer or mapped window per
  /// thread, the carried partial record, and the per-chunk results of the segments in flight. A
  /// record longer than memory_budget / 64 is an error, not a reason to exceed it. Too many
  /// threads for the budget is a ValueError that says which budget would do.
  std::size_t memory_budget = std::size_t{64} << 20;
  /// A malformed row is a field count other than the header's, a quote inside an unquoted
  /// field, text after a closing quote, or a quote never closed. Quotes are read as RFC 4180
  /// reads them: a stray quote opens a quoted section that the next quote closes, so with
  /// `skip` the lines in between go with that one bad row (counted once, at its first line).
  /// A blank line is a row of one empty field: malformed unless the header has one column.
  BadRowAction on_bad_row = BadRowAction::raise;
};

namespace detail::csv {

/// Adds the numbers of `from` to `into`: ColumnStats and the name-less per-segment Acc alike.
template <class Into, class From>
void add_stats(Into& into, const From& from) {
  into.count += from.count;
  into.sum += from.sum;
  into.min = std::min(into.min, from.min);
  into.max = std::max(into.max, from.max);
  into.non_numeric += from.non_numeric;
  into.empty += from.empty;
}

/// Appends the lines of `more` to `lines` while it holds fewer than ten: the bad rows reported.
inline void keep_first_ten(std::vector<std::uint64_t>& lines,
                           const std::vector<std::uint64_t>& more) {
  for (std::uint64_t line : more) {
    if (lines.size() >= 10) return;
    lines.push_back(line);
  }
}

}  // namespace detail::csv

/// Statistics of one column over a set of rows, computed without keeping the rows.
struct ColumnStats {
  std::string name;
  std::uint64_t count = 0;  ///< numeric cells
  double sum = 0;
  double min = std::numeric_limits<double>::infinity();   ///< +inf while count is 0
  double max = -std::numeric_limits<double>::infinity();  ///< -inf while count is 0
  /// Cells with text that is not a decimal number, or whose value is beyond a double's range
  /// (1e400).
  std::uint64_t non_numeric = 0;
  std::uint64_t empty = 0;  ///< empty cells ("" quoted or nothing at all)

  /// The mean of the numeric cells; NaN when there are none.
  double mean() const {
    return count == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / static_cast<double>(count);
  }
  /// Adds another set of rows' statistics of the same column.
  void merge(const ColumnStats& other) { detail::csv::add_stats(*this, other); }
};

/// The statistics of `chunk_size` consecutive data rows (fewer in the last chunk).
struct ChunkResult {
  /// 0-based index of the chunk's first data row; rows are counted skipped bad ones included,
  /// so a chunk is `chunk_size` consecutive rows of the file.
  std::uint64_t first_row = 0;
  std::uint64_t rows = 0;            ///< rows counted in `columns` (bad rows skipped are not)
  std::uint64_t bytes = 0;           ///< bytes of the chunk's rows, bad ones and line ends included
  std::vector<ColumnStats> columns;  ///< in file order
  std::uint64_t bad_rows = 0;        ///< malformed rows skipped (BadRowAction::skip)
  std::vector<std::uint64_t> bad_lines;  ///< 1-based lines of the first ten of them
};

/// The statistics of a whole file: what aggregate_results returns.
struct DatasetSummary {
  std::uint64_t rows = 0;
  std::uint64_t bytes = 0;  ///< bytes of the data rows (the header left out)
  std::vector<ColumnStats> columns;
  std::uint64_t bad_rows = 0;
  std::vector<std::uint64_t> bad_lines;  ///< the first ten bad rows' lines, in file order

  /// The column named `name`; ValueError if there is none.
  const ColumnStats& column(std::string_view name) const {
    for (const auto& c : columns) {
      if (c.name == name) return c;
    }
    throw ValueError(fmt::format("dataset: no column named '{}'", name));
  }
};

/// The process's memory as the OS counts it, in bytes (/proc/self/status). DatasetProcessor
/// calls it MemoryUsage (memlens::MemoryUsage is memory_tracker's report).
struct ProcessMemory {
  std::uint64_t current_rss = 0;  ///< VmRSS
  std::uint64_t peak_rss = 0;     ///< VmHWM
  std::uint64_t anon_rss = 0;     ///< RssAnon: the heap and stacks, not the mapped files
};

/// The process's current, peak and anonymous resident memory; Error if /proc is unreadable.
inline ProcessMemory process_memory() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) throw Error("dataset: cannot read /proc/self/status");
  ProcessMemory usage;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long kb = 0;
    if (std::sscanf(line, "VmRSS: %llu kB", &kb) == 1) usage.current_rss = kb * 1024;
    if (std::sscanf(line, "VmHWM: %llu kB", &kb) == 1) usage.peak_rss = kb * 1024;
    if (std::sscanf(line, "RssAnon: %llu kB", &kb) == 1) usage.anon_rss = kb * 1024;
  }
  std::fclose(f);
  return usage;
}

/// A progress callback that draws a one-line bar on a terminal: percentage, MB/s and time left.
/// It draws only when the stream is a terminal (or `force`), at most ten times a second, and
/// ends the line at 100 %. Copies share one bar, so it can be stored in a std::function.
class ProgressBar {
 public:
  explicit ProgressBar(std::FILE* stream = stderr, bool force = false)
      : state_(std::make_shared<State>()) {
    state_->stream = stream;
    state_->enabled = force || ::isatty(::fileno(stream)) == 1;
  }

  void operator()(const Progress& p) const {
    State& s = *state_;
    if (!s.enabled || s.finished) return;
    const bool done = p.bytes_done >= p.bytes_total;
    if (!done && s.drawn && p.elapsed - s.last < std::chrono::milliseconds(100)) return;
    s.drawn = true;
    s.last = p.elapsed;
    std::fputs(render(p).c_str(), s.stream);
    if (done) {
      std::fputc('\n', s.stream);
      s.finished = true;
    }
    std::fflush(s.stream);
  }

  /// The line drawn for `p`, starting with a carriage return: "\r[#####     ]  50.0 %  812.3 MB/s
  /// ETA 1 s".
  static std::string render(const Progress& p) {
    constexpr int width = 30;
    const double fraction =
        p.bytes_total == 0 || p.bytes_done >= p.bytes_total
            ? 1.0
            : static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total);
    const double seconds = std::chrono::duration<double>(p.elapsed).count();
    const double rate = seconds > 0 ? static_cast<double>(p.bytes_done) / seconds : 0.0;
    const int filled = static_cast<int>(fraction * width);
    std::string eta = "ETA -";
    if (rate > 0) {
      eta = fmt::format(
          "ETA {:.0f} s",
          static_cast<double>(p.bytes_total - std::min(p.bytes_done, p.bytes_total)) / rate);
    }
    return fmt::format("\r[{}{}] {:5.1f} %  {:7.1f} MB/s  {}   ",
                       std::string(static_cast<std::size_t>(filled), '#'),
                       std::string(static_cast<std::size_t>(width - filled), ' '), fraction * 100,
                       rate / 1e6, eta);
  }

 private:
  struct State {
    std::FILE* stream = nullptr;
    bool enabled = false, drawn = false, finished = false;
    std::chrono::nanoseconds last{};
  };
  std::shared_ptr<State> state_;
};

namespace detail::csv {

/// One column's running statistics inside a segment (ColumnStats without the name).
struct Acc {
  std::uint64_t count = 0, non_numeric = 0, empty = 0;
  double sum = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
};

/// The rows of one chunk that fell in one segment.
struct Partial {
  std::uint64_t chunk = 0;
  std::uint64_t rows = 0, bad_rows = 0, bytes = 0;
  std::vector<Acc> columns;
  std::vector<std::uint64_t> bad_lines;
};

/// What parsing a segment produced.
struct SegmentOut {
  std::vector<Partial> partials;
  std::size_t consumed = 0;      ///< bytes of the segment's view parsed (whole records)
  std::uint64_t records = 0;     ///< records in them (bad ones included)
  std::uint64_t lines = 0;       ///< newlines in them
  std::uint64_t end_offset = 0;  ///< file offset just past them
  std::exception_ptr error;
};

/// A view of consecutive whole or partial records: the carried partial record, then new bytes.
/// What a parser is given ends with '\n' (a missing final newline is supplied at the end of the
/// file), so it stops there without bounds checks; the view may also be empty.
struct Segment {
  const char* data = nullptr;
  std::size_t len = 0;
  std::size_t real_len = 0;  ///< len without a supplied final newline
  bool eof = false;          ///< the view reaches the end of the file
  std::uint64_t offset = 0;  ///< file offset of data[0]
  std::uint64_t row = 0;     ///< index of the first record's data row
  std::uint64_t line = 0;    ///< 1-based line the first record starts on
};

inline std::string errno_text(int error) { return std::generic_category().message(error); }

/// An open file descriptor, closed on destruction.
class File {
 public:
  explicit File(const std::filesystem::path& path) : path_(path.string()) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      throw Error(fmt::format("dataset: cannot open '{}': {}", path_, errno_text(errno)));
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int error = errno;
      ::close(fd_);
      throw Error(fmt::format("dataset: cannot stat '{}': {}", path_, errno_text(error)));
    }
    if (!S_ISREG(st.st_mode)) {
      const bool dir = S_ISDIR(st.st_mode);
      ::close(fd_);
      throw Error(
          fmt::format("dataset: '{}' is {}", path_, dir ? "a directory" : "not a regular file"));
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() { ::close(fd_); }

  int fd() const { return fd_; }
  std::uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  /// Reads exactly `n` bytes at `offset`; Error on a read error or a file that shrank.
  void read_at(char* out, std::size_t n, std::uint64_t offset) const {
    while (n > 0) {
      const ::ssize_t got = ::pread(fd_, out, n, static_cast<::off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        throw Error(fmt::format("dataset: cannot read '{}': {}", path_, errno_text(errno)));
      }
      if (got == 0) throw Error(fmt::format("dataset: '{}' shrank while being read", path_));
      out += got;
      n -= static_cast<std::size_t>(got);
      offset += static_cast<std::uint64_t>(got);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

/// A thread's own buffer and mapped window.
struct Workspace {
  std::unique_ptr<char[]> buffer;
  std::size_t capacity = 0;
  void* map = nullptr;
  std::size_t map_len = 0;

  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { unmap(); }
  void unmap() {
    if (map != nullptr) ::munmap(map, map_len);
    map = nullptr;
  }
};

/// Cuts the file into segments: each is the partial record the previous one left, then the next
/// `step` bytes. The cuts depend on the file, the budget, the chunk size and the header only,
/// never on the thread count, so every thread count parses the same records in the same
/// segments and sums in the same order.
class Source {
 public:
  /// `cap`: the bytes a thread's buffer may hold, at least a longest record plus a step and one.
  Source(const File& file, bool use_mmap, std::size_t step, std::size_t cap, std::uint64_t start)
      : file_(file),
        use_mmap_(use_mmap),
        step_(step),
        cap_(cap),
        carry_off_(start),
        next_off_(start) {}

  /// The bytes of new data each segment takes from now on (the header is read with another).
  void set_step(std::size_t step) { step_ = step; }

  /// Goes on from `offset` with nothing carried: the rows after the header are read again
  /// rather than carried, so that what is carried is always one record, never several.
  void restart_at(std::uint64_t offset) {
    carry_off_ = next_off_ = offset;
    carry_ptr_ = nullptr;
  }

  /// The carried partial record: its bytes stay valid until the next claim. The caller refuses
  /// one longer than its limit before claiming, so a buffer never needs more than `cap`.
  std::string_view carry() const {
    return {carry_ptr_, static_cast<std::size_t>(next_off_ - carry_off_)};
  }

  /// Makes the next segment in `ws`; false when the file is consumed.
  bool claim(Workspace& ws, Segment& seg) {
    const std::uint64_t left = file_.size() - next_off_;
    const std::size_t fresh = static_cast<std::size_t>(std::min<std::uint64_t>(step_, left));
    const std::size_t carry = static_cast<std::size_t>(next_off_ - carry_off_);
    if (carry == 0 && fresh == 0) return false;
    const std::size_t len = carry + fresh;
    if (len + 1 > cap_) throw Error("dataset: internal error: a segment larger than its buffer");
    seg.eof = next_off_ + fresh == file_.size();
    seg.offset = carry_off_;
    if (use_mmap_ && !(seg.eof && last_byte_not_newline())) {
      map_window(ws, carry_off_, len);
      seg.data = static_cast<const char*>(ws.map) + (carry_off_ - map_start(carry_off_));
    } else {
      reserve(ws, len + 1, carry);
      if (fresh > 0) file_.read_at(ws.buffer.get() + carry, fresh, next_off_);
      seg.data = ws.buffer.get();
    }
    seg.len = seg.real_len = len;
    if (seg.eof && seg.data[len - 1] != '\n') {
      ws.buffer[len] = '\n';  // only a buffer gets here: a mapped last segment is copied
      seg.len = len + 1;
    }
    carry_ptr_ = seg.data;
    next_off_ += fresh;
    return true;
  }

  /// The segment's bytes from `consumed` on are carried into the next one.
  void advance(const Segment& seg, std::size_t consumed) {
    const std::size_t kept = consumed >= seg.real_len ? 0 : seg.real_len - consumed;
    carry_off_ = seg.offset + (seg.real_len - kept);
    carry_ptr_ = seg.data + (seg.real_len - kept);
  }

  std::uint64_t carry_offset() const { return carry_off_; }

 private:
  // Whether the file's last byte is not a newline, so the last segment must be a buffer that
  // can take one more byte.
  bool last_byte_not_newline() const {
    if (file_.size() == 0) return false;
    char last = 0;
    file_.read_at(&last, 1, file_.size() - 1);
    return last != '\n';
  }

  static std::uint64_t map_start(std::uint64_t offset) {
    static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return offset - offset % page;
  }

  void map_window(Workspace& ws, std::uint64_t from, std::size_t len) {
    const std::uint64_t start = map_start(from);
    const std::size_t map_len = static_cast<std::size_t>(from - start) + len;
    void* map =
        ::mmap(nullptr, map_len, PROT_READ, MAP_PRIVATE, file_.fd(), static_cast<::off_t>(start));
    if (map == MAP_FAILED) {
      throw Error(fmt::format("dataset: cannot map '{}': {}", file_.path(), errno_text(errno)));
    }
    ::madvise(map, map_len, MADV_SEQUENTIAL);
    ws.unmap();  // the previous window: the carry, if any, is in the new one too
    ws.map = map;
    ws.map_len = map_len;
  }

  // Makes ws.buffer hold `need` bytes with the carried bytes at its front; the carry may be in
  // this buffer, another thread's (which does not change it until its next claim, after this
  // one) or a mapping.
  void reserve(Workspace& ws, std::size_t need, std::size_t carry) {
    if (need > ws.capacity) {
      const std::size_t capacity = std::min(cap_, std::max(need, 2 * step_ + 1));
      auto bigger = std::make_unique_for_overwrite<char[]>(capacity);
      if (carry > 0) std::memcpy(bigger.get(), carry_ptr_, carry);
      ws.buffer = std::move(bigger);
      ws.capacity = capacity;
    } else if (carry > 0 && carry_ptr_ != ws.buffer.get()) {
      std::memmove(ws.buffer.get(), carry_ptr_, carry);
    }
  }

  const File& file_;
  bool use_mmap_;
  std::size_t step_, cap_;
  std::uint64_t carry_off_;  ///< file offset of the carried partial record
  std::uint64_t next_off_;   ///< file offset of the first byte not yet read
  const char* carry_ptr_ = nullptr;
};

/// Where the records of a view end, quotes respected: a quote toggles "inside a quoted field"
/// wherever it is (RFC 4180's "" escape toggles twice), and a newline outside ends a record.
/// The parser finds the same ends, well-formed or not, so threads can cut without parsing.
struct Cut {
  std::size_t end = 0;        ///< just past the last record end; 0 if none
  std::uint64_t records = 0;  ///< record ends before `end`
  std::uint64_t lines = 0;    ///< newlines before `end`
};

inline Cut find_cut(const char* p, std::size_t n) {
  Cut cut;
  std::uint64_t inside = 0;  // all ones inside a quoted field
  std::uint64_t lines = 0;
  std::size_t i = 0;
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), newline = _mm_set1_epi8('\n');
  for (; i + 64 <= n; i += 64) {
    std::uint64_t q = 0, nl = 0;
    for (int k = 0; k < 4; ++k) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 16 * k));
      q |= static_cast<std::uint64_t>(
               static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote))))
           << (16 * k);
      nl |= static_cast<std::uint64_t>(
                static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, newline))))
            << (16 * k);
    }
    // Prefix XOR: bit k set when an odd number of quotes is at or before k.
    q ^= q << 1;
    q ^= q << 2;
    q ^= q << 4;
    q ^= q << 8;
    q ^= q << 16;
    q ^= q << 32;
    const std::uint64_t in = q ^ inside;
    const std::uint64_t ends = nl & ~in;
    lines += static_cast<std::uint64_t>(std::popcount(nl));
    if (ends != 0) {
      cut.records += static_cast<std::uint64_t>(std::popcount(ends));
      cut.end = i + 64 - static_cast<std::size_t>(std::countl_zero(ends));
      cut.lines = lines - static_cast<std::uint64_t>(
                              std::popcount(nl >> 1 >> (63 - std::countl_zero(ends))));
    }
    inside = (in >> 63) != 0 ? ~std::uint64_t{0} : 0;
  }
#endif
  bool in = inside != 0;
  for (; i < n; ++i) {
    if (p[i] == '"') {
      in = !in;
    } else if (p[i] == '\n') {
      ++lines;
      if (!in) {
        ++cut.records;
        cut.end = i + 1;
        cut.lines = lines;
      }
    }
  }
  return cut;
}

/// The powers of ten a double holds exactly.
inline constexpr double powers10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                      1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/// The length of the first record of [record, end) by find_cut's quote rule, its newline
/// included; 0 if it does not end there.
inline std::size_t first_end(const char* record, const char* end) {
  bool in = false;
  for (const char* p = record; p < end; ++p) {
    if (*p == '"')
      in = !in;
    else if (*p == '\n' && !in)
      return static_cast<std::size_t>(p + 1 - record);
  }
  return 0;
}

/// Whether [b, e) is a decimal number (optional sign, digits with an optional point, optional
/// exponent; no spaces, no inf or nan), and its value, rounded as std::from_chars rounds.
/// The byte at e must be none of the number's characters (digits, point, sign, e, E): the
/// loops stop at it without comparing pointers. A field's end is a delimiter (never one of
/// them), a line end, a quote or a CR.
[[gnu::always_inline]] inline bool parse_number(const char* b, const char* e, double& out) {
  const char* p = b;
  const bool negative = *p == '-';
  p += negative || *p == '+';
  std::uint64_t mantissa = 0;
  const char* digits_begin = p;
  while (static_cast<unsigned char>(*p - '0') < 10) {
    mantissa = mantissa * 10 + static_cast<unsigned char>(*p - '0');
    ++p;
  }
  std::ptrdiff_t digits = p - digits_begin, scale = 0;
  if (*p == '.') {
    const char* f = ++p;
    while (static_cast<unsigned char>(*p - '0') < 10) {
      mantissa = mantissa * 10 + static_cast<unsigned char>(*p - '0');
      ++p;
    }
    scale = f - p;
    digits += p - f;
  }
  if (digits == 0) return false;
  if ((*p | 0x20) == 'e') {
    ++p;
    const bool minus = *p == '-';
    p += minus || *p == '+';
    const char* x = p;
    int exponent = 0;
    while (static_cast<unsigned char>(*p - '0') < 10) {
      if (exponent < 100000) exponent = exponent * 10 + (*p - '0');
      ++p;
    }
    if (p == x) return false;
    scale += minus ? -exponent : exponent;
  }
  if (p != e) return false;
  // Clinger's fast path: an exact mantissa and an exact power of ten make one correctly rounded
  // operation, the value from_chars computes.
  if (digits <= 19 && mantissa <= (std::uint64_t{1} << 53) && scale >= -22 && scale <= 22) {
    const double value = static_cast<double>(mantissa);
    out = scale < 0 ? value / powers10[-scale] : value * powers10[scale];
    out = negative ? -out : out;
    return true;
  }
  const char* s = *b == '+' ? b + 1 : b;  // from_chars takes no plus sign
  const auto [end, error] = std::from_chars(s, e, out);
  return error == std::errc() && end == e;
}

/// The positions of the bytes that end an unquoted field (the delimiter, newline, quote and
/// carriage return) in a view, as a bitmask per 64-byte block: finding a field's end is a bit
/// scan, not a load that waits on the previous field's end.
class Specials {
 public:
  Specials(const char* begin, const char* end, char delimiter)
      : begin_(begin), end_(end), delimiter_(delimiter), base_(begin) {
    load(0);
  }

  /// The first special byte at or after p; there is one (the view ends with a newline).
  const char* next(const char* p) {
    for (;;) {
      const auto offset = static_cast<std::size_t>(p - base_);
      if (offset < 64) {
        const std::uint64_t bits = mask_ & (~std::uint64_t{0} << offset);
        if (bits != 0) return base_ + std::countr_zero(bits);
        p = base_ + 64;
      }
      load(static_cast<std::size_t>(p - begin_) & ~std::size_t{63});
    }
  }

 private:
  void load(std::size_t block) {
    base_ = begin_ + block;
    mask_ = 0;
#if defined(__SSE2__)
    if (end_ - base_ >= 64) {
      const __m128i d = _mm_set1_epi8(delimiter_), n = _mm_set1_epi8('\n'), q = _mm_set1_epi8('"'),
                    r = _mm_set1_epi8('\r');
      for (int k = 0; k < 4; ++k) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base_ + 16 * k));
        const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, d), _mm_cmpeq_epi8(v, n)),
                                         _mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, r)));
        mask_ |= static_cast<std::uint64_t>(static_cast<std::uint32_t>(_mm_movemask_epi8(hit)))
                 << (16 * k);
      }
      return;
    }
#endif
    const std::ptrdiff_t n = std::min<std::ptrdiff_t>(64, end_ - base_);
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      const char c = base_[i];
      if (c == delimiter_ || c == '\n' || c == '"' || c == '\r') mask_ |= std::uint64_t{1} << i;
    }
  }

  const char* begin_;
  const char* end_;
  char delimiter_;
  const char* base_;
  std::uint64_t mask_ = 0;
};

/// Parses the records of segments into per-chunk statistics. One per thread.
class Parser {
 public:
  struct Config {
    const std::string* path = nullptr;
    std::size_t columns = 0;
    char delimiter = ',';
    bool skip_bad = false;
    std::uint64_t chunk_size = 1;
  };

  explicit Parser(const Config& config)
      : config_(config), values_(config.columns), kinds_(config.columns) {}

  /// Parses the whole records of `seg` (stopping before one that does not end in it, unless the
  /// file ends there) into `out`.
  void run(const Segment& seg, SegmentOut& out) {
    const char* const begin = seg.data;
    const char* const end = seg.data + seg.len;
    const char* p = begin;
    std::uint64_t row = seg.row, line = seg.line;
    Partial* partial = nullptr;
    std::uint64_t chunk_end = 0;  // first row of the next chunk
    Specials specials(begin, end, config_.delimiter);
    while (p < end) {
      const char* const record = p;
      if (partial == nullptr || row == chunk_end) {
        out.partials.push_back(
            Partial{row / config_.chunk_size, 0, 0, 0, std::vector<Acc>(config_.columns), {}});
        partial = &out.partials.back();
        chunk_end = (partial->chunk + 1) * config_.chunk_size;
      }
      std::uint64_t quoted_lines = 0;
      const Outcome outcome = parse_record(p, end, seg.eof, quoted_lines, specials);
      if (outcome.kind == Outcome::incomplete) break;
      if (outcome.kind == Outcome::good) {
        commit(*partial);
        line += 1 + quoted_lines;
      } else {
        // The record ends where the quote rule (find_cut's) ends it; until that end is in the
        // view it waits for the next segment, as it does on other threads, raised or skipped.
        const std::size_t length = first_end(record, end);
        if (length == 0 && !seg.eof) break;
        if (!config_.skip_bad) throw bad_row(outcome, record, line);
        const char* next = length > 0 ? record + length : end;
        p = next;
        ++partial->bad_rows;
        if (partial->bad_lines.size() < 10) partial->bad_lines.push_back(line);
        line += static_cast<std::uint64_t>(std::count(record, next, '\n'));
      }
      const std::size_t record_end = static_cast<std::size_t>(p - begin);
      partial->bytes +=
          std::min(record_end, seg.real_len) - static_cast<std::size_t>(record - begin);
      ++row;
    }
    // A segment that ends inside a record may have opened a chunk for it.
    if (partial != nullptr && partial->rows == 0 && partial->bad_rows == 0) out.partials.pop_back();
    out.consumed = static_cast<std::size_t>(p - begin);
    out.records = row - seg.row;
    out.lines = line - seg.line;
    out.end_offset = seg.offset + std::min(out.consumed, seg.real_len);
  }

 private:
  enum Kind : unsigned char { empty, number, text };
  // What parsing a record found; trivially copyable, so the good case costs nothing.
  struct Outcome {
    enum { good, incomplete, bad } kind = good;
    enum { none, too_many, too_few, unclosed, after_quote, quote_inside } problem = none;
    const char* where = nullptr;  // the byte the problem is at
    std::size_t fields = 0;       // fields found, for too_few
  };

  // Parses the record at `cursor`, moving it past the record when it is good. Inlined in
  // run(): the call and the Outcome through memory cost 5 % otherwise.
  [[gnu::always_inline]] Outcome parse_record(const char*& cursor, const char* end, bool eof,
                                              std::uint64_t& quoted_lines, Specials& specials) {
    const std::size_t columns = config_.columns;
    const char delimiter = config_.delimiter;
    const char* p = cursor;  // a local: stores through a char pointer would alias it
    std::size_t column = 0;
    for (;;) {
      const char* field = p;
      if (column == columns) {
        return {Outcome::bad, Outcome::too_many, field, column};
      }
      Kind kind;
      double value = 0;
      if (*p == '"') {
        const char* close = p + 1;
        bool escaped = false;
        for (;;) {
          close = specials.next(close);
          if (close == end - 1) {  // the view's last newline, inside the quotes
            if (!eof) return {Outcome::incomplete};
            return {Outcome::bad, Outcome::unclosed, field};
          }
          if (*close == '"') {
            if (close[1] != '"') break;  // close < end - 1: the view ends with '\n'
            escaped = true;
            close += 2;
            continue;
          }
          quoted_lines += *close == '\n';
          ++close;
        }
        p = close + 1;
        if (*p != delimiter && *p != '\n' && !(*p == '\r' && p[1] == '\n')) {
          return {Outcome::bad, Outcome::after_quote, p};
        }
        if (close == field + 1) {
          kind = empty;
        } else {
          kind = !escaped && parse_number(field + 1, close, value) ? number : text;
        }
      } else {
        p = specials.next(p);
        while (*p == '\r' && p[1] != '\n') p = specials.next(p + 1);  // a lone CR is text
        if (*p == '"') return {Outcome::bad, Outcome::quote_inside, p};
        if (p == field)
          kind = empty;
        else
          kind = parse_number(field, p, value) ? number : text;
      }
      values_[column] = value;
      kinds_[column] = kind;
      ++column;
      if (*p == delimiter) {
        ++p;
        continue;
      }
      if (*p == '\r') ++p;
      if (column < columns) {
        return {Outcome::bad, Outcome::too_few, p, column};
      }
      cursor = p + 1;  // past the newline
      return {};
    }
  }

  void commit(Partial& partial) {
    ++partial.rows;
    Acc* acc = partial.columns.data();
    for (std::size_t c = 0; c < config_.columns; ++c) {
      switch (kinds_[c]) {
        case number: {
          const double v = values_[c];
          ++acc[c].count;
          acc[c].sum += v;
          acc[c].min = v < acc[c].min ? v : acc[c].min;
          acc[c].max = v > acc[c].max ? v : acc[c].max;
          break;
        }
        case text:
          ++acc[c].non_numeric;
          break;
        case empty:
          ++acc[c].empty;
          break;
      }
    }
  }

  ValueError bad_row(const Outcome& outcome, const char* record, std::uint64_t line) const {
    const char* where = outcome.where;
    const char* line_start = record;
    for (const char* p = record; p < where; ++p) {
      if (*p == '\n') {
        ++line;
        line_start = p + 1;
      }
    }
    std::string what;
    switch (outcome.problem) {
      case Outcome::too_many:
        what = fmt::format("more fields than the header's {}", config_.columns);
        break;
      case Outcome::too_few:
        what = fmt::format("{} fields where the header has {}", outcome.fields, config_.columns);
        break;
      case Outcome::unclosed:
        what = "a quoted field is never closed";
        break;
      case Outcome::after_quote:
        what = "a character after a closing quote";
        break;
      case Outcome::quote_inside:
        what = "a quote inside an unquoted field";
        break;
      case Outcome::none:
        break;
    }
    return ValueError(fmt::format("dataset: {}:{}:{}: malformed row: {}", *config_.path, line,
                                  where - line_start + 1, what));
  }

  Config config_;
  std::vector<double> values_;
  std::vector<Kind> kinds_;
};

/// The header's field names, quotes removed; `consumed` is its length with the line end.
inline std::vector<std::string> parse_header(const char* p, std::size_t n, char delimiter,
                                             std::size_t& consumed) {
  std::vector<std::string> names(1);
  bool in = false;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in) {
      if (c == '"' && i + 1 < n && p[i + 1] == '"') {
        names.back() += '"';
        ++i;
      } else if (c == '"') {
        in = false;
      } else {
        names.back() += c;
      }
    } else if (c == '"') {
      in = true;
    } else if (c == delimiter) {
      names.emplace_back();
    } else if (c == '\n') {
      consumed = i + 1;
      return names;
    } else if (!(c == '\r' && i + 1 < n && p[i + 1] == '\n')) {
      names.back() += c;
    }
  }
  consumed = n;
  return names;
}

/// The first grammar problem in the start of a record that has not ended (its offset and what
/// it is), if any: what to report when a record grows past the limit because a stray quote
/// opened it.
inline std::optional<std::pair<std::size_t, const char*>> grammar_problem(std::string_view text,
                                                                          char delimiter) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    if (text[i] == '"') {
      ++i;
      for (;;) {
        const std::size_t close = text.find('"', i);
        if (close == std::string_view::npos || close + 1 >= n) return std::nullopt;  // still open
        if (text[close + 1] == '"') {
          i = close + 2;
          continue;
        }
        i = close + 1;
        break;
      }
      if (text[i] == delimiter)
        ++i;
      else if (text[i] != '\r' && text[i] != '\n')
        return std::pair{i, "a character after a closing quote"};
      else
        return std::nullopt;
    } else {
      while (i < n && text[i] != delimiter && text[i] != '"' && text[i] != '\n') ++i;
      if (i == n || text[i] == '\n') return std::nullopt;
      if (text[i] == '"') return std::pair{i, "a quote inside an unquoted field"};
      ++i;
    }
  }
  return std::nullopt;
}

/// How a memory budget is shared. Each thread's buffer (and the iterating thread's, and the
/// carried record's) holds a longest record plus a step; the per-chunk results of a segment in
/// flight (at most two per worker, plus the one being merged) take what results_for() says,
/// which the data step keeps near budget / 512 (8 KiB at least). The longest record and the steps
/// depend on the budget, the header and the chunk size, never on the threads, so that the cuts do
/// not.
struct Plan {
  std::size_t budget = 0;
  std::size_t step = 0;        ///< bytes of new data per segment while reading the header
  std::size_t max_record = 0;  ///< a longer record is an error
  std::size_t buffer = 0;      ///< the most a thread's buffer holds

  explicit Plan(std::size_t b)
      : budget(b),
        step(std::clamp<std::size_t>(b / 256, 4096, std::size_t{1} << 20)),
        max_record(b / 64),
        buffer(max_record + step + 2) {}

  /// The most a segment of `s` new bytes can need for its results: one partial per chunk it
  /// touches, rows being at least one byte per column.
  static std::size_t results_for(std::size_t s, std::size_t columns, std::uint64_t chunk_size) {
    const std::size_t per_partial = columns * sizeof(Acc) + sizeof(Partial) + 10 * 8 + 64;
    const std::uint64_t rows = 1 + s / std::max<std::size_t>(columns, 1);
    return static_cast<std::size_t>(rows / chunk_size + 2) * per_partial;
  }

  /// The step for the data rows: the largest (halving from `step`, at least 64 bytes) whose
  /// results fit budget / 512, or 8 KiB when that is more.
  std::size_t data_step(std::size_t columns, std::uint64_t chunk_size) const {
    const std::size_t target = std::max<std::size_t>(budget / 512, 8192);
    std::size_t s = step;
    while (s > 64 && results_for(s, columns, chunk_size) > target) s /= 2;
    return s;
  }

  /// The bytes `threads` threads need: their buffers and the results in flight.
  std::size_t need(unsigned threads, std::size_t columns, std::uint64_t chunk_size) const {
    const std::size_t results = results_for(data_step(columns, chunk_size), columns, chunk_size);
    return (std::size_t{threads} + 2) * buffer + (2 * std::size_t{threads} + 1) * results;
  }

  /// A budget enough for `threads` threads (a power of two), or 0 if none is.
  static std::size_t enough(unsigned threads, std::size_t columns, std::uint64_t chunk_size) {
    for (std::size_t b = std::size_t{1} << 16; b <= std::size_t{1} << 50; b *= 2) {
      if (Plan(b).need(threads, columns, chunk_size) <= b) return b;
    }
    return 0;
  }
};

/// Everything one pass over a file needs; owned by its ChunkRange.
class Run {
 public:
  Run(const std::filesystem::path& path, std::uint64_t chunk_size, const ProcessorOptions& options)
      : file_(path),
        options_(options),
        started_(std::chrono::steady_clock::now()),
        plan_(options.memory_budget) {
    const unsigned threads = options.threads;
    std::uint64_t start = 0;
    if (file_.size() >= 3) {
      char bom[3];
      file_.read_at(bom, 3, 0);
      if (std::memcmp(bom, "\xEF\xBB\xBF", 3) == 0) start = 3;
    }
    source_.emplace(file_, options.use_mmap, plan_.step, plan_.buffer, start);
    read_header();
    config_ = {&file_.path(), names_.size(), options.delimiter,
               options.on_bad_row == BadRowAction::skip, chunk_size};
    const std::size_t columns = std::max<std::size_t>(names_.size(), 1);
    if (plan_.need(threads, columns, chunk_size) > options.memory_budget) {
      const std::size_t enough = Plan::enough(threads, columns, chunk_size);
      throw ValueError(
          enough == 0
              ? fmt::format("dataset: no memory_budget is enough for {} threads", threads)
              : fmt::format("dataset: memory_budget {} is too small for {} thread{} ({} is enough)",
                            options.memory_budget, threads, threads == 1 ? "" : "s", enough));
    }
    source_->set_step(plan_.data_step(columns, chunk_size));
    if (threads > 1 && !finished_) {
      try {
        for (unsigned t = 0; t < threads; ++t) workers_.emplace_back([this] { work(); });
      } catch (...) {  // a thread that could not start: stop and join the others
        stop_workers();
        throw;
      }
    }
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  ~Run() { stop_workers(); }

  const std::vector<std::string>& header() const { return names_; }

  /// The next chunk, or nullptr at the end of the file. Chunks are made one at a time from the
  /// current segment's partials, so a segment's results are never all copied out at once.
  ChunkResult* next() {
    for (;;) {
      while (pending_next_ < pending_.partials.size()) {
        Partial& partial = pending_.partials[pending_next_];
        if (building_ && building_chunk_ != partial.chunk) return emit();
        merge(partial);
        ++pending_next_;
      }
      if (finished_) {
        if (!reported_end_) {
          reported_end_ = true;
          report(file_.size());
        }
        return building_ ? emit() : nullptr;
      }
      pending_ = SegmentOut{};
      pending_next_ = 0;
      bool more;
      try {
        more = fetch(pending_);
      } catch (...) {
        fail();
        throw;
      }
      if (!more) {
        finished_ = true;
      } else if (pending_.error) {
        const std::exception_ptr error = pending_.error;
        fail();
        std::rethrow_exception(error);
      } else {
        rows_done_ += pending_.records;
        report(pending_.end_offset);
      }
    }
  }

 private:
  void stop_workers() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_workers_.notify_all();
    for (auto& w : workers_) w.join();
  }

  ChunkResult* emit() {
    current_ = std::move(*building_);
    building_.reset();
    return &current_;
  }

  void fail() {
    finished_ = true;
    reported_end_ = true;
    building_.reset();
    pending_ = SegmentOut{};
    pending_next_ = 0;
  }

  // Whether the carried record is still within plan_.max_record. A longer one that is malformed
  // (a stray quote opens a quoted section the next quote may close far away) gives false when
  // skipping is allowed (skip_long_record then passes over it), else its grammar error; one
  // that is well-formed gives the length error. The same on every thread count.
  bool check_record_length(std::uint64_t line, bool may_skip) const {
    const std::string_view carry = source_->carry();
    if (carry.size() <= plan_.max_record) return true;
    if (const auto problem = grammar_problem(carry, options_.delimiter)) {
      if (may_skip && config_.skip_bad) return false;
      throw_malformed(carry, *problem, line, may_skip ? "row" : "header");
    }
    throw ValueError(
        fmt::format("dataset: {}:{}: a record longer than {} bytes (memory_budget / 64)",
                    file_.path(), line, plan_.max_record));
  }

  [[noreturn]] void throw_malformed(std::string_view record,
                                    std::pair<std::size_t, const char*> problem, std::uint64_t line,
                                    const char* what) const {
    const std::string_view before = record.substr(0, problem.first);
    const std::size_t line_start = before.rfind('\n');
    throw ValueError(fmt::format(
        "dataset: {}:{}:{}: malformed {}: {}", file_.path(),
        line + static_cast<std::uint64_t>(std::count(before.begin(), before.end(), '\n')),
        line_start == std::string_view::npos ? problem.first + 1 : problem.first - line_start, what,
        problem.second));
  }

  // Passes over a malformed record too long to hold, reading on to its end by the quote rule
  // a buffer at a time, and makes it the segment `out`: one bad row at `line`.
  void skip_long_record(SegmentOut& out, std::uint64_t row, std::uint64_t line) {
    const std::string_view carry = source_->carry();
    const std::uint64_t start = source_->carry_offset();
    bool inside = std::count(carry.begin(), carry.end(), '"') % 2 == 1;
    std::uint64_t lines = static_cast<std::uint64_t>(std::count(carry.begin(), carry.end(), '\n'));
    std::uint64_t offset = start + carry.size();
    std::uint64_t end = file_.size();
    const std::size_t size = plan_.step;
    auto buffer =
        std::make_unique_for_overwrite<char[]>(size);  // a thread's own may hold the carry
    while (offset < end) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, end - offset));
      file_.read_at(buffer.get(), n, offset);
      for (std::size_t i = 0; i < n; ++i) {
        if (buffer[i] == '"') {
          inside = !inside;
        } else if (buffer[i] == '\n') {
          ++lines;
          if (!inside) {
            end = offset + i + 1;
            break;
          }
        }
      }
      offset += n;
    }
    source_->restart_at(end);  // a record that runs to the end of the file ends there
    Partial partial{row / config_.chunk_size,          0,     1, end - start,
                    std::vector<Acc>(config_.columns), {line}};
    out.partials.push_back(std::move(partial));
    out.records = 1;
    out.lines = lines;
    out.end_offset = end;
  }

  void read_header() {
    Workspace& ws = main_space_;  // the carry stays in it for the first segment
    Segment seg;
    seg.line = 1;
    for (;;) {
      check_record_length(1, false);
      if (!source_->claim(ws, seg)) break;
      std::size_t consumed = 0;
      const Cut cut = find_cut(seg.data, seg.len);
      if (cut.records == 0 && !seg.eof) {
        source_->advance(seg, 0);
        continue;
      }
      if (cut.records == 0) {  // the whole file is one open record: a stray quote, or worse
        const std::string_view all(seg.data, seg.real_len);
        if (const auto problem = grammar_problem(all, options_.delimiter)) {
          throw_malformed(all, *problem, 1, "header");
        }
        throw ValueError(
            fmt::format("dataset: {}:1: the header has a quoted field never closed", file_.path()));
      }
      const std::string_view header(seg.data, cut.end);  // the first record: the header
      if (const auto problem = grammar_problem(
              header.substr(0, first_end(seg.data, seg.data + seg.len)), options_.delimiter)) {
        throw_malformed(header, *problem, 1, "header");
      }
      names_ = parse_header(seg.data, seg.len, options_.delimiter, consumed);
      line_ = 1 + static_cast<std::uint64_t>(std::count(seg.data, seg.data + consumed, '\n'));
      source_->restart_at(seg.offset + std::min(consumed, seg.real_len));
      return;
    }
    finished_ = true;  // an empty file: no header, no rows
  }

  // Claims and parses the next segment on this thread (one thread) or takes it from the
  // workers in file order (several).
  bool fetch(SegmentOut& out) {
    if (workers_.empty()) {
      Segment seg;
      if (!parser_) parser_.emplace(config_);
      if (!check_record_length(line_, true)) {
        skip_long_record(out, row_, line_);
        row_ += out.records;
        line_ += out.lines;
        return true;
      }
      if (!source_->claim(main_space_, seg)) return false;
      if (!seg.eof) {
        // Whole records only: the view ends at its last newline (the parser stops before a
        // record that a quoted newline there leaves open).
        const void* last = ::memrchr(seg.data, '\n', seg.len);
        const std::size_t len =
            last == nullptr
                ? 0
                : static_cast<std::size_t>(static_cast<const char*>(last) - seg.data) + 1;
        seg.len = len;
        seg.real_len = std::min(seg.real_len, len);
      }
      seg.row = row_;
      seg.line = line_;
      parser_->run(seg, out);
      source_->advance(seg, out.consumed);
      row_ += out.records;
      line_ += out.lines;
      return true;
    }
    std::unique_lock lock(mutex_);
    segment_ready_.wait(lock, [&] { return results_.count(taken_) > 0 || taken_ == end_seq_; });
    if (taken_ == end_seq_) return false;
    auto it = results_.find(taken_);
    out = std::move(it->second);
    results_.erase(it);
    ++taken_;
    lock.unlock();
    wake_workers_.notify_all();
    return true;
  }

  void work() {
    Parser parser(config_);
    Workspace ws;
    const std::uint64_t ahead = 2 * std::uint64_t{options_.threads};  // results in flight
    for (;;) {
      Segment seg;
      Cut cut;
      std::uint64_t seq;
      SegmentOut out;
      bool skipped = false;  // a long bad record passed over: `out` is its result
      {
        std::unique_lock lock(mutex_);
        wake_workers_.wait(lock, [&] { return stop_ || done_ || claimed_ - taken_ < ahead; });
        if (stop_ || done_) return;
        // Claiming under the lock cuts the file in order; parsing, the bulk of the work, is not.
        seq = claimed_;
        try {
          if (!check_record_length(line_, true)) {
            skip_long_record(out, row_, line_);
            row_ += out.records;
            line_ += out.lines;
            skipped = true;
          } else if (!source_->claim(ws, seg)) {
            done_ = true;
            end_seq_ = seq;
            lock.unlock();
            segment_ready_.notify_all();
            return;
          } else {
            cut = find_cut(seg.data, seg.len);
            if (seg.eof && cut.end < seg.len) {
              cut.end = seg.len;  // the last record, with its quote unclosed: the parser says so
              ++cut.records;
              cut.lines =
                  static_cast<std::uint64_t>(std::count(seg.data, seg.data + seg.len, '\n'));
            }
            seg.row = row_;
            seg.line = line_;
            source_->advance(seg, cut.end);
            row_ += cut.records;
            line_ += cut.lines;
          }
        } catch (...) {
          out.error = std::current_exception();
        }
        ++claimed_;
        if (out.error) {
          done_ = true;
          end_seq_ = seq + 1;
        }
      }
      if (!out.error && !skipped) {
        try {
          Segment mine = seg;
          mine.len = cut.end;
          mine.real_len = std::min(seg.real_len, cut.end);
          parser.run(mine, out);
          if (out.consumed != cut.end) {
            throw Error(
                fmt::format("dataset: internal error: parser and cutter disagree at "
                            "offset {} of '{}'",
                            seg.offset + out.consumed, file_.path()));
          }
        } catch (...) {
          out.error = std::current_exception();
        }
      }
      {
        std::lock_guard lock(mutex_);
        if (out.error && !done_) {
          done_ = true;
          end_seq_ = seq + 1;
        }
        results_.emplace(seq, std::move(out));
      }
      segment_ready_.notify_all();
    }
  }

  void merge(const Partial& partial) {
    if (!building_) {
      building_.emplace();
      building_chunk_ = partial.chunk;
      building_->first_row = partial.chunk * config_.chunk_size;
      building_->columns.resize(names_.size());
      for (std::size_t c = 0; c < names_.size(); ++c) building_->columns[c].name = names_[c];
    }
    ChunkResult& chunk = *building_;
    chunk.rows += partial.rows;
    chunk.bytes += partial.bytes;
    chunk.bad_rows += partial.bad_rows;
    keep_first_ten(chunk.bad_lines, partial.bad_lines);
    for (std::size_t c = 0; c < names_.size(); ++c) add_stats(chunk.columns[c], partial.columns[c]);
  }

  void report(std::uint64_t offset) {
    if (!options_.progress) return;
    options_.progress(
        Progress{offset, file_.size(), rows_done_, std::chrono::steady_clock::now() - started_});
  }

  File file_;
  ProcessorOptions options_;
  std::chrono::steady_clock::time_point started_;
  Plan plan_;
  std::optional<Source> source_;
  std::vector<std::string> names_;
  Parser::Config config_;

  // The iterating thread's state.
  bool finished_ = false, reported_end_ = false;
  SegmentOut pending_;            // the segment being turned into chunks
  std::size_t pending_next_ = 0;  // its first partial not merged yet
  std::optional<ChunkResult> building_;
  std::uint64_t building_chunk_ = 0;
  ChunkResult current_;
  std::uint64_t rows_done_ = 0;
  std::optional<Parser> parser_;
  Workspace main_space_;

  // Shared with the workers, under mutex_ (row_ and line_ too when there are workers).
  std::uint64_t row_ = 0, line_ = 1;
  std::mutex mutex_;
  std::condition_variable wake_workers_, segment_ready_;
  bool stop_ = false, done_ = false;
  std::uint64_t claimed_ = 0, taken_ = 0;
  std::uint64_t end_seq_ = std::numeric_limits<std::uint64_t>::max();
  std::map<std::uint64_t, SegmentOut> results_;
  std::vector<std::thread> workers_;
};

}  // namespace detail::csv

/// The chunks of one file, computed as they are iterated: a C++20 input range of ChunkResult.
/// Move-only; destroying it stops any worker threads. A malformed row, when raised, is thrown by
/// the iteration step that reaches the segment holding it (256 KiB of rows with the default
/// budget), so the chunks of that segment before the row are not delivered.
class ChunkRange {
 public:
  class iterator {
   public:
    using value_type = ChunkResult;
    using difference_type = std::ptrdiff_t;
    using reference = ChunkResult&;

    iterator() = default;
    ChunkResult& operator*() const { return *current_; }
    ChunkResult* operator->() const { return current_; }
    iterator& operator++() {
      current_ = run_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.current_ == nullptr;
    }

   private:
    friend class ChunkRange;
    explicit iterator(detail::csv::Run* run) : run_(run), current_(run->next()) {}
    detail::csv::Run* run_ = nullptr;
    ChunkResult* current_ = nullptr;
  };

  /// Starts the iteration; call once (an input range is consumed as it goes).
  iterator begin() {
    if (!run_) throw ValueError("dataset: this ChunkRange was moved from");
    if (started_) throw ValueError("dataset: a ChunkRange can be iterated only once");
    started_ = true;
    return iterator(run_.get());
  }
  std::default_sentinel_t end() const { return {}; }

  /// The file's column names (empty for an empty file).
  const std::vector<std::string>& header() const {
    if (!run_) throw ValueError("dataset: this ChunkRange was moved from");
    return run_->header();
  }

 private:
  friend class DatasetProcessor;
  explicit ChunkRange(std::unique_ptr<detail::csv::Run> run) : run_(std::move(run)) {}
  std::unique_ptr<detail::csv::Run> run_;
  bool started_ = false;
};

/// Statistics of CSV files (RFC 4180, with a header row) of any size in bounded memory: each
/// numeric column's count, sum, min, max and mean, per chunk of rows and for the whole file.
class DatasetProcessor {
 public:
  /// `chunk_size` data rows make one ChunkResult. ValueError on a zero chunk size, a thread
  /// count outside 1 to 256, or a delimiter that is a quote, a line end or a character of
  /// numbers (a digit, point, sign, e or E).
  explicit DatasetProcessor(std::size_t chunk_size = 10000, ProcessorOptions options = {})
      : chunk_size_(chunk_size), options_(std::move(options)) {
    if (chunk_size_ == 0) throw ValueError("dataset: chunk_size must be at least 1, not 0");
    if (options_.threads == 0 || options_.threads > 256) {
      throw ValueError(
          fmt::format("dataset: threads must be between 1 and 256, not {}", options_.threads));
    }
    const char d = options_.delimiter;
    if (d == '"' || d == '\n' || d == '\r') {
      throw ValueError(
          fmt::format("dataset: the delimiter cannot be {}", d == '"' ? "a quote" : "a line end"));
    }
    if ((d >= '0' && d <= '9') || d == '.' || d == '+' || d == '-' || d == 'e' || d == 'E') {
      throw ValueError(
          fmt::format("dataset: the delimiter cannot be '{}', a character of numbers", d));
    }
  }

  /// Opens `path` and reads its header; the rows are read as the returned range is iterated
  /// (with several threads, the workers start at once and read up to two segments each ahead).
  /// Error if the file is missing, a directory or unreadable; ValueError if the budget is too
  /// small for the threads.
  ChunkRange process_file(const std::filesystem::path& path) const {
    return ChunkRange(std::make_unique<detail::csv::Run>(path, chunk_size_, options_));
  }

  /// Merges the chunks of a range (consumed lazily, one chunk at a time) into the file's totals.
  template <std::ranges::input_range R>
  requires std::convertible_to < std::ranges::range_reference_t<R>,
  const ChunkResult& > DatasetSummary aggregate_results(R&& chunks) const {
    DatasetSummary summary;
    for (const ChunkResult& chunk : chunks) {
      if (summary.columns.empty())
        summary.columns = chunk.columns;
      else {
        for (std::size_t c = 0; c < chunk.columns.size(); ++c) {
          summary.columns[c].merge(chunk.columns[c]);
        }
      }
      summary.rows += chunk.rows;
      summary.bytes += chunk.bytes;
      summary.bad_rows += chunk.bad_rows;
      detail::csv::keep_first_ten(summary.bad_lines, chunk.bad_lines);
    }
    return summary;
  }

  /// The file's totals in one call (columns named even when there are no rows).
  DatasetSummary aggregate_file(const std::filesystem::path& path) const {
    ChunkRange chunks = process_file(path);
    DatasetSummary summary = aggregate_results(chunks);
    if (summary.columns.empty()) {
      for (const auto& name : chunks.header()) summary.columns.push_back(ColumnStats{name});
    }
    return summary;
  }

  /// What memory_usage() returns: the process's resident memory in bytes.
  using MemoryUsage = ProcessMemory;

  /// The process's current, peak and anonymous resident memory (process_memory()).
  MemoryUsage memory_usage() const { return process_memory(); }

  std::size_t chunk_size() const { return chunk_size_; }
  const ProcessorOptions& options() const { return options_; }

 private:
  std::size_t chunk_size_;
  ProcessorOptions options_;
};

}  // namespace memlens
