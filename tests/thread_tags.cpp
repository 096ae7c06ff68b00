// Every test case that starts a thread must be tagged [threads]: CI's ThreadSanitizer stage
// runs exactly those. This file makes the rule checked rather than remembered: the program's
// pthread_create counts the threads started (std::thread and std::jthread go through it), in a
// shared page so that threads started by forked children count too, and a listener fails the
// run when a test case started one without the tag.
//
// Sanitizer runtimes intercept pthread_create themselves; there the count is left out (the
// other CI builds check the rule).
#include <dlfcn.h>
#include <pthread.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

// Not memlens_test.hpp (nor its precompiled form): Catch2 v2 declares listeners only with
// CATCH_CONFIG_EXTERNAL_INTERFACES defined before it is included.
#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_test_case_info.hpp>
#include <catch2/reporters/catch_reporter_event_listener.hpp>
#include <catch2/reporters/catch_reporter_registrars.hpp>
#define MEMLENS_TEST_CATCH2_V3 1
#else
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MEMLENS_TEST_COUNT_THREADS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define MEMLENS_TEST_COUNT_THREADS 0
#endif
#endif
#ifndef MEMLENS_TEST_COUNT_THREADS
#define MEMLENS_TEST_COUNT_THREADS 1
#endif

namespace test_thread_tags {

/// Threads started by this process and its forked children.
std::atomic<unsigned long>& started() {
  static std::atomic<unsigned long>* count = [] {
    void* page = mmap(nullptr, sizeof(std::atomic<unsigned long>), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) std::abort();
    return new (page) std::atomic<unsigned long>(0);
  }();
  return *count;
}

bool has_tag(const Catch::TestCaseInfo& info, const std::string& tag) {
#ifdef MEMLENS_TEST_CATCH2_V3
  for (const auto& t : info.tags) {
    if (std::string(t.original.data(), t.original.size()) == tag) return true;
  }
  return false;
#else
  for (const auto& t : info.tags) {
    if (t == tag) return true;
  }
  return false;
#endif
}

#ifdef MEMLENS_TEST_CATCH2_V3
using ListenerBase = Catch::EventListenerBase;
#else
using ListenerBase = Catch::TestEventListenerBase;
#endif

class ThreadTagCheck : public ListenerBase {
 public:
  using ListenerBase::ListenerBase;

  void testCaseStarting(const Catch::TestCaseInfo& info) override {
    ListenerBase::testCaseStarting(info);
    before_ = started().load();
  }

  void testCaseEnded(const Catch::TestCaseStats& stats) override {
    ListenerBase::testCaseEnded(stats);
#ifdef MEMLENS_TEST_CATCH2_V3
    const Catch::TestCaseInfo& info = *stats.testInfo;
#else
    const Catch::TestCaseInfo& info = stats.testInfo;
#endif
    const unsigned long threads = started().load() - before_;
    if (threads != 0 && !has_tag(info, "threads")) {
      std::fprintf(stderr,
                   "test case \"%s\" started %lu thread(s) but is not tagged [threads]: tag it, "
                   "so that the ThreadSanitizer stage runs it\n",
                   info.name.c_str(), threads);
      std::fflush(nullptr);
      std::_Exit(EXIT_FAILURE);
    }
  }

 private:
  unsigned long before_ = 0;
};

#if MEMLENS_TEST_COUNT_THREADS
CATCH_REGISTER_LISTENER(ThreadTagCheck)
#endif

}  // namespace test_thread_tags

#if MEMLENS_TEST_COUNT_THREADS

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attributes,
                              void* (*start)(void*), void* argument) noexcept {
  using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const auto real = reinterpret_cast<Create>(dlsym(RTLD_NEXT, "pthread_create"));
  test_thread_tags::started().fetch_add(1);
  return real(thread, attributes, start, argument);
}
#endif
