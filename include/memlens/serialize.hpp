// memlens: values as bytes and bytes as files (memlens::serial), for the tools that save their
// state to disk. Two parts:
//   - a customization point, `save(Writer&, const T&)` / `load(Reader&, T&)`, built in for the
//     standard vocabulary types and Refs, extended by two ADL functions per user type;
//   - a file container, `write_file` / `read_file`: magic, version, size and CRC-32 in a header,
//     written atomically, every field checked on the way back.
// The reader is meant to meet hostile bytes: every read is bounds-checked, every count is checked
// against the bytes left before anything is allocated, and nesting is bounded.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "memlens/detail/files.hpp"
#include "memlens/errors.hpp"
#include "memlens/object.hpp"

namespace memlens::serial {

/// Bytes or a file that do not hold what the format says (truncated, corrupt, another version),
/// or a file that cannot be read or written. Callers usually catch its base, memlens::Error.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// How many user hooks (`memlens_save` / `memlens_load`) may run inside one another: a chain of
/// Refs through objects, or a type that holds its own type. Only such hooks can nest without a
/// bound the types fix, so past this depth save and load throw rather than overflow the stack.
inline constexpr std::size_t max_depth = 1000;

namespace detail {
struct Access;
}  // namespace detail

/**
 * Where `save` puts bytes: an in-memory byte string, integers little-endian and fixed-width.
 *
 * One Writer is one payload: within it, a Ref to an object already saved is written as a
 * back-reference, so objects shared by several Refs (or reached around a cycle) load as one
 * object again. The Writer holds a reference to each object it saved, so that no address it
 * remembers can be reused by a new object while it writes.
 */
class Writer {
 public:
  /// Raw bytes, as they are.
  void bytes(const void* data, std::size_t n) {
    if (n != 0) out_.append(static_cast<const char*>(data), n);
  }
  /// Unsigned integers of fixed width, little-endian.
  void u8(std::uint8_t value) { out_.push_back(static_cast<char>(value)); }
  void u32(std::uint32_t value) { put(value); }
  void u64(std::uint64_t value) { put(value); }
  /// Two's complement, as a u64.
  void i64(std::int64_t value) { put(static_cast<std::uint64_t>(value)); }
  /// A count or length, as a u64 (the same on every platform memlens supports).
  void size(std::size_t n) { put(static_cast<std::uint64_t>(n)); }

  /// What was written so far.
  const std::string& data() const noexcept { return out_; }
  /// Moves the bytes out (the Writer is spent afterwards).
  std::string take() && noexcept { return std::move(out_); }

 private:
  friend struct detail::Access;

  template <class U>
  void put(U value) {
    char b[sizeof(U)];
    for (std::size_t i = 0; i < sizeof(U); ++i) b[i] = static_cast<char>(value >> (8 * i) & 0xffU);
    out_.append(b, sizeof(U));
  }

  std::string out_;
  std::unordered_map<const Object*, std::uint64_t> saved_;  // object -> its index in the payload
  std::vector<Ref<const Object>> kept_;                     // keeps those addresses unique
  std::size_t depth_ = 0;
};

/**
 * Where `load` takes bytes from: a view of a byte string that must outlive the Reader. Every
 * read checks the bytes left and throws FormatError instead of reading past the end; every
 * count is checked against the bytes left before anything is allocated.
 *
 * `what` starts every error message: name the part and the file, e.g.
 * `Reader reader(payload, "AdvancedCache: cannot load '" + path.string() + "'")` gives
 * `AdvancedCache: cannot load 'cache.bin': a count of 1152921504606846976 ... at byte 12`
 * (offsets count from the start of the view). A Reader keeps the objects it made for Refs until
 * it is destroyed, so that later back-references can name them.
 */
class Reader {
 public:
  explicit Reader(std::string_view data, std::string what = "memlens::serial")
      : data_(data), what_(std::move(what)) {}
  /// A Reader views its bytes: a temporary string would be gone before the first read.
  template <class S>
  requires std::is_same_v<S, std::string>
  explicit Reader(S&& temporary, std::string what = "memlens::serial") = delete;

  /// Raw bytes into `out`.
  void bytes(void* out, std::size_t n) {
    need(n);
    if (n != 0) std::memcpy(out, data_.data() + pos_, n);
    pos_ += n;
  }
  /// Integers as Writer wrote them.
  std::uint8_t u8() {
    need(1);
    return static_cast<std::uint8_t>(data_[pos_++]);
  }
  std::uint32_t u32() { return get<std::uint32_t>(); }
  std::uint64_t u64() { return get<std::uint64_t>(); }
  std::int64_t i64() { return static_cast<std::int64_t>(get<std::uint64_t>()); }

