// memlens: turning return addresses into (file, line, function) for tracemalloc (internal).
// Runs only when a snapshot's tracebacks are asked for, never on the allocation path: dladdr and
// __cxa_demangle for names, and one `llvm-addr2line -i` (or GNU `addr2line -i`) run per module
// for files and lines, including the frames of inlined functions. Results are cached for the
// life of the process.
#pragma once

#include <cxxabi.h>
#include <dlfcn.h>
#include <link.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "memlens/detail/trace_core.hpp"

namespace memlens::detail::trace {

/// A symbolized return address.
struct SymbolInfo {
  std::string filename;
  int lineno = 0;
  std::string function;
};

/// The source-level frames of one return address, innermost first; never empty. The last one
/// is the function the address is in; those before it were inlined into it.
using InlineChain = std::vector<SymbolInfo>;

struct Module {
  std::string path;
  std::uintptr_t bias = 0;  // load address minus the addresses in the file
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> segments;
};

inline std::vector<Module> loaded_modules() {
  std::vector<Module> modules;
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto& list = *static_cast<std::vector<Module>*>(data);
        Module m;
        m.path = info->dlpi_name ? info->dlpi_name : "";
        m.bias = info->dlpi_addr;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          std::uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          m.segments.emplace_back(start, start + ph.p_memsz);
        }
        if (m.path.empty() && list.empty()) {  // the main program
          char buf[4096];
          ssize_t len = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
          if (len > 0) m.path.assign(buf, static_cast<std::size_t>(len));
        }
        list.push_back(std::move(m));
        return 0;
      },
      &modules);
  return modules;
}

inline std::string demangle(const char* name) {
  if (name == nullptr) return {};
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string result = (status == 0 && out) ? out : name;
  std::free(out);
  return result;
}

