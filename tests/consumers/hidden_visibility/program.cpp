// The program of the hidden_visibility consumer test. It shares memlens objects both ways with
// the plugin (plugin.cpp) and checks that both see one memlens: one weak reference table, one
// collector, one pool, one trashcan, one heap lock, one tracemalloc. Built twice: `consumer`
// links the plugin; `consumer_dlopen` (HV_DLOPEN) loads it with dlopen(RTLD_NOW | RTLD_LOCAL)
// and is linked without ENABLE_EXPORTS (-rdynamic). Exits 0 only if every check passes.
//
// Each group of checks runs in a child process of its own: when the state is split, one group
// corrupts the heap (a pool block handed out twice, a dangling weak reference) and would crash
// the groups after it, whose own verdicts are wanted too.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <vector>

#ifdef HV_DLOPEN
#include <dlfcn.h>
#endif

#include "api.hpp"
#include "state_probe.hpp"

namespace {

using memlens::Object;
using memlens::Ref;

const hv::PluginApi* api = nullptr;
int failures = 0;

void check(bool ok, const std::string& what, const std::string& detail = {}) {
  std::printf("%s %s%s%s\n", ok ? "ok:  " : "FAIL:", what.c_str(), detail.empty() ? "" : " -- ",
              detail.c_str());
  std::fflush(stdout);  // a later check may crash: what came before must be on the screen
  if (!ok) ++failures;
}

void section(const char* name) {
  std::printf("-- %s\n", name);
  std::fflush(stdout);
}

std::string fmt_ptr(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

Ref<Object> adopt(Object* o) { return Ref<Object>(memlens::detail::adopt, o); }

long value_of(const Ref<Object>& r) { return static_cast<const hv::Small*>(r.object())->value; }

// Each piece of state: the same address from the program and from the plugin.
void check_state_identity() {
  section("one instance of each piece of process-wide state");
  // A type only the program makes: with a type registry per module, the ids would differ.
  const auto program_only = memlens::make<std::array<char, 40>>();
  for (int i = 0; i < hv::state_probe_count; ++i) {
    const void* mine = hv::state_probes[i].address();
    const void* theirs = api->state_address(i);
    check(mine == theirs, std::string("one ") + hv::state_probes[i].name,
          "program " + fmt_ptr(mine) + ", plugin " + fmt_ptr(theirs));
  }
  auto interned = memlens::sys::intern("hidden-visibility");
  check(interned.object() == adopt(api->intern("hidden-visibility")).object(),
        "sys::intern gives the program and the plugin the same object");
  auto seven = memlens::integer(7);
  check(seven.object() == adopt(api->integer(7)).object(),
        "integer(7) is the same cached object in the program and the plugin");
  // Last: with two type registries this may crash.
  long destroyed = 0;
  const Ref<Object> theirs = adopt(api->make_small(1, &destroyed));
  const Ref<Object> mine = memlens::make<hv::Small>(2, &destroyed);
  check(memlens::sys::getsizeof(theirs) == memlens::sys::getsizeof(mine),
        "the program measures an object the plugin made as one of its own (one type registry)",
        std::to_string(memlens::sys::getsizeof(theirs)) + " bytes, expected " +
            std::to_string(memlens::sys::getsizeof(mine)));
}

void check_gc_state() {
  section("collector settings and counts are shared");
  const auto saved = memlens::gc::get_threshold();
  memlens::gc::set_threshold(1234, 11, 12);
  check(api->gc_threshold0() == 1234, "gc::set_threshold in the program is seen by the plugin");
  api->gc_set_threshold(4321, 10, 10);
  check(std::get<0>(memlens::gc::get_threshold()) == 4321,
        "gc::set_threshold in the plugin is seen by the program");
  memlens::gc::set_threshold(std::get<0>(saved), std::get<1>(saved), std::get<2>(saved));
  api->gc_set_threshold(std::get<0>(saved), std::get<1>(saved), std::get<2>(saved));

  memlens::gc::enable();
  api->gc_enable(false);
  check(!memlens::gc::isenabled(), "gc::disable in the plugin is seen by the program");
  memlens::gc::enable();
  check(api->gc_isenabled(), "gc::enable in the program is seen by the plugin");
  memlens::gc::disable();  // as the other groups run
  api->gc_enable(false);

  memlens::gc::collect();
  api->gc_collect();
  long destroyed = 0;
  auto theirs = adopt(api->make_node(1, nullptr, &destroyed));
  check(std::get<0>(memlens::gc::get_count()) == 1,
        "a tracked object made in the plugin counts in the program's gc::get_count()",
        "count0 " + std::to_string(std::get<0>(memlens::gc::get_count())) + ", expected 1");
  auto mine = memlens::make<hv::Node>(2, nullptr, &destroyed);
  check(api->gc_count0() == 2, "the plugin's gc::get_count() counts the program's allocation",
        "count0 " + std::to_string(api->gc_count0()) + ", expected 2");
}

void check_heap_lock() {
  section("HeapLock");
  {
    memlens::HeapLock lock;
    check(!api->heap_lock_free_elsewhere(), "a HeapLock held by the program excludes the plugin");
  }
  check(api->heap_lock_free_elsewhere(), "the heap lock is free again for the plugin");
  api->heap_lock();
  bool free = false;
  std::thread([&] {
    free = memlens::heap_mutex().try_lock();
    if (free) memlens::heap_mutex().unlock();
  }).join();
  api->heap_unlock();
  check(!free, "the heap lock held by the plugin excludes the program");
}

void check_collector() {
  section("one collector");
  memlens::gc::collect();
  api->gc_collect();
  long destroyed = 0;
  auto theirs = adopt(api->make_node(1, nullptr, &destroyed));
  bool found = false;
  for (const auto& r : memlens::gc::get_objects()) found |= r.object() == theirs.object();
  check(found, "an object made in the plugin is in the program's gc::get_objects()");
  auto mine = memlens::make<hv::Node>(2, nullptr, &destroyed);
  check(api->gc_tracks(mine.object()),
        "an object made in the program is in the plugin's gc::get_objects()");

  api->make_cycles(50, &destroyed);
  const std::size_t found_by_program = memlens::gc::collect();
  check(found_by_program == 100 && destroyed == 100,
        "the program's gc::collect() frees the 50 two-node cycles the plugin made",
        "collect() returned " + std::to_string(found_by_program) + ", " +
            std::to_string(destroyed) + " nodes destroyed, expected 100");
  api->gc_collect();  // whatever the program's collection missed
  destroyed = 0;
  for (int i = 0; i < 50; ++i) {
    auto a = memlens::make<hv::Node>(2 * i, nullptr, &destroyed);
    auto b = memlens::make<hv::Node>(2 * i + 1, a, &destroyed);
    a->next = b;
  }
  const std::size_t found_by_plugin = api->gc_collect();
  check(found_by_plugin == 100 && destroyed == 100,
        "the plugin's gc::collect() frees 50 two-node cycles the program made",
        "collect() returned " + std::to_string(found_by_plugin) + ", " +
            std::to_string(destroyed) + " nodes destroyed, expected 100");
  memlens::gc::collect();

  int calls = 0;
  memlens::gc::callbacks().push_back([&](std::string_view, const memlens::gc::CallbackInfo&) { ++calls; });
  check(api->gc_callbacks_size() == 1, "a gc callback the program adds is in the plugin's gc::callbacks()");
  api->gc_collect();
  check(calls == 2, "the plugin's collection calls the program's gc callback (start, stop)",
        std::to_string(calls) + " calls");
  memlens::gc::callbacks().pop_back();
}

void check_unraisable_and_tracemalloc() {
  section("unraisable hook and tracemalloc");
  int hooked = 0;
  auto previous = memlens::sys::set_unraisablehook([&](const memlens::sys::UnraisableInfo&) { ++hooked; });
  api->release(api->make_doomed());  // its finalizer throws, in the plugin's release
  memlens::sys::set_unraisablehook(std::move(previous));
  check(hooked == 1, "an exception thrown by a finalizer the plugin runs reaches the program's unraisable hook");

  api->trace_start();
  check(memlens::tracemalloc::is_tracing(), "tracemalloc::start() in the plugin: the program is tracing");
  memlens::tracemalloc::stop();
  check(!api->trace_is_tracing(), "tracemalloc::stop() in the program: the plugin stopped tracing");
  api->trace_stop();
  memlens::tracemalloc::set_skip_std_frames(false);
  check(!api->trace_skip_std_frames(), "set_skip_std_frames(false) in the program is seen by the plugin");
  memlens::tracemalloc::set_skip_std_frames(true);

  // The first start() in the process installs fork handlers around the tracer's lock. Were that
  // done once per module around one shared lock, fork() would deadlock (the alarm then ends the
  // group: "crashed: signal 14").
  memlens::tracemalloc::start();
  api->trace_start();
  alarm(30);
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  check(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status),
        "fork() returns after both the program and the plugin called tracemalloc::start()");
  alarm(300);
  memlens::tracemalloc::stop();
  api->trace_stop();
}

// 100000 nodes, made alternately by the program and the plugin, each holding the next: the last
// release must free them all without recursing once per node (the trashcan).
void check_deep_chain(bool plugin_releases) {
  constexpr long n = 100000;
  long destroyed = 0;
  Ref<Object> head;
  for (long i = 0; i < n; ++i) {
    if (i % 2) {
      head = memlens::make<hv::Node>(i, std::move(head), &destroyed);
    } else {
      head = adopt(api->make_node(i, head.object(), &destroyed));
    }
  }
  if (plugin_releases) {
    api->release(head.release());
  } else {
    head.reset();
  }
  check(destroyed == n,
        std::string("a chain of 100000 nodes made alternately by both, released by the ") +
            (plugin_releases ? "plugin" : "program") + ", is freed",
        std::to_string(destroyed) + " of " + std::to_string(n) + " destroyed");
}

void check_weak_references() {
  section("weak references");
  {
    int calls = 0;
    auto mine = memlens::make<hv::Small>(7, nullptr);
    void* weak = api->weak_new(mine.object(), &calls);
    check(memlens::weakref::getweakrefcount(mine) == 1,
          "a Weak the plugin made to the program's object counts in the program's getweakrefcount");
    mine.reset();
    check(calls == 1, "the plugin's weak callback runs when the program destroys the object",
          std::to_string(calls) + " calls");
    check(api->weak_expired(weak), "the plugin's Weak is expired once the program destroyed the object");
    // Memory of the dead object gets reused: a Weak the table never cleared would now see the new
    // object.
    std::vector<Ref<hv::Small>> reuse;
    for (int i = 0; i < 1000; ++i) reuse.push_back(memlens::make<hv::Small>(i, nullptr));
    auto revived = adopt(api->weak_lock(weak));
    check(!revived, "the plugin's Weak stays dead after the object's memory is reused",
          revived ? "lock() returned " + memlens::repr(revived) : "");
    api->weak_delete(weak);
  }
  {
    int calls = 0;
    long destroyed = 0;
    auto theirs = adopt(api->make_small(8, &destroyed));
    memlens::Weak<Object> weak(theirs, [&] { ++calls; });
    api->release(theirs.release());  // the last reference, dropped by the plugin
    check(destroyed == 1 && calls == 1,
          "the program's weak callback runs when the plugin destroys the object",
          std::to_string(calls) + " calls");
    check(weak.expired(), "the program's Weak is expired once the plugin destroyed the object");
  }
}

// Objects made on one side and freed on the other, in batches of 1 to 20000: with one pool every
// block goes back to the lists it came from, pages that empty are given back once. Values are
// checked after every batch: a block handed out twice shows as a value overwritten.
void check_pool() {
  section("small objects made on one side and freed on the other");
  long destroyed = 0, made = 0;
  std::vector<Ref<Object>> live;
  std::vector<long> values;
  bool intact = true, distinct = true;
  std::string damage;
  const int batches[] = {1, 1, 2, 3, 500, 1, 5000, 2, 20000, 1, 3, 20000};
  for (int round = 0; round < 48 && intact && distinct; ++round) {
    for (int i = 0; i < batches[round % 12]; ++i, ++made) {
      live.push_back(made % 2 ? Ref<Object>(memlens::make<hv::Small>(made, &destroyed))
                              : adopt(api->make_small(made, &destroyed)));
      values.push_back(made);
    }
    std::unordered_set<const Object*> seen;
    for (std::size_t i = 0; i < live.size() && intact && distinct; ++i) {
      intact = value_of(live[i]) == values[i];
      distinct = seen.insert(live[i].object()).second;
      if (!intact || !distinct) {
        damage = "batch " + std::to_string(round) + ": the object made " +
                 std::string(values[i] % 2 ? "by the program" : "by the plugin") + " with value " +
                 std::to_string(values[i]) + " at " + fmt_ptr(live[i].object()) + " " +
                 (distinct ? "now holds " + std::to_string(value_of(live[i]))
                           : "shares its block with another live object");
      }
    }
    // Free nearly all, each by the side that did not make it (the plugin made the even values).
    std::size_t kept = 0;
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (values[i] % 11 == round % 11) {
        live[kept] = std::move(live[i]);
        values[kept++] = values[i];
      } else if (values[i] % 2 == 0) {
        live[i].reset();
      } else {
        api->release(live[i].release());
      }
    }
    live.resize(kept);
    values.resize(kept);
  }
  check(intact && distinct,
        "every live object keeps its block and its value while blocks cross between the pools",
        damage);
  live.clear();
  check(destroyed == made, "every object made is destroyed exactly once",
        std::to_string(destroyed) + " destructors ran for " + std::to_string(made) + " objects");
}

}  // namespace