  /**
   * A count written by `Writer::size`, checked: `n` elements of at least `min_element_bytes`
   * bytes each must fit in the bytes left, so a corrupt count of 2^60 throws here instead of
   * reserving 2^60 of anything. Every value takes at least one byte (see `min_bytes`), so 0
   * counts as 1: a count never exceeds `remaining()`, and no loop over it can run away.
   */
  std::size_t size(std::size_t min_element_bytes = 1) {
    const std::size_t at = pos_;
    const std::uint64_t n = get<std::uint64_t>();
    const std::size_t each = min_element_bytes == 0 ? 1 : min_element_bytes;
    if (n > remaining() / each) {
      fail_at("a count of " + std::to_string(n) + " values of at least " + std::to_string(each) +
                  " bytes each, but only " + std::to_string(remaining()) + " bytes are left",
              at);
    }
    return static_cast<std::size_t>(n);
  }

  /// Bytes not read yet.
  std::size_t remaining() const noexcept { return data_.size() - pos_; }
  /// Whether every byte was read.
  bool done() const noexcept { return pos_ == data_.size(); }
  /// Bytes read so far: where the next read starts.
  std::size_t offset() const noexcept { return pos_; }

  /// Throws unless every byte was read: bytes left over mean the payload is not what the
  /// reader expected, even if what came before decoded.
  void finish() const {
    if (!done()) fail(std::to_string(remaining()) + " bytes left over after the last value");
  }

  /// Throws FormatError("<what>: <why> at byte <offset>"): for checks of a value's meaning
  /// (a tag out of range, an invariant broken) in a type's `memlens_load`.
  [[noreturn]] void fail(const std::string& why) const { fail_at(why, pos_); }

 private:
  friend struct detail::Access;

  [[noreturn]] void fail_at(const std::string& why, std::size_t at) const {
    throw FormatError(what_ + ": " + why + " at byte " + std::to_string(at));
  }
  void need(std::size_t n) const {
    if (n > remaining()) {
      fail("truncated: " + std::to_string(n) + " bytes needed, " + std::to_string(remaining()) +
           " left");
    }
  }
  template <class U>
  U get() {
    need(sizeof(U));
    U value = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      value |=
          static_cast<U>(static_cast<U>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i));
    }
    pos_ += sizeof(U);
    return value;
  }

  std::string_view data_;
  std::size_t pos_ = 0;
  std::string what_;
  std::vector<Ref<Object>> loaded_;  // the objects made for Refs, by index in the payload
  std::size_t depth_ = 0;
};

/**
 * Appends `value` to the writer: built in for bool, integers, float, double, std::string,
 * std::vector, std::array, std::map, std::unordered_map, std::set, std::unordered_set,
 * std::optional, std::pair, std::tuple and memlens::Ref, nested freely; any other type through
 * its ADL hooks:
 * ```cpp
 * namespace shop {
 * struct Item { std::string name; std::vector<int> sizes; };
 * void memlens_save(memlens::serial::Writer& w, const Item& item) {
 *   memlens::serial::save(w, item.name);
 *   memlens::serial::save(w, item.sizes);
 * }
 * void memlens_load(memlens::serial::Reader& r, Item& item) {
 *   memlens::serial::load(r, item.name);
 *   memlens::serial::load(r, item.sizes);
 * }
 * }  // namespace shop
 * ```
 * A type without support fails to compile with a message saying what to define. Saving Refs
 * changes reference counts and loading them makes objects, so with several threads both follow
 * the heap-lock rule (`memlens::HeapLock`).
 */
template <class T>
void save(Writer& writer, const T& value);

/**
 * Reads a value written by `save` of the same type into `value`. Throws FormatError on bytes
 * that do not decode, and may then leave `value` partly loaded: load into a fresh object and
 * swap it in, so that a failure leaves the caller's state as it was. Containers, optionals and
 * Refs default-construct their elements before loading into them.
 */
template <class T>
void load(Reader& reader, T& value);