inline std::string hex(std::uintptr_t value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

/// What dladdr knows: the function's name when the symbol is exported, else the address.
inline SymbolInfo symbolize_with_dladdr(std::uintptr_t pc) {
  SymbolInfo info{"<unknown>", 0, {}};
  Dl_info dl{};
  if (dladdr(reinterpret_cast<void*>(pc), &dl) != 0 && dl.dli_sname != nullptr) {
    info.function = demangle(dl.dli_sname);
  } else {
    info.function = hex(pc);
  }
  return info;
}

/// Single-quotes a string for /bin/sh.
inline std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

/// run_command's status when the command ran but its exit status is lost: a program that
/// ignores SIGCHLD, or reaps every child itself, leaves pclose nothing to wait for.
inline constexpr int status_unknown = -2;

/**
 * A command started through /bin/sh whose output is read later, so that several run at once.
 * finish() returns the output's lines and the exit status (-1 when it could not be run or did
 * not exit normally; 127 from the shell when the tool is missing; status_unknown).
 */
class StartedCommand {
 public:
  explicit StartedCommand(const std::string& command) : pipe_(popen(command.c_str(), "r")) {}
  ~StartedCommand() {
    if (pipe_ != nullptr) pclose(pipe_);
  }
  StartedCommand(const StartedCommand&) = delete;
  StartedCommand& operator=(const StartedCommand&) = delete;

  int finish(std::vector<std::string>& lines) {
    lines.clear();
    if (pipe_ == nullptr) return -1;
    std::string line;
    char buf[4096];
    while (std::fgets(buf, sizeof(buf), pipe_) != nullptr) {
      line += buf;
      if (!line.empty() && line.back() == '\n') {
        line.pop_back();
        lines.push_back(std::move(line));
        line.clear();
      }
    }
    if (!line.empty()) lines.push_back(std::move(line));
    const int status = pclose(std::exchange(pipe_, nullptr));
    if (status == -1 && errno == ECHILD) return status_unknown;
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  FILE* pipe_;
};

/// Runs `command` through /bin/sh and waits for it: StartedCommand::finish's results.
inline int run_command(const std::string& command, std::vector<std::string>& lines) {
  return StartedCommand(command).finish(lines);
}

/// One frame from addr2line's two lines for it: the function ("??" when unknown) and
/// "file:line", maybe followed by " (discriminator N)".
inline SymbolInfo parse_addr2line_frame(const std::string& function, std::string location) {
  SymbolInfo info;
  if (auto d = location.find(" (discriminator"); d != std::string::npos) location.resize(d);
  if (function != "??") info.function = function;
  auto colon = location.rfind(':');
  std::string file = colon == std::string::npos ? location : location.substr(0, colon);
  if (file.empty() || file == "??") {
    info.filename = "<unknown>";
  } else {
    info.filename = file;
    info.lineno = colon == std::string::npos ? 0 : std::atoi(location.c_str() + colon + 1);
  }
  return info;
}

/// Whether `line` is the address `value` as `addr2line -a` echoes it ("0x" and hex digits; GNU
/// pads with zeros, llvm-addr2line does not).
inline bool is_address_line(const std::string& line, std::uintptr_t value) {
  if (line.size() < 3 || line[0] != '0' || line[1] != 'x') return false;
  std::uintptr_t parsed = 0;
  for (std::size_t i = 2; i < line.size(); ++i) {
    char c = line[i];
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return false;
    }
    if (parsed >> (8 * sizeof(std::uintptr_t) - 4) != 0) return false;  // overflow
    parsed = parsed << 4 | digit;
  }
  return parsed == value;
}

/**
 * Splits the output of `addr2line -a -i -f -C` for `offsets` into one inline chain per address:
 * each address is echoed, then followed by one (function, file:line) pair per source-level
 * frame, innermost first (one pair when nothing is inlined there). A group ends where the next
 * pair would begin with the next address; function names never look like "0x<hex>", and the
 * check is made only at pair boundaries, so a file name cannot be mistaken for an address.
 * Returns false (and leaves `out` unspecified) when the output has any other shape.
 */
inline bool parse_addr2line_inlines(const std::vector<std::string>& lines,
                                    const std::vector<std::uintptr_t>& offsets,
                                    std::vector<InlineChain>& out) {
  out.assign(offsets.size(), {});
  std::size_t at = 0;
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    if (at >= lines.size() || !is_address_line(lines[at], offsets[i])) return false;
    ++at;
    const bool last = i + 1 == offsets.size();
    while (at < lines.size() && (last || !is_address_line(lines[at], offsets[i + 1]))) {
      if (at + 1 >= lines.size()) return false;  // a function without its location
      out[i].push_back(parse_addr2line_frame(lines[at], lines[at + 1]));
      at += 2;
    }
    if (out[i].empty()) return false;
  }
  return at == lines.size();
}

/**
 * Runs `tool` on `offsets` (addresses in the file `path`) and fills `out` (same order) with each
 * address's chain of source-level frames, innermost first: with `-i`, an address inside code the
 * compiler inlined (std::vector::resize into the user's function) yields the inlined function's
 * line and then the line in the caller that it was inlined into. A tool that rejects `-a` or
 * `-i` is asked again without them, for one frame per address (the innermost). Returns false
 * when the tool is missing or its output cannot be read.
 */
inline std::string addr2line_command(const std::string& tool, std::string_view options,
                                     const std::string& path,
                                     const std::vector<std::uintptr_t>& offsets) {
  std::string command = shell_quote(tool) + " " + std::string(options) + " -e " + shell_quote(path);
  for (std::uintptr_t off : offsets) command += " " + hex(off);
  return command + " 2>/dev/null";
}

inline constexpr std::string_view addr2line_inline_options = "-a -i -f -C";

/// The tool MEMLENS_ADDR2LINE names, or nullptr when it is unset or empty.
inline const char* chosen_addr2line() {
  const char* chosen = std::getenv("MEMLENS_ADDR2LINE");
  return chosen && *chosen ? chosen : nullptr;
}

/// The first tool run_addr2line tries: MEMLENS_ADDR2LINE, else llvm-addr2line.
inline std::string first_addr2line_tool() {
  const char* chosen = chosen_addr2line();
  return chosen ? chosen : "llvm-addr2line";
}