int main() {
#ifdef HV_DLOPEN
  const char* variant = "dlopen(RTLD_NOW | RTLD_LOCAL), program without ENABLE_EXPORTS";
  void* plugin = dlopen(HV_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);  // never closed: objects use it
  if (!plugin) {
    std::fprintf(stderr, "hidden_visibility: cannot load %s: %s\n", HV_PLUGIN_PATH, dlerror());
    return 2;
  }
  auto entry = reinterpret_cast<const hv::PluginApi* (*)()>(dlsym(plugin, "hv_plugin_api"));
  if (!entry) {
    std::fprintf(stderr, "hidden_visibility: no hv_plugin_api in %s\n", HV_PLUGIN_PATH);
    return 2;
  }
  api = entry();
  std::printf("(the program exports the collector state: %s)\n",
              dlsym(RTLD_DEFAULT, "_ZN7memlens6detail10gc_runtimeE") ? "yes" : "no");
#else
  const char* variant = "plugin linked";
  api = hv_plugin_api();
#endif
  std::printf("hidden_visibility consumer, %s\n", variant);
  const struct {
    const char* name;
    void (*run)();
  } groups[] = {
      {"state identity", check_state_identity},
      {"collector settings", check_gc_state},
      {"heap lock", check_heap_lock},
      {"collector", check_collector},
      {"unraisable hook, tracemalloc", check_unraisable_and_tracemalloc},
      {"deep chains", [] {
         section("deep chains (trashcan)");
         check_deep_chain(false);
         check_deep_chain(true);
       }},
      {"weak references", check_weak_references},
      {"pool", check_pool},
  };
  int failed_groups = 0;
  for (const auto& group : groups) {
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t child = fork();
    if (child == 0) {
      alarm(300);  // a deadlock fails the group instead of hanging the test
      // Automatic collections off (in both, should there be two), so that counts are exact.
      memlens::gc::disable();
      api->gc_enable(false);
      group.run();
      std::fflush(stdout);
      _exit(failures ? 1 : 0);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child) {
      std::perror("hidden_visibility: fork/waitpid");
      return 2;
    }
    if (WIFSIGNALED(status)) {
      std::printf("FAIL: group '%s' crashed: signal %d (%s)\n", group.name, WTERMSIG(status),
                  strsignal(WTERMSIG(status)));
    } else if (WEXITSTATUS(status) != 0) {
      std::printf("FAIL: group '%s' failed (exit status %d)\n", group.name, WEXITSTATUS(status));
    }
    failed_groups += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  }
  if (failed_groups) {
    std::printf("hidden_visibility (%s): %d of %zu groups of checks FAILED: memlens' "
                "process-wide state is not one per process\n",
                variant, failed_groups, std::size(groups));
    return 1;
  }
  std::printf("hidden_visibility (%s): all checks passed\n", variant);
  return 0;
}
