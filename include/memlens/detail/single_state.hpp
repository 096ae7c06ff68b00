// memlens internals: fails loudly, when a module is loaded, if the process already
// uses another copy of memlens' state that this module cannot see (and so would not share).
//
// With MEMLENS_SHARED every module exports its definitions of the state, and the dynamic linker
// binds all modules to one of them, except when it cannot: clang++ emits weak symbols, not
// STB_GNU_UNIQUE, so two libraries loaded with dlopen(RTLD_LOCAL) by a program that has no copy
// in the global scope each keep their own. Each module marks the copy it uses (`users`), then
// looks in every loaded module's dynamic symbol table for the marker: a marker in use that is not
// this module's is a split. A module's own definition that the dynamic linker bound elsewhere is
// never marked, so it does not count. Blind spot: a copy in an executable that exports nothing
// (no dynamic list, no -rdynamic) is in no dynamic symbol table.
#pragma once

#if defined(__linux__) && __has_include(<link.h>) && __has_include(<dlfcn.h>) && \
    !defined(MEMLENS_NO_STATE_CHECK)
#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "memlens/config.hpp"

namespace memlens::detail {

/// Bump when the layout of any shared state changes: modules built from memlens versions with
/// different layouts must not share it. (Better still: an inline namespace per ABI version in
/// every mangled name, so that such modules do not even bind to each other's state.)
inline constexpr std::uint32_t state_abi = 1;

struct StateMarker {
  std::uint32_t abi = state_abi;
  std::atomic<std::uint32_t> users{0};  // modules bound to this copy
};
MEMLENS_SHARED inline constinit StateMarker state_marker{};

inline int find_other_state(dl_phdr_info* info, std::size_t, void* mine) noexcept {
  const char* name = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : nullptr;
  void* handle = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);  // nullptr: the program
  if (!handle) return 0;  // the vDSO
  auto* other = static_cast<StateMarker*>(dlsym(handle, "_ZN7memlens6detail12state_markerE"));
  dlclose(handle);
  if (other && other != mine && other->users.load(std::memory_order_relaxed) != 0) {
    std::fprintf(stderr,
                 "memlens: fatal: two copies of memlens' process-wide state in one process: %s "
                 "uses the one at %p, a module loaded now the one at %p. Objects shared "
                 "between them would corrupt memory. Load the libraries that use memlens with "
                 "RTLD_GLOBAL, or use memlens in the program and export its state "
                 "(memlens::memlens does for CMake executables; else link with "
                 "-Wl,--dynamic-list=memlens.dynlist or -rdynamic).\n",
                 name ? name : "the program", static_cast<void*>(other), mine);
    std::abort();
  }
  return 0;
}

inline bool check_single_state() noexcept {
  StateMarker& mine = state_marker;
  if (mine.abi != state_abi) {
    std::fprintf(stderr, "memlens: fatal: modules built with different memlens versions share "
                         "its state (layout %u and %u)\n", mine.abi, state_abi);
    std::abort();
  }
  mine.users.fetch_add(1, std::memory_order_relaxed);
  dl_iterate_phdr(find_other_state, &mine);
  return true;
}

/// Hidden whatever -fvisibility says: one per module, initialized when the module is loaded.
__attribute__((visibility("hidden"))) inline const bool single_state_checked = check_single_state();

}  // namespace memlens::detail

#endif
