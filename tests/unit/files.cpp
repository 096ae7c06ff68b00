// memlens::detail::write_file_atomically, and Snapshot::dump, which writes through it.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memlens/detail/files.hpp>
#include <memlens/tracemalloc.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "memlens_test.hpp"

namespace test_files {

using memlens_test::contains;
namespace tracemalloc = memlens::tracemalloc;

/// A directory of its own under the system's temporary directory, removed at the end.
struct TempDir {
  TempDir()
      : path(std::filesystem::temp_directory_path() /
             ("memlens_files_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

class CustomError : public memlens::Error {
 public:
  using Error::Error;
};

}  // namespace test_files

TEST_CASE("files: write_file_atomically replaces the file and leaves no temporary", "[files]") {
  test_files::TempDir dir;
  const std::string path = (dir.path / "data.bin").string();
  memlens::detail::write_file_atomically(path, "first", "test: cannot write");
  CHECK(test_files::read_file(path) == "first");
  memlens::detail::write_file_atomically(path, std::string("sec\0ond", 7), "test: cannot write");
  CHECK(test_files::read_file(path) == std::string("sec\0ond", 7));
  CHECK(test_files::names_in(dir.path) == std::vector<std::string>{"data.bin"});
}

TEST_CASE("files: a failed write throws the given error naming the part and the path", "[files]") {
  test_files::TempDir dir;
  const std::string path = (dir.path / "missing-dir" / "data.bin").string();
  CHECK_THROWS_AS(memlens::detail::write_file_atomically<test_files::CustomError>(
                      path, "x", "test: cannot write"),
                  test_files::CustomError);
  CHECK_THROWS_WITH(memlens::detail::write_file_atomically(path, "x", "test: cannot write"),
                    memlens_test::contains("test: cannot write '" + path + "': cannot create " +
                                           path + ".tmp.") &&
                        memlens_test::contains("No such file or directory"));
}

TEST_CASE("files: Snapshot::dump fails with SnapshotFileError naming the path",
          "[files][tracemalloc]") {
  namespace tracemalloc = memlens::tracemalloc;
  test_files::TempDir dir;
  auto data = std::make_shared<tracemalloc::detail::SnapshotData>();
  data->tracebacks.emplace_back(std::vector<tracemalloc::Frame>{{"/src/a.cpp", 3, "f"}});
  data->traces.push_back({8, 0, 0});
  std::call_once(data->symbolized_once, [] {});
  const tracemalloc::Snapshot snapshot(std::move(data));

  const std::string nowhere = (dir.path / "missing-dir" / "x.snap").string();
  CHECK_THROWS_AS(snapshot.dump(nowhere), tracemalloc::SnapshotFileError);
  CHECK_THROWS_WITH(snapshot.dump(nowhere),
                    test_files::contains("tracemalloc: cannot dump snapshot to '" + nowhere +
                                         "': cannot create"));
  const std::string path = (dir.path / "x.snap").string();
  snapshot.dump(path);
  CHECK(tracemalloc::Snapshot::load(path).traces().size() == 1);
  CHECK(test_files::names_in(dir.path) == std::vector<std::string>{"x.snap"});
}