namespace detail {

struct Access {
  static std::unordered_map<const Object*, std::uint64_t>& saved(Writer& w) { return w.saved_; }
  static std::vector<Ref<const Object>>& kept(Writer& w) { return w.kept_; }
  static std::size_t& depth(Writer& w) { return w.depth_; }
  static std::vector<Ref<Object>>& loaded(Reader& r) { return r.loaded_; }
  static std::size_t& depth(Reader& r) { return r.depth_; }
};

template <class>
inline constexpr bool always_false = false;

template <class T, template <class...> class Template>
inline constexpr bool is_instance = false;
template <template <class...> class Template, class... Args>
inline constexpr bool is_instance<Template<Args...>, Template> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <class T>
inline constexpr bool is_string = false;
template <class C, class Traits, class Alloc>
inline constexpr bool is_string<std::basic_string<C, Traits, Alloc>> = std::is_integral_v<C>;

template <class T>
inline constexpr bool is_map = is_instance<T, std::map> || is_instance<T, std::unordered_map>;
template <class T>
inline constexpr bool is_set = is_instance<T, std::set> || is_instance<T, std::unordered_set>;

/// float and double travel as their IEEE 754 bit patterns; long double has no portable layout.
template <class T>
inline constexpr bool is_portable_float = [] {
  if constexpr (std::is_floating_point_v<T>) {
    return std::numeric_limits<T>::is_iec559 && (sizeof(T) == 4 || sizeof(T) == 8);
  } else {
    return false;
  }
}();

/// Values whose bytes in memory are their bytes on disk, so arrays of them are copied whole.
template <class T>
inline constexpr bool is_bulk = std::endian::native == std::endian::little &&
                                ((std::is_integral_v<T> && !std::is_same_v<T, bool>) ||
                                 is_portable_float<T>);

// Only ADL finds the hooks: these hide any memlens_save an enclosing namespace might declare.
void memlens_save() = delete;
void memlens_load() = delete;

template <class T>
concept has_save_hook = requires(Writer& w, const T& value) {
  memlens_save(w, value);
};
template <class T>
concept has_load_hook = requires(Reader& r, T& value) {
  memlens_load(r, value);
};

template <class T>
void call_save_hook(Writer& w, const T& value) {
  memlens_save(w, value);
}
template <class T>
void call_load_hook(Reader& r, T& value) {
  memlens_load(r, value);
}

/// Counts one level of hook nesting for as long as it lives.
class Nesting {
 public:
  explicit Nesting(std::size_t& depth) : depth_(depth) { ++depth_; }
  ~Nesting() { --depth_; }
  Nesting(const Nesting&) = delete;
  Nesting& operator=(const Nesting&) = delete;
  bool too_deep() const noexcept { return depth_ > max_depth; }

 private:
  std::size_t& depth_;
};

// A Ref's first byte.
inline constexpr std::uint8_t ref_null = 0;
inline constexpr std::uint8_t ref_new = 1;     // the object follows
inline constexpr std::uint8_t ref_shared = 2;  // a u64: the index of an object saved before

template <class T>
consteval bool supported();

/// Whether T can be an element that load default-constructs (in a container, an optional, a
/// box behind a Ref).
template <class T>
consteval bool element_supported() {
  return !std::is_const_v<T> && std::is_default_constructible_v<T> && supported<T>();
}

template <class T>
consteval bool supported() {
  if constexpr (std::is_const_v<T> || std::is_volatile_v<T> || std::is_reference_v<T>) {
    return false;
  } else if constexpr (std::is_integral_v<T>) {
    return true;
  } else if constexpr (std::is_floating_point_v<T>) {
    return is_portable_float<T>;
  } else if constexpr (is_string<T>) {
    return true;
  } else if constexpr (is_instance<T, std::vector>) {
    return element_supported<typename T::value_type>();
  } else if constexpr (is_std_array<T>) {
    return supported<typename T::value_type>();
  } else if constexpr (is_map<T>) {
    return element_supported<typename T::key_type>() &&
           element_supported<typename T::mapped_type>();
  } else if constexpr (is_set<T>) {
    return element_supported<typename T::key_type>();
  } else if constexpr (is_instance<T, std::optional>) {
    return element_supported<typename T::value_type>();
  } else if constexpr (is_instance<T, std::pair>) {
    return supported<typename T::first_type>() && supported<typename T::second_type>();
  } else if constexpr (is_instance<T, std::tuple>) {
    return []<class... E>(std::type_identity<std::tuple<E...>>) {
      return (supported<E>() && ...);
    }(std::type_identity<T>{});
  } else if constexpr (memlens::detail::is_ref<T>::value) {
    using V = std::remove_const_t<typename T::element_type>;
    if constexpr (std::is_same_v<V, Object> || std::is_abstract_v<V> ||
                  !std::is_default_constructible_v<V>) {
      return false;
    } else if constexpr (memlens::detail::is_object_type<V>) {
      return has_save_hook<V> && has_load_hook<V>;
    } else {
      return supported<V>();
    }
  } else if constexpr (std::is_class_v<T> || std::is_enum_v<T> || std::is_union_v<T>) {
    return has_save_hook<T> && has_load_hook<T>;
  } else {
    return false;
  }
}

/// The fewest bytes a T takes in a payload; at least 1 for every type (an empty tuple or array
/// writes a byte, a hook that writes nothing is refused), so counts bound the work of loading.
template <class T>
consteval std::size_t min_bytes_of() {
  if constexpr (std::is_same_v<T, bool>) {
    return 1;
  } else if constexpr (std::is_arithmetic_v<T>) {
    return sizeof(T);
  } else if constexpr (is_string<T> || is_instance<T, std::vector> || is_map<T> || is_set<T>) {
    return 8;
  } else if constexpr (is_std_array<T>) {
    constexpr std::size_t n = std::tuple_size_v<T>;
    return n == 0 ? 1 : n * min_bytes_of<typename T::value_type>();
  } else if constexpr (is_instance<T, std::pair>) {
    return min_bytes_of<typename T::first_type>() + min_bytes_of<typename T::second_type>();
  } else if constexpr (is_instance<T, std::tuple>) {
    constexpr std::size_t sum = []<class... E>(std::type_identity<std::tuple<E...>>) {
      return (std::size_t{0} + ... + min_bytes_of<std::remove_cv_t<E>>());
    }(std::type_identity<T>{});
    return sum == 0 ? 1 : sum;
  } else {
    return 1;  // optional and Ref: a tag byte; user types: at least one byte, checked by save
  }
}

/// How many elements to reserve for a count of n: all of them when an element in memory is not
/// much larger than its least encoding, else a first megabyte's worth (vector growth does the
/// rest as real elements arrive), so that a small payload cannot reserve a huge vector.
template <class T>
std::size_t reservation(std::size_t n) {
  if constexpr (sizeof(T) <= 8 * min_bytes_of<T>()) {
    return n;
  } else {
    constexpr std::size_t cap = (std::size_t{1} << 20) / sizeof(T) + 1;
    return n < cap ? n : cap;
  }
}

template <class I>
void save_integer(Writer& w, I value) {
  using U = std::make_unsigned_t<I>;
  const auto u = static_cast<U>(value);
  unsigned char b[sizeof(I)];
  for (std::size_t i = 0; i < sizeof(I); ++i)
    b[i] = static_cast<unsigned char>(u >> (8 * i) & 0xffU);
  w.bytes(b, sizeof(I));
}

template <class I>
I load_integer(Reader& r) {
  using U = std::make_unsigned_t<I>;
  unsigned char b[sizeof(I)];
  r.bytes(b, sizeof(I));
  U u = 0;
  for (std::size_t i = 0; i < sizeof(I); ++i)
    u = static_cast<U>(u | static_cast<U>(U{b[i]} << (8 * i)));
  return static_cast<I>(u);
}

template <class T>
std::string type_name_of() {
  return memlens::detail::demangle(typeid(T).name());
}

/// Saves a range of elements after their count; arrays of plain numbers as one block.
template <class E, class Range>
void save_elements(Writer& w, const Range& range, std::size_t n) {
  if constexpr (is_bulk<E>) {  // string, vector or array: contiguous
    w.bytes(range.data(), n * sizeof(E));
  } else {
    for (const auto& element : range) save(w, element);
  }
}

}  // namespace detail

