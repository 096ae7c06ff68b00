// Shared by the benchmarks that run a child process and read its report: the report line's
// marker, running a program with its output captured and its time measured, and finding one.
#pragma once

#include <fcntl.h>
#include <fmt/core.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memlens_bench {

/// Starts the one line of a child's output that carries its figures: the marker, then a flat
/// JSON object (json_field.hpp reads it).
inline constexpr std::string_view kReportMarker = "memlens-bench-child: ";

struct ChildRun {
  bool exited_zero = false;
  double seconds = 0;      // real time from spawn to exit
  double cpu_seconds = 0;  // user + system time of the child and the processes it waited for
  std::string output;      // its stdout and stderr
  std::string report;      // the JSON object of its report line; empty if it printed none

  /// What went wrong, for SkipWithError: the exit, then the end of the output.
  std::string problem(std::string_view what) const {
    std::string tail = output.size() > 600 ? "..." + output.substr(output.size() - 600) : output;
    return fmt::format("{} failed{}: {}", what,
                       exited_zero ? " (no report)" : " (exit status not 0)", tail);
  }
};

/// Runs `args` (args[0] looked up in PATH) and waits for it, timing it from spawn to exit.
inline ChildRun run_child(const std::vector<std::string>& args) {
  ChildRun run;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    run.output = fmt::format("pipe: {}", std::strerror(errno));
    return run;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  std::vector<char*> argv;
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (spawned != 0) {
    close(fds[0]);
    run.output = fmt::format("{}: {}", args[0], std::strerror(spawned));
    return run;
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n > 0) {
      run.output.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  const auto end = std::chrono::steady_clock::now();

  run.seconds = std::chrono::duration<double>(end - start).count();
  const auto to_seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  run.cpu_seconds = to_seconds(usage.ru_utime) + to_seconds(usage.ru_stime);
  run.exited_zero = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (const auto at = run.output.find(kReportMarker); at != std::string::npos) {
    const auto begin = at + kReportMarker.size();
    run.report = run.output.substr(begin, run.output.find('\n', begin) - begin);
  }
  return run;
}

/// `name` found in PATH, or nullopt.
inline std::optional<std::string> find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    const auto colon = dirs.find(':');
    const std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    const std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

}  // namespace memlens_bench
