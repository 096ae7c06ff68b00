// memlens/serialize.hpp: round trips of every built-in encoding and of user hooks, the container
// file, and every way bytes or files can be wrong (each must throw memlens::Error, never crash).
//
// A type without serialization fails to compile, which Catch2 cannot test. Checked by hand:
//   namespace user { struct Unsupported {}; }
//   memlens::serial::save(writer, std::vector<user::Unsupported>{});
// g++ 12 reports, first and only:
//   serialize.hpp: In instantiation of 'void memlens::serial::save(Writer&, const T&) [with T =
//   user::Unsupported]': ... error: static assertion failed: memlens::serial: no serialization for
//   this type: define void memlens_save(memlens::serial::Writer&, const T&) and void
//   memlens_load(memlens::serial::Reader&, T&) in T's namespace
// and clang++ 14 the same message after "static_assert failed due to requirement
// 'detail::always_false<user::Unsupported>'". The `serializable` checks below are what can be
// tested here.
#include <memlens/serialize.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memlens/gc.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "memlens_test.hpp"

namespace test_serialize {

using memlens::make;
using memlens::Ref;
using memlens::serial::FormatError;
using memlens::serial::Reader;
using memlens::serial::Writer;
using memlens_test::contains;
namespace serial = memlens::serial;

/// A plain struct serialized through its ADL hooks.
struct Item {
  std::string name;
  std::vector<int> sizes;
  std::optional<double> price;
  bool operator==(const Item&) const = default;
};
void memlens_save(Writer& w, const Item& item) {
  save(w, item.name);
  save(w, item.sizes);
  save(w, item.price);
}
void memlens_load(Reader& r, Item& item) {
  load(r, item.name);
  load(r, item.sizes);
  load(r, item.price);
}

/// An object type: saved through Refs, which may share it and form cycles.
struct Node : memlens::Object {
  int value = 0;
  Ref<Node> next;
  void traverse(memlens::Visitor& visit) override { visit(next); }
};
void memlens_save(Writer& w, const Node& node) {
  save(w, node.value);
  save(w, node.next);
}
void memlens_load(Reader& r, Node& node) {
  load(r, node.value);
  load(r, node.next);
}

/// Derives from Node and has no hooks of its own.
struct Special : Node {};

/// An enum, through hooks in its namespace.
enum class Color : std::uint8_t { red, green };
void memlens_save(Writer& w, Color c) { w.u8(static_cast<std::uint8_t>(c)); }
void memlens_load(Reader& r, Color& c) {
  const std::uint8_t b = r.u8();
  if (b > 1) r.fail("color " + std::to_string(b));
  c = static_cast<Color>(b);
}

/// A hook that writes nothing, which save refuses.
struct Silent {};
void memlens_save(Writer&, const Silent&) {}
void memlens_load(Reader&, Silent&) {}

struct Unsupported {};
struct OnlySaved {};
void memlens_save(Writer& w, const OnlySaved&) { w.u8(0); }
struct NoDefault {
  explicit NoDefault(int) {}
};
void memlens_save(Writer& w, const NoDefault&) { w.u8(0); }
void memlens_load(Reader& r, NoDefault&) { r.u8(); }

template <class T>
std::string bytes_of(const T& value) {
  Writer w;
  serial::save(w, value);
  return std::move(w).take();
}

template <class T>
T round_trip(const T& value) {
  const std::string bytes = bytes_of(value);
  Reader r(bytes);
  T out{};
  serial::load(r, out);
  r.finish();
  return out;
}

/// Loads a T from raw bytes, as a fuzzer would.
template <class T>
T load_bytes(const std::string& bytes) {
  Reader r(bytes, "test");
  T out{};
  serial::load(r, out);
  r.finish();
  return out;
}

std::string le64(std::uint64_t v) {
  Writer w;
  w.u64(v);
  return std::move(w).take();
}

/// A directory of its own under the system's temporary directory, removed at the end.
struct TempDir {
  TempDir()
      : path(std::filesystem::temp_directory_path() /
             ("memlens_serialize_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
};

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_all(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

constexpr std::string_view magic{"MLTEST\0\1", 8};

// What compiles: the trait reflects the same rules save and load enforce with static_asserts.
static_assert(serial::serializable<int>);
static_assert(serial::serializable<
              std::map<std::string, std::vector<std::optional<std::pair<int, double>>>>>);
static_assert(serial::serializable<std::tuple<>>);
static_assert(serial::serializable<Ref<std::string>>);
static_assert(serial::serializable<Ref<const std::string>>);
static_assert(serial::serializable<Ref<Node>>);
static_assert(serial::serializable<Item>);
static_assert(serial::serializable<Color>);
static_assert(!serial::serializable<Unsupported>);
static_assert(!serial::serializable<std::vector<Unsupported>>);
static_assert(!serial::serializable<OnlySaved>);
static_assert(!serial::serializable<Ref<Special>> || serial::serializable<Ref<Node>>);
static_assert(!serial::serializable<Ref<memlens::Object>>);
static_assert(!serial::serializable<int*>);
static_assert(!serial::serializable<long double>);
static_assert(!serial::serializable<const int>);
static_assert(!serial::serializable<std::pair<const int, int>>);
static_assert(serial::serializable<NoDefault>);
static_assert(!serial::serializable<std::vector<NoDefault>>);
static_assert(!serial::serializable<Ref<NoDefault>>);
static_assert(serial::min_bytes<int> == 4 && serial::min_bytes<bool> == 1);
static_assert(serial::min_bytes<std::pair<int, double>> == 12);
static_assert(serial::min_bytes<std::string> == 8 && serial::min_bytes<Ref<Node>> == 1);
static_assert(serial::min_bytes<std::tuple<>> == 1 && serial::min_bytes<std::array<int, 0>> == 1);
static_assert(serial::min_bytes<std::array<std::uint16_t, 3>> == 6);

TEST_CASE("serialize: integers are fixed-width little-endian", "[serialize]") {
  CHECK(bytes_of(std::uint32_t{0x01020304}) == std::string("\x04\x03\x02\x01", 4));
  CHECK(bytes_of(std::int16_t{-2}) == std::string("\xfe\xff", 2));
  CHECK(bytes_of(true) == std::string("\x01", 1));
  CHECK(bytes_of(std::int64_t{-1}).size() == 8);
  CHECK(bytes_of('a') == "a");

  CHECK(round_trip(std::numeric_limits<std::int8_t>::min()) == -128);
  CHECK(round_trip(std::numeric_limits<std::uint8_t>::max()) == 255);
  CHECK(round_trip(std::numeric_limits<std::int16_t>::min()) ==
        std::numeric_limits<std::int16_t>::min());
  CHECK(round_trip(std::numeric_limits<std::uint16_t>::max()) ==
        std::numeric_limits<std::uint16_t>::max());
  CHECK(round_trip(std::numeric_limits<int>::min()) == std::numeric_limits<int>::min());
  CHECK(round_trip(std::numeric_limits<unsigned>::max()) == std::numeric_limits<unsigned>::max());
  CHECK(round_trip(std::numeric_limits<long long>::min()) == std::numeric_limits<long long>::min());
  CHECK(round_trip(std::numeric_limits<std::uint64_t>::max()) ==
        std::numeric_limits<std::uint64_t>::max());
  CHECK(round_trip(std::size_t{12345}) == 12345);
  CHECK(round_trip(u'\u20ac') == u'\u20ac');
  CHECK(round_trip(L'x') == L'x');
  CHECK(round_trip(false) == false);
  CHECK(round_trip(true) == true);

  Writer w;
  w.u8(7);
  w.u32(0xdeadbeef);
  w.u64(0x0102030405060708);
  w.i64(-5);
  w.size(3);
  w.bytes("xyz", 3);
  Reader r(w.data());
  CHECK(r.u8() == 7);
  CHECK(r.u32() == 0xdeadbeef);
  CHECK(r.u64() == 0x0102030405060708);
  CHECK(r.i64() == -5);
  CHECK(r.size() == 3);
  char xyz[3];
  r.bytes(xyz, 3);
  CHECK(std::string(xyz, 3) == "xyz");
  CHECK(r.done());
  CHECK(r.offset() == w.data().size());
}

TEST_CASE("serialize: floats keep their bit patterns", "[serialize]") {
  CHECK(round_trip(3.25) == 3.25);
  CHECK(round_trip(-1.5f) == -1.5f);
  CHECK(round_trip(std::numeric_limits<double>::infinity()) ==
        std::numeric_limits<double>::infinity());
  CHECK(round_trip(std::numeric_limits<double>::denorm_min()) ==
        std::numeric_limits<double>::denorm_min());
  CHECK(std::signbit(round_trip(-0.0)));
  CHECK(std::isnan(round_trip(std::numeric_limits<float>::quiet_NaN())));
  CHECK(bytes_of(1.0f).size() == 4);
  CHECK(bytes_of(1.0).size() == 8);
}

TEST_CASE("serialize: strings and sequences round-trip", "[serialize]") {
  CHECK(round_trip(std::string()).empty());
  CHECK(round_trip(std::string("with\0nul", 8)) == std::string("with\0nul", 8));
  const std::string long_text(100000, 'q');
  CHECK(round_trip(long_text) == long_text);
  CHECK(round_trip(std::u16string(u"h\u00e9llo")) == u"h\u00e9llo");
  CHECK(bytes_of(std::string("ab")) == le64(2) + "ab");

  CHECK(round_trip(std::vector<int>{1, -2, 3}) == std::vector<int>{1, -2, 3});
  CHECK(round_trip(std::vector<int>{}).empty());
  CHECK(round_trip(std::vector<bool>{true, false, true}) == std::vector<bool>{true, false, true});
  CHECK(round_trip(std::vector<std::string>{"a", "", "ccc"}) ==
        std::vector<std::string>{"a", "", "ccc"});
  CHECK(round_trip(std::vector<std::vector<double>>{{1.5}, {}, {2, 3}}) ==
        std::vector<std::vector<double>>{{1.5}, {}, {2, 3}});
  CHECK(round_trip(std::array<int, 3>{7, 8, 9}) == std::array<int, 3>{7, 8, 9});
  CHECK(round_trip(std::array<std::string, 2>{"x", "y"}) == std::array<std::string, 2>{"x", "y"});
  CHECK(bytes_of(std::array<int, 0>{}).size() == 1);
  CHECK(round_trip(std::vector<std::array<int, 0>>(5)).size() == 5);
  CHECK(round_trip(std::vector<Color>{Color::green, Color::red}) ==
        std::vector<Color>{Color::green, Color::red});
}

TEST_CASE("serialize: maps sets optionals pairs and tuples round-trip", "[serialize]") {
  const std::map<std::string, int> m{{"a", 1}, {"b", 2}};
  CHECK(round_trip(m) == m);
  const std::unordered_map<int, std::string> um{{1, "one"}, {2, "two"}, {3, "three"}};
  CHECK(round_trip(um) == um);
  const std::set<std::string> s{"x", "y"};
  CHECK(round_trip(s) == s);
  const std::unordered_set<long> us{5, 6, 7};
  CHECK(round_trip(us) == us);

  CHECK(round_trip(std::optional<int>()) == std::nullopt);
  CHECK(round_trip(std::optional<int>(4)) == 4);
  CHECK(round_trip(std::optional<std::optional<int>>(std::optional<int>())) ==
        std::optional<std::optional<int>>(std::optional<int>()));
  CHECK(round_trip(std::pair<int, std::string>(1, "p")) == std::pair<int, std::string>(1, "p"));
  const std::tuple<int, std::string, std::vector<char>, bool> t{3, "t", {'a', 'b'}, true};
  CHECK(round_trip(t) == t);
  CHECK(round_trip(std::tuple<>()) == std::tuple<>());
  CHECK(round_trip(std::vector<std::tuple<>>(4)).size() == 4);

  using Nested = std::map<std::string, std::vector<std::optional<std::pair<int, double>>>>;
  const Nested nested{{"first", {std::pair(1, 1.5), std::nullopt, std::pair(-3, 0.25)}},
                      {"empty", {}},
                      {"nones", {std::nullopt, std::nullopt}}};
  CHECK(round_trip(nested) == nested);
}

TEST_CASE("serialize: a user type round-trips through its ADL hooks", "[serialize]") {
  const Item item{"shirt", {38, 40, 42}, 19.5};
  CHECK(round_trip(item) == item);
  const std::map<std::string, Item> catalog{{"a", item}, {"b", Item{"hat", {}, std::nullopt}}};
  CHECK(round_trip(catalog) == catalog);
  CHECK_THROWS_AS(load_bytes<Color>(std::string("\x05", 1)), FormatError);
  CHECK_THROWS_WITH(load_bytes<Color>(std::string("\x05", 1)), contains("test: color 5 at byte 1"));
}

TEST_CASE("serialize: Refs to boxes round-trip and null stays null", "[serialize]") {
  const Ref<std::string> text = make<std::string>("boxed");
  const Ref<std::string> loaded = round_trip(text);
  REQUIRE(loaded);
  CHECK(*loaded == "boxed");
  CHECK_FALSE(memlens::is(loaded, text));

  const Ref<std::vector<int>> numbers = make<std::vector<int>>(std::vector<int>{4, 5, 6});
  CHECK(*round_trip(numbers) == std::vector<int>{4, 5, 6});
  CHECK_FALSE(round_trip(Ref<std::string>()));
  CHECK(bytes_of(Ref<std::string>()) == std::string("\0", 1));

  const Ref<const std::string> constant = make<std::string>("const");
  CHECK(*round_trip(constant) == "const");
  const std::optional<Ref<std::map<int, std::string>>> boxed_map =
      make<std::map<int, std::string>>(std::map<int, std::string>{{1, "a"}});
  CHECK(round_trip(boxed_map).value()->at(1) == "a");
}

TEST_CASE("serialize: Refs to one object load as one object", "[serialize]") {
  const Ref<std::string> a = make<std::string>("shared");
  const Ref<std::string> b = make<std::string>("shared");  // equal value and another object
  const std::vector<Ref<std::string>> refs{a, a, b, nullptr, a};
  const auto loaded = round_trip(refs);
  REQUIRE(loaded.size() == 5);
  CHECK(memlens::is(loaded[0], loaded[1]));
  CHECK(memlens::is(loaded[0], loaded[4]));
  CHECK_FALSE(memlens::is(loaded[0], loaded[2]));
  CHECK_FALSE(loaded[3]);
  CHECK(*loaded[2] == "shared");
  // The repeats are back-references: a tag and an index, not the string again.
  CHECK(bytes_of(refs).size() == 8 + (1 + 8 + 6) + (1 + 8) + (1 + 8 + 6) + 1 + (1 + 8));

  // Sharing holds across a Ref<T> and a Ref<const T> of one object.
  const Ref<const std::string> also_a = a;
  const auto mixed = round_trip(std::pair(a, also_a));
  CHECK(memlens::is(mixed.first, mixed.second));
}

TEST_CASE("serialize: object types with hooks keep sharing and cycles", "[serialize]") {
  {
    auto first = make<Node>();
    auto second = make<Node>();
    first->value = 1;
    second->value = 2;
    first->next = second;
    second->next = first;  // a cycle
    const auto loaded = round_trip(std::vector<Ref<Node>>{first, second});
    REQUIRE(loaded.size() == 2);
    CHECK(loaded[0]->value == 1);
    CHECK(loaded[1]->value == 2);
    CHECK(memlens::is(loaded[0]->next, loaded[1]));
    CHECK(memlens::is(loaded[1]->next, loaded[0]));
    first->next = nullptr;
    loaded[0]->next = nullptr;
  }
  memlens::gc::collect();

  // A chain as long as max_depth allows round-trips; one hook deeper throws, not overflows.
  Ref<Node> head;
  for (std::size_t i = 0; i < serial::max_depth; ++i) {
    auto node = make<Node>();
    node->value = static_cast<int>(i);
    node->next = std::move(head);
    head = std::move(node);
  }
  const Ref<Node> copy = round_trip(head);
  CHECK(copy->value == static_cast<int>(serial::max_depth) - 1);
  auto longer = make<Node>();
  longer->next = head;
  CHECK_THROWS_AS(bytes_of(longer), memlens::ValueError);
  CHECK_THROWS_WITH(bytes_of(longer), contains("nest more than 1000"));
}

TEST_CASE("serialize: a Ref saves only objects of its own type", "[serialize]") {
  const Ref<Node> special = make<Special>();
  CHECK_THROWS_AS(bytes_of(special), memlens::TypeError);
  CHECK_THROWS_WITH(bytes_of(special), contains("Special"));
}

TEST_CASE("serialize: a hook that writes nothing is refused", "[serialize]") {
  CHECK_THROWS_AS(bytes_of(Silent{}), memlens::ValueError);
  CHECK_THROWS_WITH(bytes_of(Silent{}), contains("wrote no bytes"));
}

TEST_CASE("serialize: bad bytes throw with the offset", "[serialize]") {
  CHECK_THROWS_WITH(load_bytes<int>("ab"),
                    contains("test: truncated: 4 bytes needed, 2 left at byte 0"));
  CHECK_THROWS_WITH(load_bytes<bool>("\x02"), contains("bool byte 2"));
  CHECK_THROWS_WITH(load_bytes<std::optional<int>>("\x03"), contains("optional tag 3"));
  CHECK_THROWS_WITH(load_bytes<Ref<std::string>>("\x09"), contains("Ref tag 9"));
  CHECK_THROWS_WITH(load_bytes<Ref<std::string>>("\x02" + le64(0)),
                    contains("object #0, but only 0 were loaded"));
  CHECK_THROWS_WITH(load_bytes<std::tuple<>>("\x01"), contains("empty tuple"));
  CHECK_THROWS_WITH(load_bytes<int>(std::string("abcde")), contains("1 bytes left over"));
  // A back-reference to an object of another type.
  const std::string crossed =
      std::string("\x01", 1) + le64(1) + "s" + std::string("\x02", 1) + le64(0);
  CHECK_THROWS_AS((load_bytes<std::pair<Ref<std::string>, Ref<std::vector<char>>>>(crossed)),
                  FormatError);
  CHECK_THROWS_WITH((load_bytes<std::pair<Ref<std::string>, Ref<std::vector<char>>>>(crossed)),
                    contains("to object #0, which is a"));
  // Duplicate keys cannot come from save.
  const std::string twice = le64(2) + std::string("\x01\x00\x00\x00\x01\x00\x00\x00", 8) +
                            std::string("\x01\x00\x00\x00\x02\x00\x00\x00", 8);
  CHECK_THROWS_WITH((load_bytes<std::map<int, int>>(twice)), contains("repeats a key"));
  CHECK_THROWS_WITH((load_bytes<std::unordered_map<int, int>>(twice)), contains("repeats a key"));
}

TEST_CASE("serialize: huge counts throw before allocating", "[serialize]") {
  const std::string huge = le64(std::uint64_t{1} << 60);
  // std::bad_alloc or std::length_error would mean an allocation was tried.
  CHECK_THROWS_AS(load_bytes<std::string>(huge), FormatError);
  CHECK_THROWS_AS(load_bytes<std::vector<int>>(huge + "abcd"), FormatError);
  CHECK_THROWS_AS(load_bytes<std::vector<std::string>>(huge), FormatError);
  CHECK_THROWS_AS((load_bytes<std::map<int, std::string>>(huge)), FormatError);
  CHECK_THROWS_AS((load_bytes<std::unordered_map<int, int>>(huge)), FormatError);
  CHECK_THROWS_AS(load_bytes<std::unordered_set<int>>(huge), FormatError);
  CHECK_THROWS_AS((load_bytes<std::vector<std::optional<std::array<char, 4096>>>>(huge)),
                  FormatError);
  CHECK_THROWS_WITH(load_bytes<std::vector<int>>(huge + "abcd"),
                    contains("a count of 1152921504606846976 values of at least 4 bytes each, "
                             "but only 4 bytes are left at byte 0"));
  CHECK_THROWS_WITH(load_bytes<std::vector<std::uint64_t>>(le64(2) + std::string(15, 'x')),
                    contains("a count of 2"));
  CHECK_THROWS_AS(load_bytes<std::vector<std::uint64_t>>(le64(~std::uint64_t{0})), FormatError);

  const std::string three = le64(3) + "abc";
  const std::string four = le64(4) + "abc";
  Reader r(three);
  CHECK(r.size(0) == 3);  // 0 counts as 1 byte each
  Reader r2(four);
  CHECK_THROWS_AS(r2.size(0), FormatError);
}

TEST_CASE("serialize: nesting in bytes is bounded", "[serialize]") {
  // A Ref to a new Node, whose encoding is an i32 then a Ref: a chain deeper than max_depth.
  std::string deep = "\x01";
  for (std::size_t i = 0; i < serial::max_depth + 10; ++i) deep += std::string("\0\0\0\0\x01", 5);
  deep += std::string("\0\0\0\0\0", 5);
  CHECK_THROWS_WITH(load_bytes<Ref<Node>>(deep), contains("nest more than 1000 hooks deep"));
  memlens::gc::collect();
}

TEST_CASE("serialize: random bytes and mutations only ever throw FormatError", "[serialize]") {
  using Shape =
      std::tuple<std::map<std::string, std::vector<std::optional<std::pair<int, double>>>>,
                 std::vector<Ref<std::string>>, Ref<Node>, std::set<long>, Item>;
  auto node = make<Node>();
  node->next = node;
  const Shape valid{{{"k", {std::pair(1, 2.0), std::nullopt}}},
                    {make<std::string>("a"), nullptr},
                    node,
                    {1, 2, 3},
                    Item{"n", {1}, 2.5}};
  const std::string good = bytes_of(valid);
  node->next = nullptr;
  std::mt19937_64 random(20240501);
  int loaded = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bytes = good;
    if (round % 3 == 0) {
      bytes.resize(random() % 200);
      for (auto& c : bytes) c = static_cast<char>(random() % 4 == 0 ? random() : random() % 3);
    } else {
      for (std::uint64_t k = 0, n = 1 + random() % 4; k < n; ++k) {
        bytes[random() % bytes.size()] = static_cast<char>(random());
      }
      if (round % 5 == 0) bytes.resize(random() % bytes.size());
    }
    try {
      const Shape out = load_bytes<Shape>(bytes);
      ++loaded;
      if (std::get<2>(out)) std::get<2>(out)->next = nullptr;  // break a loaded cycle
    } catch (const FormatError&) {
    }
  }
  CHECK(loaded < 3000);
  memlens::gc::collect();
}

TEST_CASE("serialize: CRC-32 is zlib's", "[serialize]") {
  CHECK(serial::detail::crc32("") == 0);
  CHECK(serial::detail::crc32("123456789") == 0xCBF43926U);
  CHECK(serial::detail::crc32("The quick brown fox jumps over the lazy dog") == 0x414FA339U);
  std::string pattern(1000, '\0');
  for (std::size_t i = 0; i < pattern.size(); ++i)
    pattern[i] = static_cast<char>((i * 7 + 3) % 256);
  CHECK(serial::detail::crc32(pattern) == 0x17BC2A46U);
}

TEST_CASE("serialize: a file round-trips with a documented header", "[serialize]") {
  TempDir dir;
  const auto path = dir.path / "state.bin";
  const std::map<std::string, std::vector<int>> state{{"a", {1, 2}}, {"b", {}}};
  serial::write_file(path, magic, 3, bytes_of(state), "Test");

  const std::string file = read_all(path);
  REQUIRE(file.size() == serial::header_size + bytes_of(state).size());
  CHECK(file.substr(0, 8) == magic);
  Reader header(std::string_view(file).substr(8, serial::header_size - 8));
  CHECK(header.u32() == 3);
  CHECK(header.u32() == 0);
  CHECK(header.u64() == bytes_of(state).size());
  CHECK(header.u32() == serial::detail::crc32(bytes_of(state)));
  CHECK(file == serial::pack(magic, 3, bytes_of(state)));

  const std::string payload = serial::read_file(path, magic, 3, "Test");
  Reader r(payload, "Test");
  std::map<std::string, std::vector<int>> loaded;
  serial::load(r, loaded);
  r.finish();
  CHECK(loaded == state);

  // Rewriting replaces the file whole and leaves no temporary file behind.
  serial::write_file(path, magic, 3, bytes_of(std::string("second")), "Test");
  CHECK(serial::read_file(path, magic, 3, "Test") == bytes_of(std::string("second")));
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path),
                      std::filesystem::directory_iterator()) == 1);
  // An empty payload is a valid file.
  serial::write_file(path, magic, 3, "", "Test");
  CHECK(serial::read_file(path, magic, 3, "Test").empty());
}