/// Whether `save` and `load` both exist for T (built in, or both ADL hooks found).
template <class T>
inline constexpr bool serializable = detail::supported<T>();

/// The fewest bytes a T takes in a payload (at least 1). A caller that writes its own count of
/// records passes their sum to `Reader::size`: `reader.size(min_bytes<K> + min_bytes<V>)`.
template <class T>
inline constexpr std::size_t min_bytes = detail::min_bytes_of<std::remove_cv_t<T>>();

// The encodings, for reference (all integers little-endian):
//   bool: 1 byte, 0 or 1            integers: sizeof(T) bytes, two's complement
//   float, double: the IEEE 754 bits (4 or 8 bytes)
//   string, vector, map, set: u64 count, then the elements (a map's as key, value)
//   array<T, N>: N elements (N = 0: one 0 byte)   tuple<>: one 0 byte
//   optional: u8 0 (empty) or 1 then the value     pair, tuple: the members in order
//   Ref: u8 0 (null); 1 then the object's value (it gets the next index); 2 then a u64 index of
//        an object earlier in the payload (sharing and cycles)
template <class T>
void save(Writer& w, const T& value) {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    w.u8(value ? 1 : 0);
  } else if constexpr (std::is_integral_v<U>) {
    detail::save_integer(w, value);
  } else if constexpr (detail::is_portable_float<U>) {
    using Bits = std::conditional_t<sizeof(U) == 4, std::uint32_t, std::uint64_t>;
    detail::save_integer(w, std::bit_cast<Bits>(value));
  } else if constexpr (detail::is_string<U> || detail::is_instance<U, std::vector>) {
    w.size(value.size());
    detail::save_elements<typename U::value_type>(w, value, value.size());
  } else if constexpr (detail::is_std_array<U>) {
    if constexpr (std::tuple_size_v<U> == 0) {
      w.u8(0);
    } else {
      detail::save_elements<typename U::value_type>(w, value, value.size());
    }
  } else if constexpr (detail::is_map<U>) {
    w.size(value.size());
    for (const auto& [key, mapped] : value) {
      save(w, key);
      save(w, mapped);
    }
  } else if constexpr (detail::is_set<U>) {
    w.size(value.size());
    for (const auto& key : value) save(w, key);
  } else if constexpr (detail::is_instance<U, std::optional>) {
    w.u8(value ? 1 : 0);
    if (value) save(w, *value);
  } else if constexpr (detail::is_instance<U, std::pair>) {
    save(w, value.first);
    save(w, value.second);
  } else if constexpr (detail::is_instance<U, std::tuple>) {
    if constexpr (std::tuple_size_v<U> == 0) {
      w.u8(0);
    } else {
      std::apply([&w](const auto&... members) { (save(w, members), ...); }, value);
    }
  } else if constexpr (memlens::detail::is_ref<U>::value) {
    using V = std::remove_const_t<typename U::element_type>;
    static_assert(!std::is_same_v<V, Object>,
                  "memlens::serial: a Ref<memlens::Object> does not say which type to make on "
                  "load: save a Ref to the concrete type");
    if (!value) {
      w.u8(detail::ref_null);
      return;
    }
    auto& saved = detail::Access::saved(w);
    const Object* object = value.object();
    if (auto it = saved.find(object); it != saved.end()) {
      w.u8(detail::ref_shared);
      w.u64(it->second);
      return;
    }
    if constexpr (memlens::detail::is_object_type<V>) {
      if (typeid(*value) != typeid(V)) {
        throw TypeError("memlens::serial: cannot save a " + memlens::type_name(value) +
                        " through a Ref<" + detail::type_name_of<V>() +
                        ">: files record no dynamic types, so it would load as a " +
                        detail::type_name_of<V>() + "; save a Ref to its own type");
      }
    }
    auto& kept = detail::Access::kept(w);
    saved.emplace(object, kept.size());
    kept.emplace_back(value);
    w.u8(detail::ref_new);
    save(w, *value);
  } else if constexpr (std::is_pointer_v<U> || std::is_member_pointer_v<U>) {
    static_assert(detail::always_false<T>,
                  "memlens::serial: pointers are not serialized (an address means nothing in "
                  "another process): save the value, or a memlens::Ref to it");
  } else if constexpr (std::is_arithmetic_v<U>) {
    static_assert(detail::always_false<T>,
                  "memlens::serial: long double has no portable layout: store it as a double");
  } else if constexpr (detail::has_save_hook<U> || detail::has_load_hook<U>) {
    static_assert(detail::has_save_hook<U>,
                  "memlens::serial: T has memlens_load but no memlens_save: define void "
                  "memlens_save(memlens::serial::Writer&, const T&) in T's namespace");
    static_assert(detail::has_load_hook<U>,
                  "memlens::serial: T has memlens_save but no memlens_load: define void "
                  "memlens_load(memlens::serial::Reader&, T&) in T's namespace");
    const detail::Nesting nesting(detail::Access::depth(w));
    if (nesting.too_deep()) {
      throw ValueError("memlens::serial: values nest more than " + std::to_string(max_depth) +
                       " hooks deep (a long chain of Refs, or a deep recursive type) while saving "
                       "a " +
                       detail::type_name_of<U>());
    }
    const std::size_t before = w.data().size();
    detail::call_save_hook(w, value);
    if (w.data().size() == before) {
      throw ValueError("memlens::serial: memlens_save for " + detail::type_name_of<U>() +
                       " wrote no bytes: every value must take at least one, so that a count "
                       "read back bounds the work of loading");
    }
  } else {
    static_assert(detail::always_false<T>,
                  "memlens::serial: no serialization for this type: define void "
                  "memlens_save(memlens::serial::Writer&, const T&) and void "
                  "memlens_load(memlens::serial::Reader&, T&) in T's namespace");
  }
}