/// `started`, when given, is the tool's run with addr2line_inline_options, already under way.
inline bool run_addr2line_tool(const std::string& tool, const std::string& path,
                               const std::vector<std::uintptr_t>& offsets,
                               std::vector<InlineChain>& out, StartedCommand* started = nullptr) {
  std::vector<std::string> lines;
  // Without an exit status (status_unknown), the output is judged alone: the -a output echoes
  // every address, and the fallback's has two lines per address; a missing tool prints none.
  int status =
      started != nullptr
          ? started->finish(lines)
          : run_command(addr2line_command(tool, addr2line_inline_options, path, offsets), lines);
  if (status == 127 || status == -1) return false;  // not installed
  const bool ran = status == 0 || status == status_unknown;
  if (ran && parse_addr2line_inlines(lines, offsets, out)) return true;
  status = run_command(addr2line_command(tool, "-f -C", path, offsets), lines);
  if ((status != 0 && status != status_unknown) || lines.size() != offsets.size() * 2) {
    return false;
  }
  out.clear();
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    out.push_back({parse_addr2line_frame(lines[2 * i], lines[2 * i + 1])});
  }
  return true;
}

/**
 * Symbolizes `offsets` in the file `path` with MEMLENS_ADDR2LINE when set, else with
 * llvm-addr2line and GNU addr2line, whichever is installed; when both are and the first leaves
 * some address without a file, the one that names more files wins. llvm-addr2line comes first:
 * GNU addr2line (binutils 2.40 at least) does not read the address ranges clang gives inlined
 * functions in DWARF 5 (DW_FORM_rnglistx), so it drops those frames, and an allocation inlined
 * two levels deep (push_back, then emplace_back) is blamed on a standard library line.
 */
inline bool run_addr2line(const std::string& path, const std::vector<std::uintptr_t>& offsets,
                          std::vector<InlineChain>& out, StartedCommand* started = nullptr) {
  if (const char* chosen = chosen_addr2line()) {
    return run_addr2line_tool(chosen, path, offsets, out, started);
  }
  bool found = false;
  std::size_t best_known = 0;
  for (const char* tool : {"llvm-addr2line", "addr2line"}) {
    std::vector<InlineChain> chains;
    StartedCommand* first = std::exchange(started, nullptr);  // the first tool's run
    if (!run_addr2line_tool(tool, path, offsets, chains, first)) continue;
    std::size_t known = 0;
    for (const InlineChain& chain : chains) known += chain.front().filename != "<unknown>";
    if (!found || known > best_known) {
      out = std::move(chains);
      best_known = known;
      found = true;
    }
    if (best_known == offsets.size()) break;
  }
  return found;
}

/// The process-wide cache (immortal: snapshots may be examined during static destruction).
struct SymbolCache {
  std::mutex mutex;
  std::unordered_map<std::uintptr_t, InlineChain> symbols;
};

MEMLENS_SHARED inline SymbolCache& symbol_cache() {
  static auto* cache = new SymbolCache();
  return *cache;
}

/**
 * Symbolizes return addresses. Returns one inline chain per element of `pcs`, same order.
 * Every frame of the chain is that of the call instruction, pc - 1: the return address may
 * already belong to the next statement, or to another inlined function, and so would the lines
 * of the frames it is inlined into.
 */