TEST_CASE("serialize: missing and unreadable files throw naming the part and path", "[serialize]") {
  TempDir dir;
  const auto missing = dir.path / "missing.bin";
  CHECK_THROWS_AS(serial::read_file(missing, magic, 1, "Test"), memlens::Error);
  CHECK_THROWS_WITH(serial::read_file(missing, magic, 1, "Test"),
                    contains("Test: cannot load '" + missing.string() + "': no such file"));
  CHECK_THROWS_WITH(serial::read_file(dir.path, magic, 1, "Test"), contains("is a directory"));
  if (geteuid() != 0) {  // root reads any file
    const auto locked = dir.path / "locked.bin";
    serial::write_file(locked, magic, 1, "x", "Test");
    std::filesystem::permissions(locked, std::filesystem::perms::none);
    CHECK_THROWS_WITH(serial::read_file(locked, magic, 1, "Test"), contains("Permission denied"));
  }
  write_all(dir.path / "empty.bin", "");
  CHECK_THROWS_WITH(serial::read_file(dir.path / "empty.bin", magic, 1, "Test"),
                    contains("truncated: 0 bytes"));
  // Writing into a directory that does not exist fails and says where.
  CHECK_THROWS_AS(serial::write_file(dir.path / "no" / "x.bin", magic, 1, "p", "Test"),
                  FormatError);
  CHECK_THROWS_WITH(serial::write_file(dir.path / "no" / "x.bin", magic, 1, "p", "Test"),
                    contains("Test: cannot save to"));
  CHECK_THROWS_AS(serial::write_file(dir.path / "x.bin", "short", 1, "p", "Test"),
                  memlens::ValueError);
}