// Loading an element default-constructs it first; said before any error that would follow.
#define MEMLENS_SERIAL_NEEDS_DEFAULT(E)                                            \
  static_assert(std::is_default_constructible_v<E>,                                \
                "memlens::serial: loading a container, std::optional or Ref of T " \
                "default-constructs each T, then loads into it: give T a default constructor")

template <class T>
void load(Reader& r, T& value) {
  static_assert(!std::is_const_v<T>, "memlens::serial: cannot load into a const value");
  if constexpr (std::is_same_v<T, bool>) {
    const std::uint8_t b = r.u8();
    if (b > 1) r.fail("bool byte " + std::to_string(b) + ", expected 0 or 1");
    value = b == 1;
  } else if constexpr (std::is_integral_v<T>) {
    value = detail::load_integer<T>(r);
  } else if constexpr (detail::is_portable_float<T>) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    value = std::bit_cast<T>(detail::load_integer<Bits>(r));
  } else if constexpr (detail::is_string<T> || detail::is_instance<T, std::vector>) {
    using E = typename T::value_type;
    const std::size_t n = r.size(min_bytes<E>);
    value.clear();
    if constexpr (detail::is_bulk<E>) {
      value.resize(n);
      r.bytes(value.data(), n * sizeof(E));
    } else {
      MEMLENS_SERIAL_NEEDS_DEFAULT(E);
      value.reserve(detail::reservation<E>(n));
      for (std::size_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<E, bool>) {
          bool element = false;
          load(r, element);
          value.push_back(element);
        } else {
          value.emplace_back();
          load(r, value.back());
        }
      }
    }
  } else if constexpr (detail::is_std_array<T>) {
    using E = typename T::value_type;
    if constexpr (std::tuple_size_v<T> == 0) {
      if (r.u8() != 0) r.fail("an empty array's byte is not 0");
    } else if constexpr (detail::is_bulk<E>) {
      r.bytes(value.data(), value.size() * sizeof(E));
    } else {
      for (auto& element : value) load(r, element);
    }
  } else if constexpr (detail::is_map<T>) {
    using K = typename T::key_type;
    using V = typename T::mapped_type;
    MEMLENS_SERIAL_NEEDS_DEFAULT(K);
    MEMLENS_SERIAL_NEEDS_DEFAULT(V);
    const std::size_t n = r.size(min_bytes<K> + min_bytes<V>);
    value.clear();
    if constexpr (detail::is_instance<T, std::unordered_map>) value.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      K key{};
      V mapped{};
      load(r, key);
      load(r, mapped);
      const std::size_t before = value.size();
      value.emplace_hint(value.end(), std::move(key), std::move(mapped));
      if (value.size() == before) r.fail("a map repeats a key");
    }
  } else if constexpr (detail::is_set<T>) {
    using K = typename T::key_type;
    MEMLENS_SERIAL_NEEDS_DEFAULT(K);
    const std::size_t n = r.size(min_bytes<K>);
    value.clear();
    if constexpr (detail::is_instance<T, std::unordered_set>) value.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      K key{};
      load(r, key);
      const std::size_t before = value.size();
      value.emplace_hint(value.end(), std::move(key));
      if (value.size() == before) r.fail("a set repeats a key");
    }
  } else if constexpr (detail::is_instance<T, std::optional>) {
    using E = typename T::value_type;
    MEMLENS_SERIAL_NEEDS_DEFAULT(E);
    const std::uint8_t tag = r.u8();
    if (tag > 1) r.fail("optional tag " + std::to_string(tag) + ", expected 0 or 1");
    if (tag == 0) {
      value.reset();
    } else {
      value.emplace();
      load(r, *value);
    }
  } else if constexpr (detail::is_instance<T, std::pair>) {
    load(r, value.first);
    load(r, value.second);
  } else if constexpr (detail::is_instance<T, std::tuple>) {
    if constexpr (std::tuple_size_v<T> == 0) {
      if (r.u8() != 0) r.fail("an empty tuple's byte is not 0");
    } else {
      std::apply([&r](auto&... members) { (load(r, members), ...); }, value);
    }
  } else if constexpr (memlens::detail::is_ref<T>::value) {
    using V = std::remove_const_t<typename T::element_type>;
    static_assert(!std::is_same_v<V, Object>,
                  "memlens::serial: a Ref<memlens::Object> does not say which type to make on "
                  "load: load a Ref to the concrete type");
    static_assert(!std::is_abstract_v<V> && std::is_default_constructible_v<V>,
                  "memlens::serial: loading a Ref<T> makes a T with make<T>() and loads into it: "
                  "T needs a default constructor (and must not be abstract)");
    auto& loaded = detail::Access::loaded(r);
    switch (const std::uint8_t tag = r.u8()) {
      case detail::ref_null:
        value = nullptr;
        return;
      case detail::ref_shared: {
        const std::uint64_t index = r.u64();
        if (index >= loaded.size()) {
          r.fail("a Ref to object #" + std::to_string(index) + ", but only " +
                 std::to_string(loaded.size()) + " were loaded before it");
        }
        T typed = dynamic_ref_cast<typename T::element_type>(loaded[index]);
        if (!typed) {
          r.fail("a Ref<" + detail::type_name_of<V>() + "> to object #" + std::to_string(index) +
                 ", which is a " + memlens::type_name(loaded[index]));
        }
        value = std::move(typed);
        return;
      }
      case detail::ref_new: {
        Ref<V> object = make<V>();
        loaded.emplace_back(object);  // before its value: a cycle back to it finds it
        load(r, *object);
        value = std::move(object);
        return;
      }
      default:
        r.fail("Ref tag " + std::to_string(tag) + ", expected 0 (null), 1 (object) or 2 (shared)");
    }
  } else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T>) {
    static_assert(detail::always_false<T>,
                  "memlens::serial: pointers are not serialized (an address means nothing in "
                  "another process): save the value, or a memlens::Ref to it");
  } else if constexpr (std::is_arithmetic_v<T>) {
    static_assert(detail::always_false<T>,
                  "memlens::serial: long double has no portable layout: store it as a double");
  } else if constexpr (detail::has_save_hook<T> || detail::has_load_hook<T>) {
    static_assert(detail::has_load_hook<T>,
                  "memlens::serial: T has memlens_save but no memlens_load: define void "
                  "memlens_load(memlens::serial::Reader&, T&) in T's namespace");
    static_assert(detail::has_save_hook<T>,
                  "memlens::serial: T has memlens_load but no memlens_save: define void "
                  "memlens_save(memlens::serial::Writer&, const T&) in T's namespace");
    const detail::Nesting nesting(detail::Access::depth(r));
    if (nesting.too_deep()) {
      r.fail("values nest more than " + std::to_string(max_depth) + " hooks deep");
    }
    detail::call_load_hook(r, value);
  } else {
    static_assert(detail::always_false<T>,
                  "memlens::serial: no serialization for this type: define void "
                  "memlens_save(memlens::serial::Writer&, const T&) and void "
                  "memlens_load(memlens::serial::Reader&, T&) in T's namespace");
  }
}

