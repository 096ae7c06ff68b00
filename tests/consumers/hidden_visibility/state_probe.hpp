// Every piece of memlens' process-wide state the test can name, with the address this module
// sees for it. The program compares its own view with the plugin's, piece by piece. The names
// are memlens internals: when they change, this table is the one place to update.
#pragma once

#include <memlens/memlens.hpp>

namespace hv {
namespace {  // internal linkage: each module must report its own view

struct StateProbe {
  const char* name;
  const void* (*address)();
};

// Per-thread pieces are compared from one thread: the one that runs the check.
inline const StateProbe state_probes[] = {
    {"detail::gc_runtime (collector lists, counts, thresholds)",
     []() -> const void* { return &memlens::detail::gc_runtime; }},
    {"detail::pool::state (small-object pool)",
     []() -> const void* { return &memlens::detail::pool::state; }},
    {"detail::weak_registry() (weak reference table)",
     []() -> const void* { return &memlens::detail::weak_registry(); }},
    {"heap_mutex() (HeapLock)", []() -> const void* { return &memlens::heap_mutex(); }},
    {"detail::unraisable_hook()", []() -> const void* { return &memlens::detail::unraisable_hook(); }},
    {"detail::gc_callbacks()", []() -> const void* { return &memlens::detail::gc_callbacks(); }},
    {"detail::gc_garbage()", []() -> const void* { return &memlens::detail::gc_garbage(); }},
    {"detail::type_registry (type records of make)",
     []() -> const void* { return &memlens::detail::type_registry; }},
    {"detail::trace::state (tracemalloc)",
     []() -> const void* { return &memlens::detail::trace::state; }},
    {"detail::trace::symbol_cache()",
     []() -> const void* { return &memlens::detail::trace::symbol_cache(); }},
    {"tracemalloc::detail::skip_std_frames",
     []() -> const void* { return &memlens::tracemalloc::detail::skip_std_frames; }},
    {"tracemalloc::malloc_resource()",
     []() -> const void* { return memlens::tracemalloc::malloc_resource(); }},
    {"detail::thread_state (thread_local: trashcan, make, heap-lock depth)",
     []() -> const void* { return &memlens::detail::thread_state; }},
    {"detail::thread_check (threads using memlens)",
     []() -> const void* { return &memlens::detail::thread_check; }},
    {"detail::trace::in_tracer (thread_local)",
     []() -> const void* { return &memlens::detail::trace::in_tracer; }},
    {"detail::trace::stack_bounds (thread_local)",
     []() -> const void* { return &memlens::detail::trace::stack_bounds; }},
};
inline constexpr int state_probe_count = sizeof(state_probes) / sizeof(state_probes[0]);

}  // namespace
}  // namespace hv
