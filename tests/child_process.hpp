/// Runs part of a test in a child process, for what only a process can show: what happens at
/// exit, or a check that aborts. The child's stdout and stderr are captured.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace test_child {

struct Outcome {
  int status = 0;  // as waitpid gives it
  std::string output;

  bool exited_with(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
  bool killed_by(int signal) const { return WIFSIGNALED(status) && WTERMSIG(status) == signal; }
};

namespace detail {
/// Reads the child's output until it closes the pipe, then reaps it.
inline Outcome collect(pid_t child, int read_end) {
  Outcome outcome;
  char buffer[4096];
  for (ssize_t n; (n = read(read_end, buffer, sizeof buffer)) != 0;) {
    if (n > 0) outcome.output.append(buffer, static_cast<std::size_t>(n));
  }
  close(read_end);
  while (waitpid(child, &outcome.status, 0) < 0) {
  }
  return outcome;
}
}  // namespace detail

/// Forks a child whose stdout and stderr go to a pipe, with an alarm that kills it if it hangs
/// (a deadlock), so a test never waits forever; runs `in_child` there, then collects.
template <class F>
Outcome spawn(F&& in_child, unsigned timeout_seconds) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) std::abort();
  std::fflush(nullptr);  // or the child would write what the parent has buffered, again
  const pid_t child = fork();
  if (child == 0) {
    // The child is not a test run: a signal ends it as it ends any program, for the parent to
    // read in its status. Catch2's handlers allocate, which a signal handler must not (under
    // ThreadSanitizer that turns an expected SIGABRT into a report and another exit status).
    for (int signal : {SIGABRT, SIGSEGV, SIGILL, SIGFPE, SIGBUS, SIGINT, SIGTERM}) {
      std::signal(signal, SIG_DFL);
    }
    close(pipe_fds[0]);
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    alarm(timeout_seconds);
    std::forward<F>(in_child)();
    _exit(127);  // in_child exits itself
  }
  close(pipe_fds[1]);
  return detail::collect(child, pipe_fds[0]);
}

/// Runs `body` in a forked child, which exits 0 when it returns.
template <class F>
Outcome run_in_child(F&& body, unsigned timeout_seconds = 60) {
  return spawn(
      [&body] {
        std::forward<F>(body)();
        std::fflush(nullptr);
        _exit(0);
      },
      timeout_seconds);
}

/// Runs this test program again with `args` (a hidden test case's name, say), and lets it exit
/// normally, static destruction included.
inline Outcome run_self(const std::vector<std::string>& args, unsigned timeout_seconds = 120) {
  return spawn(
      [&args] {
        std::vector<std::string> copies = args;
        std::string self = "/proc/self/exe";
        std::vector<char*> argv{self.data()};
        for (auto& arg : copies) argv.push_back(arg.data());
        argv.push_back(nullptr);
        execv(self.c_str(), argv.data());
      },
      timeout_seconds);
}

// Sanitizers replace malloc with their own allocator, and ASan cannot run under RLIMIT_DATA.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool can_starve_malloc = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
inline constexpr bool can_starve_malloc = false;
#else
inline constexpr bool can_starve_malloc = true;
#endif
#else
inline constexpr bool can_starve_malloc = true;
#endif

/// What starve_malloc took, kept where the optimizer cannot see it unused.
inline void* volatile starved_blocks = nullptr;

/// In a child process only (see run_in_child): makes malloc fail from now on, except for one
/// block of each of `spare_sizes`, which stays free for a request of that size (glibc keeps a
/// freed small block for requests of exactly its size class). Returns false if it could not.
inline bool starve_malloc(std::initializer_list<std::size_t> spare_sizes) {
  std::size_t data_kib = 0;
  {  // closed before malloc is starved: its buffer must not be freed after
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmData:", 0) == 0) data_kib = std::stoul(line.substr(7));
    }
  }
  if (data_kib == 0) return false;
  // Every pointer malloc returns here escapes through a volatile, or the optimizer could elide
  // the allocation (and fold a comparison of its result with null).
  void* spares[16] = {};
  std::size_t n = 0;
  for (std::size_t size : spare_sizes) starved_blocks = spares[n++] = std::malloc(size);
  // No more heap than what is mapped now; then take every block malloc can still carve out.
  const rlimit limit{data_kib * 1024, data_kib * 1024};
  if (setrlimit(RLIMIT_DATA, &limit) != 0) return false;
  void* taken = nullptr;
  // A failed request may consolidate free blocks into one that a retry finds: stop only after
  // several failures in a row.
  for (std::size_t size : {1u << 20, 1u << 16, 4096u, 512u, 64u, 16u}) {
    for (int failures = 0; failures < 4;) {
      if (void* p = std::malloc(size)) {
        *static_cast<void**>(p) = taken;
        taken = p;
        failures = 0;
      } else {
        ++failures;
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i) std::free(spares[i]);
  starved_blocks = taken;
  void* last = std::malloc(16);
  starved_blocks = last;
  return last == nullptr;
}

}  // namespace test_child
