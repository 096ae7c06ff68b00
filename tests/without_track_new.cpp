// A program that traces without memlens/track_new.hpp (CTest: tracemalloc.without_track_new).
// Its operator new is the standard library's, which the tracer never sees: start() must say so
// on stderr, once however often it runs, and is_hooked() must say so too, while what does not
// need the hook (Allocator, and small memlens objects, which make's pool traces) is still
// traced. Exits 0 only if all of that holds.
#include <unistd.h>

#include <cstdio>
#include <memlens/object.hpp>
#include <memlens/tracemalloc.hpp>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("without_track_new: failed: %s\n", what);
    ++failures;
  }
}

/// Keeps the optimizer from removing an allocation nobody reads.
void escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

}  // namespace

int main() {
  namespace tracemalloc = memlens::tracemalloc;
  // stderr goes to a file while tracemalloc runs, to be read back.
  std::FILE* captured = std::tmpfile();
  if (captured == nullptr) return 2;
  std::fflush(stderr);
  const int saved_stderr = dup(STDERR_FILENO);
  dup2(fileno(captured), STDERR_FILENO);

  expect(!tracemalloc::is_hooked(), "is_hooked() before start()");
  expect(!tracemalloc::is_tracing(), "is_hooked() leaves tracing off");
  tracemalloc::start();
  expect(!tracemalloc::is_hooked(), "is_hooked() while tracing");
  auto* untraced = new std::vector<int>(1000);
  escape(untraced);
  expect(tracemalloc::get_traced_memory().current == 0, "new is not traced");
  std::vector<int, tracemalloc::Allocator<int>> traced(1000);
  escape(traced.data());
  expect(tracemalloc::get_traced_memory().current == 1000 * sizeof(int), "Allocator is traced");
  auto object = memlens::make<long long>(7);
  // Sanitizer builds have no pool: there make's blocks come from the untraced operator new.
  expect(tracemalloc::get_object_traceback(object).has_value() == memlens::detail::pool::enabled,
         "small memlens objects are traced through the pool");
  delete untraced;
  tracemalloc::stop();
  tracemalloc::start();
  tracemalloc::stop();

  std::fflush(stderr);
  dup2(saved_stderr, STDERR_FILENO);
  std::string said;
  std::rewind(captured);
  for (int c; (c = std::fgetc(captured)) != EOF;) said += static_cast<char>(c);
  const std::string message = "memlens: tracemalloc: the global operator new is not traced";
  const auto first = said.find(message);
  expect(first != std::string::npos, "start() says that new is not traced");
  expect(first == std::string::npos || said.find(message, first + 1) == std::string::npos,
         "start() says it once");
  expect(said.find("memlens/track_new.hpp") != std::string::npos, "the message names the fix");
  std::printf("stderr while tracing:\n%s", said.c_str());
  return failures == 0 ? 0 : 1;
}