#undef MEMLENS_SERIAL_NEEDS_DEFAULT

// ---------------------------------------------------------------------------------------------
// Files

/// The container's header: 8-byte magic, u32 format version, u32 reserved (0), u64 payload
/// size, u32 CRC-32 of the payload; the payload follows.
inline constexpr std::size_t header_size = 8 + 4 + 4 + 8 + 4;

namespace detail {

/// CRC-32 of zlib, PNG and Ethernet (reflected polynomial 0xEDB88320), eight bytes per step
/// ("slicing by 8"). Unlike a hash it detects every error burst of up to 32 bits: any one
/// corrupted byte, always.
inline constexpr auto crc_tables = [] {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t i = 0; i < 256; ++i) {
    for (std::size_t k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xffU];
  }
  return t;
}();

inline std::uint32_t crc32(std::string_view bytes) noexcept {
  const auto& t = crc_tables;
  std::uint32_t c = 0xFFFFFFFFU;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t n = bytes.size();
  for (; n >= 8; p += 8, n -= 8) {
    const std::uint32_t lo = c ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                                  std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24);
    c = t[7][lo & 0xffU] ^ t[6][lo >> 8 & 0xffU] ^ t[5][lo >> 16 & 0xffU] ^ t[4][lo >> 24] ^
        t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
  }
  for (; n > 0; ++p, --n) c = t[0][(c ^ *p) & 0xffU] ^ (c >> 8);
  return c ^ 0xFFFFFFFFU;
}

