// The shared library of the hidden_visibility consumer test, built with hidden visibility: it
// exports hv_plugin_api() and nothing else of its own.
#include <thread>

#include "api.hpp"
#include "state_probe.hpp"

namespace {

using memlens::Object;
using memlens::Ref;

// Hands a new reference to the caller.
template <class T>
Object* give(Ref<T> r) {
  return r.release();
}
Ref<Object> borrow(const Object* o) {
  if (o) memlens::detail::incref(o);
  return Ref<Object>(memlens::detail::adopt, const_cast<Object*>(o));
}

const hv::PluginApi api{
    [](int which) -> const void* {
      return which >= 0 && which < hv::state_probe_count ? hv::state_probes[which].address()
                                                        : nullptr;
    },
    [](long value, const Object* next, long* destroyed) {
      return give(memlens::make<hv::Node>(value, borrow(next), destroyed));
    },
    [](long value, long* destroyed) { return give(memlens::make<hv::Small>(value, destroyed)); },
    []() { return give(memlens::make<hv::Doomed>()); },
    [](const char* text) { return give(memlens::sys::intern(text)); },
    [](long long value) { return give(memlens::integer(value)); },
    [](Object* o) { Ref<Object>(memlens::detail::adopt, o).reset(); },
    [](int n, long* destroyed) {
      for (int i = 0; i < n; ++i) {
        auto a = memlens::make<hv::Node>(2 * i, nullptr, destroyed);
        auto b = memlens::make<hv::Node>(2 * i + 1, a, destroyed);
        a->next = b;
      }
    },
    [](const Object* o, int* calls) -> void* {
      return new memlens::Weak<Object>(borrow(o), [calls] { ++*calls; });
    },
    [](void* w) { return static_cast<memlens::Weak<Object>*>(w)->expired(); },
    [](void* w) { return give(static_cast<memlens::Weak<Object>*>(w)->lock()); },
    [](void* w) { delete static_cast<memlens::Weak<Object>*>(w); },
    []() { return memlens::gc::collect(); },
    []() { return std::get<0>(memlens::gc::get_count()); },
    []() { return std::get<0>(memlens::gc::get_threshold()); },
    [](std::size_t t0, std::size_t t1, std::size_t t2) { memlens::gc::set_threshold(t0, t1, t2); },
    []() { return memlens::gc::isenabled(); },
    [](bool on) { on ? memlens::gc::enable() : memlens::gc::disable(); },
    []() { return memlens::gc::callbacks().size(); },
    [](const Object* o) {
      for (const auto& r : memlens::gc::get_objects()) {
        if (r.object() == o) return true;
      }
      return false;
    },
    []() {
      bool free = false;
      std::thread([&] {
        free = memlens::heap_mutex().try_lock();
        if (free) memlens::heap_mutex().unlock();
      }).join();
      return free;
    },
    []() { memlens::heap_mutex().lock(); },
    []() { memlens::heap_mutex().unlock(); },
    []() { memlens::tracemalloc::start(); },
    []() { memlens::tracemalloc::stop(); },
    []() { return memlens::tracemalloc::is_tracing(); },
    []() { return memlens::tracemalloc::get_skip_std_frames(); },
};

}  // namespace

HV_EXPORT const hv::PluginApi* hv_plugin_api() { return &api; }
