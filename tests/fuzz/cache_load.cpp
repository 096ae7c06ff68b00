// libFuzzer target: AdvancedCache::load_from_disk on arbitrary bytes must throw memlens::Error
// or load, never crash, leak, over-allocate or hang, and a failed load leaves the cache as it
// was. Built with clang++ -fsanitize=fuzzer,address,undefined (.ci/run, stage fuzz); with
// MEMLENS_FUZZ_WRITE_SEEDS it is a plain program that writes the seed corpus instead.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memlens/memlens.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

// Values that exercise every kind of built-in encoding: containers, optionals, pairs, Refs to
// boxes (shared within a file, or null).
using Value = std::pair<std::vector<std::int64_t>,
                        std::optional<std::map<std::string, memlens::Ref<std::string>>>>;
using Cache = memlens::AdvancedCache<std::string, Value>;

Value sample(int i) {
  auto shared = memlens::make<std::string>("shared " + std::to_string(i));
  std::map<std::string, memlens::Ref<std::string>> refs{{"a", shared}, {"b", shared}, {"c", {}}};
  return {std::vector<std::int64_t>(static_cast<std::size_t>(i), -i),
          i % 2 == 0 ? std::optional(refs) : std::nullopt};
}

void fill(Cache& cache, int entries) {
  for (int i = 0; i < entries; ++i) {
    cache.set("key" + std::to_string(i), sample(i),
              i % 3 == 0 ? std::optional(std::chrono::steady_clock::duration(std::chrono::hours(1)))
                         : std::nullopt);
  }
}

}  // namespace

#ifdef MEMLENS_FUZZ_WRITE_SEEDS
// Writes seed files into the directory given: saved caches of 0, 1 and 5 entries, LFU and LRU,
// as files and as bare payloads.
int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <directory>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  int n = 0;
  for (int entries : {0, 1, 5}) {
    for (auto policy : {memlens::EvictionPolicy::LRU, memlens::EvictionPolicy::LFU}) {
      Cache cache(1, policy);
      fill(cache, entries);
      cache.get("key1");
      const auto file = dir / ("seed" + std::to_string(n++));
      cache.save_to_disk(file);
      // The same entries as a bare payload behind an odd byte (see LLVMFuzzerTestOneInput).
      std::string saved;
      if (std::FILE* f = std::fopen(file.c_str(), "rb")) {
        char buffer[4096];
        for (std::size_t got; (got = std::fread(buffer, 1, sizeof buffer, f)) > 0;) {
          saved.append(buffer, got);
        }
        std::fclose(f);
      }
      const std::string payload = "\x01" + saved.substr(memlens::serial::header_size);
      if (std::FILE* f = std::fopen((dir / ("payload" + std::to_string(n))).c_str(), "wb")) {
        std::fwrite(payload.data(), 1, payload.size(), f);
        std::fclose(f);
      }
    }
  }
  return 0;
}
#else
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() /
       ("memlens_fuzz_cache_load_" + std::to_string(::getpid()) + ".bin"))
          .string();
  // The checksum would stop nearly every mutation at the header: inputs whose first byte is odd
  // are a payload, given a valid header and checksum here, so the entries' parser is fuzzed too.
  std::string bytes(reinterpret_cast<const char*>(data), size);
  if (size != 0 && (data[0] & 1) != 0) {
    bytes = memlens::serial::pack("memlensC", 1, std::string_view(bytes).substr(1));
  }
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  } else {
    std::abort();
  }
  Cache cache(1);
  fill(cache, 2);
  const std::size_t usage = cache.current_memory_usage();
  try {
    cache.load_from_disk(path);
  } catch (const memlens::Error&) {
    // A refused file must leave the cache exactly as it was.
    if (cache.size() != 2 || cache.current_memory_usage() != usage || !cache.get("key1")) {
      std::abort();
    }
  }
  if (cache.current_memory_usage() > cache.max_memory_bytes()) std::abort();
  return 0;
}
#endif