TEST_CASE("serialize: every truncation of a file throws", "[serialize]") {
  TempDir dir;
  const auto path = dir.path / "cut.bin";
  const std::string file =
      serial::pack(magic, 1, bytes_of(std::vector<std::string>{"alpha", "beta"}));
  for (std::size_t n = 0; n < file.size(); ++n) {
    write_all(path, file.substr(0, n));
    CAPTURE(n);
    CHECK_THROWS_AS(serial::read_file(path, magic, 1, "Test"), FormatError);
    CHECK_THROWS_AS(serial::unpack(std::string_view(file).substr(0, n), magic, 1, "Test"),
                    FormatError);
  }
  CHECK_THROWS_WITH(
      serial::unpack(std::string_view(file).substr(0, file.size() - 1), magic, 1, "Test"),
      contains("truncated: the header promises"));
  CHECK_THROWS_WITH(serial::unpack(file + "x", magic, 1, "Test"), contains("1 bytes after the"));
}

TEST_CASE("serialize: any flipped byte in a file throws", "[serialize]") {
  const std::string file =
      serial::pack(magic, 1, bytes_of(std::map<std::string, int>{{"alpha", 1}, {"beta", 2}}));
  for (std::size_t i = 0; i < file.size(); ++i) {
    for (const unsigned flip : {0x01U, 0x80U, 0xffU}) {
      std::string bad = file;
      bad[i] = static_cast<char>(static_cast<unsigned char>(bad[i]) ^ flip);
      CAPTURE(i, flip);
      CHECK_THROWS_AS(serial::unpack(bad, magic, 1, "Test", "f.bin"), FormatError);
      if (i >= serial::header_size) {
        CHECK_THROWS_WITH(serial::unpack(bad, magic, 1, "Test", "f.bin"),
                          contains("Test: cannot load 'f.bin': checksum mismatch"));
      }
    }
  }
}