inline void check_magic(std::string_view magic8, std::string_view part) {
  if (magic8.size() != 8) {
    throw ValueError(std::string(part) + ": a file magic must be 8 bytes, not " +
                     std::to_string(magic8.size()) + " ('" + std::string(magic8) + "')");
  }
}

/// Bytes as a readable quoted string: printable ASCII as is, the rest as \xNN.
inline std::string quoted(std::string_view bytes) {
  std::string out = "\"";
  for (const char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    if (b >= 0x20 && b < 0x7f && ch != '"' && ch != '\\') {
      out += ch;
    } else {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 0xfU];
    }
  }
  return out + "\"";
}

inline std::string hex32(std::uint32_t v) {
  char s[11];
  std::snprintf(s, sizeof(s), "0x%08x", v);
  return s;
}

/// Syncs the directory holding `path`, so that the rename that put the file there survives a
/// crash too. Best effort: some file systems refuse to sync a directory, and the file itself is
/// already complete and in place.
inline void sync_directory(const std::filesystem::path& path) noexcept {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  static_cast<void>(::fsync(fd));
  ::close(fd);
}

}  // namespace detail

/// The bytes of a container file holding `payload`: the header, then the payload.
inline std::string pack(std::string_view magic8, std::uint32_t version, std::string_view payload) {
  detail::check_magic(magic8, "memlens::serial");
  Writer w;
  w.bytes(magic8.data(), 8);
  w.u32(version);
  w.u32(0);
  w.size(payload.size());
  w.u32(detail::crc32(payload));
  std::string bytes = std::move(w).take();
  bytes.append(payload);
  return bytes;
}