inline std::vector<InlineChain> symbolize(const std::vector<std::uintptr_t>& pcs) {
  TracerScope scope;  // the cache is the tracer's memory: never traced
  SymbolCache& cache = symbol_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  std::vector<std::uintptr_t> missing;
  for (std::uintptr_t pc : pcs) {
    if (!cache.symbols.count(pc)) missing.push_back(pc);
  }
  if (!missing.empty()) {
    std::vector<Module> modules = loaded_modules();
    std::map<std::size_t, std::vector<std::uintptr_t>> by_module;
    for (std::uintptr_t pc : missing) {
      std::size_t found = modules.size();
      for (std::size_t m = 0; m < modules.size() && found == modules.size(); ++m) {
        for (const auto& [start, end] : modules[m].segments) {
          if (pc - 1 >= start && pc - 1 < end) {
            found = m;
            break;
          }
        }
      }
      if (found == modules.size() || modules[found].path.empty() ||
          modules[found].path.find("linux-vdso") != std::string::npos) {
        cache.symbols.emplace(pc, InlineChain{symbolize_with_dladdr(pc)});
      } else {
        by_module[found].push_back(pc);
      }
    }
    // One addr2line run per batch of a module's addresses. A run spends most of its time
    // reading the module's debug information, so all first runs start at once and are read in
    // turn: a traceback that reaches from the program into libc costs one run's time, not two.
    struct Batch {
      std::size_t module;
      const std::vector<std::uintptr_t>* pcs;
      std::size_t first, last;
      std::vector<std::uintptr_t> offsets;
      std::unique_ptr<StartedCommand> started;
    };
    constexpr std::size_t batch_size = 512;  // keeps the command line well under ARG_MAX
    std::vector<Batch> batches;
    const std::string tool = first_addr2line_tool();
    for (const auto& [m, list] : by_module) {
      for (std::size_t first = 0; first < list.size(); first += batch_size) {
        Batch& b = batches.emplace_back(
            Batch{m, &list, first, std::min(list.size(), first + batch_size), {}, nullptr});
        for (std::size_t i = b.first; i < b.last; ++i) {
          b.offsets.push_back(list[i] - 1 - modules[m].bias);
        }
      }
    }
    constexpr std::size_t at_once = 4;  // each run holds a module's debug information in memory
    const auto start = [&](std::size_t j) {
      if (j >= batches.size()) return;
      Batch& b = batches[j];
      b.started = std::make_unique<StartedCommand>(
          addr2line_command(tool, addr2line_inline_options, modules[b.module].path, b.offsets));
    };
    for (std::size_t j = 0; j < at_once; ++j) start(j);
    for (std::size_t j = 0; j < batches.size(); ++j) {
      Batch& b = batches[j];
      const std::vector<std::uintptr_t>& list = *b.pcs;
      const std::size_t first = b.first;
      const std::size_t last = b.last;
      std::vector<InlineChain> chains;
      const bool ok = run_addr2line(modules[b.module].path, b.offsets, chains, b.started.get());
      b.started.reset();
      start(j + at_once);
      for (std::size_t i = first; i < last; ++i) {
        SymbolInfo fallback = symbolize_with_dladdr(list[i]);
        InlineChain chain;
        if (ok) {
          chain = std::move(chains[i - first]);
          for (std::size_t k = 0; k < chain.size(); ++k) {
            if (!chain[k].function.empty()) continue;
            // dladdr names the function the address is in: the outermost frame of the chain.
            chain[k].function = k + 1 == chain.size() ? fallback.function : hex(list[i]);
          }
        } else {
          chain.push_back(std::move(fallback));
        }
        cache.symbols.emplace(list[i], std::move(chain));
      }
    }
  }
  std::vector<InlineChain> result;
  result.reserve(pcs.size());
  for (std::uintptr_t pc : pcs) result.push_back(cache.symbols.at(pc));
  return result;
}

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

/// Frames of memlens itself (its headers, the replaced operator new/delete): never shown.
inline bool is_memlens_frame(const SymbolInfo& f) {
  if (f.filename.find("include/memlens/") != std::string::npos) return true;
  if (starts_with(f.function, "operator new") || starts_with(f.function, "operator delete")) {
    return true;
  }
  // Under clang's sanitizers the hook runs inside the sanitizer's allocator: its runtime's
  // functions by prefix, the C allocation functions it defines by exact name (a user's
  // `reallocate_buffer` is the user's).
  for (std::string_view prefix :
       {"__sanitizer", "__tsan", "__asan", "__msan", "__interceptor", "__lsan"}) {
    if (starts_with(f.function, prefix)) return true;
  }
  const std::string_view name = std::string_view(f.function).substr(0, f.function.find('('));
  for (std::string_view allocator :
       {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "valloc"}) {
    if (name == allocator) return true;
  }
  if (f.filename.find("compiler-rt/") != std::string::npos) return true;
  return f.filename == "<unknown>" && starts_with(f.function, "memlens::");
}

/// Whether a function's name, before its parameters, is in the standard library's namespaces.
/// The whole head is searched: a demangled name may start with a return type ("void std::...").
inline bool names_std_function(std::string_view function) {
  const std::string_view head = function.substr(0, function.find('('));
  return head.find("std::") != std::string_view::npos ||
         head.find("__gnu_cxx::") != std::string_view::npos;
}

