// memlens: writing a file so that a reader never sees half of it (internal). Snapshot::dump and
// the profiler's reports write through it.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "memlens/config.hpp"
#include "memlens/errors.hpp"

namespace memlens::detail {

/// A number no other call in this process gets: with the pid, it names a temporary file of its
/// own, so that threads writing to one path never share one.
MEMLENS_SHARED inline unsigned long next_temporary_number() noexcept {
  static std::atomic<unsigned long> made{0};
  return made.fetch_add(1, std::memory_order_relaxed);
}

/**
 * Writes `bytes` to `path` through a temporary file beside it (`<path>.tmp.<pid>.<n>`, in the
 * same directory so that the rename stays on one file system), flushed to disk, then renamed
 * over `path`: a reader sees the old file or the whole new one, never part of one. On failure
 * the temporary file is removed, `path` is left as it was, and `E` (a memlens::Error) is thrown
 * with the message `<failure> '<path>': <what failed>: <strerror>`, where `failure` names the
 * part and the act, e.g. "tracemalloc: cannot dump snapshot to".
 */
template <class E = Error>
void write_file_atomically(const std::string& path, std::string_view bytes,
                           std::string_view failure) {
  auto fail = [&](const std::string& what, int error) {
    throw E(std::string(failure) + " '" + path + "': " + what + ": " + std::strerror(error));
  };
  const std::string temp = path + ".tmp." + std::to_string(static_cast<long>(getpid())) + "." +
                           std::to_string(next_temporary_number());
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (f == nullptr) fail("cannot create " + temp, errno);
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0 &&
            fsync(fileno(f)) == 0;
  int error = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    std::remove(temp.c_str());
    fail("write failed", error);
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    error = errno;
    std::remove(temp.c_str());
    fail("rename failed", error);
  }
}

}  // namespace memlens::detail