/**
 * Checks the bytes of a container file and returns its payload (a view into `file`). Throws
 * FormatError `<part>: cannot load '<name>': <why>` for bytes too short for the header, the
 * wrong magic, another version ("file format version 7, expected 1"), a reserved field that is
 * not 0, a size that disagrees with the bytes there (truncated, or trailing bytes), or a
 * checksum mismatch. Touches no file: a fuzzer can feed it anything.
 */
inline std::string_view unpack(std::string_view file, std::string_view magic8,
                               std::uint32_t version, std::string_view part,
                               std::string_view name = "<memory>") {
  detail::check_magic(magic8, part);
  auto fail = [&](const std::string& why) {
    throw FormatError(std::string(part) + ": cannot load '" + std::string(name) + "': " + why);
  };
  if (file.size() >= 8 && file.substr(0, 8) != magic8) {
    fail("not a " + std::string(part) + " file: it starts with " +
         detail::quoted(file.substr(0, 8)) + ", expected " + detail::quoted(magic8));
  }
  if (file.size() < header_size) {
    fail("truncated: " + std::to_string(file.size()) + " bytes, shorter than the " +
         std::to_string(header_size) + "-byte header");
  }
  Reader header(file.substr(8, header_size - 8), std::string(part));
  const std::uint32_t found_version = header.u32();
  const std::uint32_t reserved = header.u32();
  const std::uint64_t size = header.u64();
  const std::uint32_t stored = header.u32();
  if (found_version != version) {
    fail("file format version " + std::to_string(found_version) + ", expected " +
         std::to_string(version));
  }
  if (reserved != 0) fail("reserved header field is " + detail::hex32(reserved) + ", expected 0");
  const std::size_t present = file.size() - header_size;
  if (size > present) {
    fail("truncated: the header promises " + std::to_string(size) + " payload bytes, " +
         std::to_string(present) + " are there");
  }
  if (size < present) {
    fail(std::to_string(present - size) + " bytes after the " + std::to_string(size) +
         "-byte payload the header promises");
  }
  const std::string_view payload = file.substr(header_size);
  const std::uint32_t computed = detail::crc32(payload);
  if (computed != stored) {
    fail("checksum mismatch (stored " + detail::hex32(stored) + ", computed " +
         detail::hex32(computed) + "): the file is corrupt");
  }
  return payload;
}

/**
 * Writes a container file: `pack`'s bytes to a temporary file beside `path`, flushed to disk
 * (fsync), then renamed over `path`, so a reader (or a crash) sees the old file or the whole new
 * one, never part of one. `part` names the caller in errors: FormatError
 * `<part>: cannot save to '<path>': <what failed>: <strerror>`, with `path` left as it was.
 * `magic8` is exactly 8 bytes (else ValueError).
 */
inline void write_file(const std::filesystem::path& path, std::string_view magic8,
                       std::uint32_t version, std::string_view payload, std::string_view part) {
  detail::check_magic(magic8, part);
  memlens::detail::write_file_atomically<FormatError>(path.string(), pack(magic8, version, payload),
                                                      std::string(part) + ": cannot save to");
  detail::sync_directory(path);
}

/**
 * Reads a container file written by `write_file` and returns its checked payload. Throws
 * FormatError `<part>: cannot load '<path>': <why>` for a missing file, a directory, a file that
 * cannot be read, and everything `unpack` checks.
 * ```cpp
 * std::string payload = memlens::serial::read_file(path, "MLCACHE\0"sv, 1, "AdvancedCache");
 * memlens::serial::Reader reader(payload, "AdvancedCache: cannot load '" + path.string() + "'");
 * State fresh;
 * memlens::serial::load(reader, fresh);
 * reader.finish();
 * swap(state, fresh);  // only now: a failure above left `state` as it was
 * ```
 */
inline std::string read_file(const std::filesystem::path& path, std::string_view magic8,
                             std::uint32_t version, std::string_view part) {
  detail::check_magic(magic8, part);
  const std::string name = path.string();
  auto fail = [&](const std::string& why) {
    throw FormatError(std::string(part) + ": cannot load '" + name + "': " + why);
  };
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (status.type() == std::filesystem::file_type::not_found) fail("no such file");
  if (status.type() == std::filesystem::file_type::directory) fail("it is a directory");
  std::FILE* f = std::fopen(name.c_str(), "rb");
  if (f == nullptr) fail(std::strerror(errno));
  std::string bytes;
  char buffer[65536];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) bytes.append(buffer, n);
  const int read_error = std::ferror(f) != 0 ? errno : 0;
  std::fclose(f);
  if (read_error != 0) fail(std::string("read error: ") + std::strerror(read_error));
  const std::size_t payload_size = unpack(bytes, magic8, version, part, name).size();
  bytes.erase(0, bytes.size() - payload_size);
  return bytes;
}

}  // namespace memlens::serial