/// Whether a demangled function name has a parameter list: a '(' outside its template
/// arguments (those may hold function types and lambdas of functions, with parentheses).
inline bool has_parameter_list(std::string_view function) {
  int depth = 0;
  for (char c : function) {
    if (c == '<') ++depth;
    if (c == '>' && depth > 0) --depth;
    if (c == '(' && depth == 0) return true;
  }
  return false;
}

/// Frames of the standard library: in its headers or its shared library. A frame whose location
/// is in a standard header but whose function is not (clang's debug information sometimes gives
/// std code inlined into a user's function without the inline record) stays the user's frame:
/// dropping it would blame the caller, a line that did not allocate. A user's function template
/// with std types in its template arguments counts as std there. A name without a parameter
/// list is the short name the debug information gives an inlined function (g++: `_M_create<...>`
/// for std::function's, without its namespace), never a user's function's full name: in a
/// standard header, that is the library's code.
inline bool is_std_frame(const SymbolInfo& f) {
  if (f.filename.find("/include/c++/") != std::string::npos ||
      f.filename.find("/c++/v1/") != std::string::npos) {
    const bool unknown_function = f.function.empty() || starts_with(f.function, "0x");
    const bool short_name = !has_parameter_list(f.function);
    return unknown_function || short_name || names_std_function(f.function);
  }
  return f.filename == "<unknown>" &&
         (starts_with(f.function, "std::") || starts_with(f.function, "__gnu_cxx::"));
}

/**
 * The distinct return addresses of a snapshot, symbolized together (one addr2line run per
 * module), and the frames a Traceback shows for each of its records.
 */
class SymbolTable {
 public:
  explicit SymbolTable(std::vector<std::uintptr_t> pcs) : pcs_(std::move(pcs)) {
    std::sort(pcs_.begin(), pcs_.end());
    pcs_.erase(std::unique(pcs_.begin(), pcs_.end()), pcs_.end());
    chains_ = symbolize(pcs_);
  }

  /// The inline chain of `pc`, one of the addresses the table was built from.
  const InlineChain& chain(std::uintptr_t pc) const {
    auto it = std::lower_bound(pcs_.begin(), pcs_.end(), pc);
    return chains_[static_cast<std::size_t>(it - pcs_.begin())];
  }

  /**
   * The frames to show for the return addresses `pcs[0, count)` (most recent first), at most
   * `limit` of them. Each return address expands into its inline chain, so frames are
   * source-level frames, as Python's tracemalloc counts Python frames: a function inlined into
   * its caller is a frame of its own, and `limit` (the `nframe` of start()) counts these
   * frames, not machine frames. The leading frames of memlens and (with `skip_std`) of the
   * standard library are dropped first, so the first frame is the user's line that allocated
   * even when the allocating std code was inlined into it; when nothing else is left, all are
   * kept. The tracer stores `nframe` + extra_frames machine frames per traceback, each giving
   * at least one source-level frame, so a traceback is never shorter than with machine frames.
   * `*untruncated` gets the number of frames before the cut to `limit` (for total_nframe).
   */
  std::vector<const SymbolInfo*> visible_frames(const std::uintptr_t* pcs, std::size_t count,
                                                bool skip_std, std::size_t limit,
                                                std::size_t* untruncated) const {
    std::vector<const SymbolInfo*> frames;
    for (std::size_t i = 0; i < count; ++i) {
      for (const SymbolInfo& f : chain(pcs[i])) frames.push_back(&f);
    }
    std::size_t first = 0;
    while (first < frames.size() &&
           (is_memlens_frame(*frames[first]) || (skip_std && is_std_frame(*frames[first])))) {
      ++first;
    }
    if (first == frames.size()) first = 0;  // nothing but library frames: show them all
    frames.erase(frames.begin(), frames.begin() + static_cast<std::ptrdiff_t>(first));
    *untruncated = frames.size();
    if (frames.size() > limit) frames.resize(limit);
    return frames;
  }

 private:
  std::vector<std::uintptr_t> pcs_;
  std::vector<InlineChain> chains_;
};

}  // namespace memlens::detail::trace
