// What the program and the plugin of the hidden_visibility consumer test share: the object types
// and the table of functions the plugin exports. Both are built with hidden visibility, so each
// has its own copy of everything defined here (vtables, typeinfo, inline functions): only the
// state memlens keeps for the whole process must still exist once.
#pragma once

#include <cstddef>
#include <stdexcept>

#include <memlens/memlens.hpp>

#define HV_EXPORT extern "C" __attribute__((visibility("default")))

namespace hv {

// Destructor counters live in the program and are passed by pointer: a counter defined in this
// header would itself exist once per module.

/// A tracked node (it overrides traverse): chains, cycles, gc.get_objects().
struct Node final : memlens::Object {
  Node(long v, memlens::Ref<memlens::Object> n, long* counter) noexcept
      : value(v), next(std::move(n)), destroyed(counter) {}
  ~Node() override {
    if (destroyed) ++*destroyed;
  }
  void traverse(memlens::Visitor& visit) override { visit(next); }
  long value;
  memlens::Ref<memlens::Object> next;
  long* destroyed;
};

/// An untracked object of 32 bytes: a block of the pool (unless the pool is off, as under ASan).
struct Small final : memlens::Object {
  Small(long v, long* counter) noexcept : value(v), destroyed(counter) {}
  ~Small() override {
    if (destroyed) ++*destroyed;
  }
  void memlens_sizeof(memlens::sys::SizeVisitor&) const {}  // fixed-size members only
  long value;
  long* destroyed;
};

/// An object whose finalizer throws: the exception goes to the unraisable hook.
struct Doomed final : memlens::Object {
  void finalize() override { throw std::runtime_error("hv: thrown by a finalizer"); }
};

/// The plugin's functions. An Object* argument is borrowed; an Object* result is a new reference
/// the caller owns (adopt it into a Ref, or give it back to `release`).
struct PluginApi {
  // The address of the plugin's view of one piece of memlens' state (see state_probe.hpp).
  const void* (*state_address)(int which);
  // Objects made in the plugin.
  memlens::Object* (*make_node)(long value, const memlens::Object* next, long* destroyed);
  memlens::Object* (*make_small)(long value, long* destroyed);
  memlens::Object* (*make_doomed)();
  memlens::Object* (*intern)(const char* text);
  memlens::Object* (*integer)(long long value);
  // Drops one reference, in the plugin's code.
  void (*release)(memlens::Object* o);
  // Makes `n` cycles of two nodes and drops them: only a collection frees them.
  void (*make_cycles)(int n, long* destroyed);
  // A Weak<Object> owned by the plugin, whose callback adds 1 to *calls.
  void* (*weak_new)(const memlens::Object* o, int* calls);
  bool (*weak_expired)(void* weak);
  memlens::Object* (*weak_lock)(void* weak);  // null or a new reference
  void (*weak_delete)(void* weak);
  // The collector, from the plugin.
  std::size_t (*gc_collect)();
  std::size_t (*gc_count0)();
  std::size_t (*gc_threshold0)();
  void (*gc_set_threshold)(std::size_t t0, std::size_t t1, std::size_t t2);
  bool (*gc_isenabled)();
  void (*gc_enable)(bool on);
  std::size_t (*gc_callbacks_size)();
  bool (*gc_tracks)(const memlens::Object* o);  // o is in gc::get_objects()
  // The heap lock: whether another thread (started by the plugin) can take it right now, and
  // taking and dropping it in the plugin.
  bool (*heap_lock_free_elsewhere)();
  void (*heap_lock)();
  void (*heap_unlock)();
  // tracemalloc.
  void (*trace_start)();
  void (*trace_stop)();
  bool (*trace_is_tracing)();
  bool (*trace_skip_std_frames)();
};

}  // namespace hv

/// The plugin's only entry point: the table above.
HV_EXPORT const hv::PluginApi* hv_plugin_api();
