// memlens: turning return addresses into (file, line, function) for tracemalloc (internal).
// Runs only when a snapshot's tracebacks are asked for, never on the allocation path: dladdr and
// __cxa_demangle for names, and one `addr2line` run per module for files and lines. Results are
// cached for the life of the process.
#pragma once

#include <cxxabi.h>
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
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

/// Runs addr2line on `offsets` (addresses in the file `path`); fills `out` (same order) and
/// returns true when it printed two lines per address.
inline bool run_addr2line(const std::string& path, const std::vector<std::uintptr_t>& offsets,
                          std::vector<SymbolInfo>& out) {
  const char* tool = std::getenv("MEMLENS_ADDR2LINE");
  std::string command = shell_quote(tool && *tool ? tool : "addr2line");
  command += " -f -C -e " + shell_quote(path);
  for (std::uintptr_t off : offsets) command += " " + hex(off);
  command += " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return false;
  std::vector<std::string> lines;
  std::string line;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) {
    line += buf;
    if (!line.empty() && line.back() == '\n') {
      line.pop_back();
      lines.push_back(std::move(line));
      line.clear();
    }
  }
  if (!line.empty()) lines.push_back(std::move(line));
  int status = pclose(pipe);
  if (status != 0 || lines.size() != offsets.size() * 2) return false;
  out.clear();
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    SymbolInfo info;
    const std::string& function = lines[2 * i];
    std::string location = lines[2 * i + 1];
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
    out.push_back(std::move(info));
  }
  return true;
}

/// The process-wide cache (immortal: snapshots may be examined during static destruction).
struct SymbolCache {
  std::mutex mutex;
  std::unordered_map<std::uintptr_t, SymbolInfo> symbols;
};

inline SymbolCache& symbol_cache() {
  static auto* cache = new SymbolCache();
  return *cache;
}

/// Symbolizes return addresses (the line is that of the call: pc - 1). Returns one entry per
/// element of `pcs`, same order.
inline std::vector<SymbolInfo> symbolize(const std::vector<std::uintptr_t>& pcs) {
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
        cache.symbols.emplace(pc, symbolize_with_dladdr(pc));
      } else {
        by_module[found].push_back(pc);
      }
    }
    constexpr std::size_t batch = 512;  // keeps the command line well under ARG_MAX
    for (auto& [m, list] : by_module) {
      for (std::size_t first = 0; first < list.size(); first += batch) {
        std::size_t last = std::min(list.size(), first + batch);
        std::vector<std::uintptr_t> offsets;
        for (std::size_t i = first; i < last; ++i) offsets.push_back(list[i] - 1 - modules[m].bias);
        std::vector<SymbolInfo> infos;
        bool ok = run_addr2line(modules[m].path, offsets, infos);
        for (std::size_t i = first; i < last; ++i) {
          SymbolInfo info = symbolize_with_dladdr(list[i]);
          if (ok) {
            SymbolInfo& line = infos[i - first];
            if (!line.function.empty()) info.function = std::move(line.function);
            info.filename = std::move(line.filename);
            info.lineno = line.lineno;
          }
          cache.symbols.emplace(list[i], std::move(info));
        }
      }
    }
  }
  std::vector<SymbolInfo> result;
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
  // Under clang's sanitizers the hook runs inside the sanitizer's allocator.
  for (std::string_view prefix :
       {"__sanitizer", "__tsan", "__asan", "__msan", "__interceptor", "__lsan", "malloc", "calloc",
        "realloc", "posix_memalign", "aligned_alloc"}) {
    if (starts_with(f.function, prefix)) return true;
  }
  if (f.filename.find("compiler-rt/") != std::string::npos) return true;
  return f.filename == "<unknown>" && starts_with(f.function, "memlens::");
}

/// Frames in the standard library's headers or its shared library.
inline bool is_std_frame(const SymbolInfo& f) {
  if (f.filename.find("/include/c++/") != std::string::npos ||
      f.filename.find("/c++/v1/") != std::string::npos) {
    return true;
  }
  return f.filename == "<unknown>" &&
         (starts_with(f.function, "std::") || starts_with(f.function, "__gnu_cxx::"));
}

}  // namespace memlens::detail::trace