TEST_CASE("serialize: wrong magic and wrong version are named", "[serialize]") {
  TempDir dir;
  const auto path = dir.path / "other.bin";
  serial::write_file(path, "OTHERFMT", 1, "x", "Other");
  CHECK_THROWS_WITH(
      serial::read_file(path, magic, 1, "Test"),
      contains("not a Test file: it starts with \"OTHERFMT\", expected \"MLTEST\\x00\\x01\""));
  serial::write_file(path, magic, 7, "x", "Test");
  CHECK_THROWS_AS(serial::read_file(path, magic, 1, "Test"), FormatError);
  CHECK_THROWS_WITH(
      serial::read_file(path, magic, 1, "Test"),
      contains("Test: cannot load '" + path.string() + "': file format version 7, expected 1"));
  std::string reserved = serial::pack(magic, 1, "x");
  reserved[12] = 1;
  CHECK_THROWS_WITH(serial::unpack(reserved, magic, 1, "Test"), contains("reserved header field"));
}

TEST_CASE("serialize: a huge count inside a valid file throws on load", "[serialize]") {
  TempDir dir;
  const auto path = dir.path / "huge.bin";
  serial::write_file(path, magic, 1, le64(std::uint64_t{1} << 60) + "tail", "Test");
  const std::string payload = serial::read_file(path, magic, 1, "Test");  // the file is intact
  Reader r(payload, "Test: cannot load '" + path.string() + "'");
  std::vector<std::string> out;
  CHECK_THROWS_AS(serial::load(r, out), FormatError);
  Reader r2(payload, "Test");
  CHECK_THROWS_WITH(serial::load(r2, out), contains("Test: a count of 1152921504606846976"));
}

TEST_CASE("serialize: loading into a fresh value keeps the old state on failure", "[serialize]") {
  std::map<std::string, int> state{{"kept", 1}};
  auto reload = [&state](const std::string& payload) {
    Reader r(payload, "Test");
    std::map<std::string, int> fresh;
    serial::load(r, fresh);
    r.finish();
    state.swap(fresh);
  };
  std::string bytes = bytes_of(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  CHECK_THROWS_AS(reload(bytes.substr(0, bytes.size() - 2)), FormatError);
  CHECK(state == std::map<std::string, int>{{"kept", 1}});
  reload(bytes);
  CHECK(state == std::map<std::string, int>{{"a", 1}, {"b", 2}});
}

}  // namespace test_serialize
