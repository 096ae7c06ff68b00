// memlens internals: size measurement, behind sys::getsizeof, sys::deep_sizeof and
// sys::footprint (memlens/sys.hpp). SizeVisitor, the argument of the `memlens_sizeof`
// customization point, is public and lives here with the machinery it drives.
//
// The container formulas are libstdc++'s (node layouts, bucket arrays, the deque's map). They
// use public state only, except where noted (the deque's map size, make_shared's control block).
#pragma once

#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <functional>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "memlens/object.hpp"

namespace memlens {

namespace sys {
class SizeVisitor;
}

namespace detail {

struct SizeAccess;

/// The chunk glibc's malloc (64-bit) takes for a request of n bytes: the request plus the 8-byte
/// size field, rounded up to 16, at least 32; requests from the mmap threshold (128 KiB unless
/// tuned) get whole pages.
inline constexpr std::size_t malloc_chunk_size(std::size_t n) noexcept {
  constexpr std::size_t size_field = sizeof(std::size_t);
  constexpr std::size_t alignment = 2 * sizeof(std::size_t);
  constexpr std::size_t min_chunk = 4 * sizeof(std::size_t);
  constexpr std::size_t mmap_threshold = 128 * 1024;
  constexpr std::size_t page = 4096;
  std::size_t chunk = (n + size_field + alignment - 1) & ~(alignment - 1);
  if (chunk < min_chunk) chunk = min_chunk;
  if (chunk >= mmap_threshold) chunk = (chunk + size_field + page - 1) & ~(page - 1);
  return chunk;
}

/// A set of addresses, as a bitmap per 1024 possible addresses (one bit per 2^Shift bytes)
/// found through a small hash directory. Distinct objects lie at least 16 bytes apart, so
/// objects use Shift = 4: a million objects in 48 MB take a 384 KiB bitmap that stays in cache,
/// where a hash set of pointers takes 16 MB and misses the cache on every lookup (3x slower).
template <unsigned Shift>
class AddressSet {
 public:
  /// Adds p; false if it was there already.
  bool insert(const void* p) {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    const std::size_t bit = (address >> Shift) & (chunk_bits - 1);
    std::uint64_t& word = bitmaps_[bitmap_of(address >> (Shift + 10))][bit / 64];
    const std::uint64_t mask = std::uint64_t{1} << (bit % 64);
    if (word & mask) return false;
    word |= mask;
    return true;
  }

 private:
  static constexpr std::size_t chunk_bits = 1024;
  using Bitmap = std::array<std::uint64_t, chunk_bits / 64>;
  struct Slot {
    std::uintptr_t key = 0;  // chunk + 1; 0 marks an empty slot
    std::size_t bitmap = 0;
  };

  std::size_t bitmap_of(std::uintptr_t chunk) {
    const std::uintptr_t key = chunk + 1;
    if (key == last_key_) return last_bitmap_;
    if (2 * (bitmaps_.size() + 1) > directory_.size()) grow();
    const std::size_t mask = directory_.size() - 1;
    std::size_t i = slot_of(key);
    while (directory_[i].key != key && directory_[i].key != 0) i = (i + 1) & mask;
    if (directory_[i].key == 0) {
      directory_[i] = {key, bitmaps_.size()};
      bitmaps_.emplace_back();
    }
    last_key_ = key;
    last_bitmap_ = directory_[i].bitmap;
    return last_bitmap_;
  }
  std::size_t slot_of(std::uintptr_t key) const noexcept {
    // Fibonacci hashing: the product's high bits mix neighbouring chunks apart.
    return static_cast<std::size_t>((static_cast<std::uint64_t>(key) * 0x9E3779B97F4A7C15ull) >>
                                    shift_);
  }
  void grow() {
    std::vector<Slot> old(directory_.empty() ? 64 : 2 * directory_.size());
    old.swap(directory_);
    shift_ = 64;
    for (std::size_t n = directory_.size(); n > 1; n >>= 1) --shift_;
    const std::size_t mask = directory_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.key == 0) continue;
      std::size_t i = slot_of(slot.key);
      while (directory_[i].key != 0) i = (i + 1) & mask;
      directory_[i] = slot;
    }
  }

  std::vector<Slot> directory_;
  std::vector<Bitmap> bitmaps_;
  std::uintptr_t last_key_ = 0;
  std::size_t last_bitmap_ = 0;
  int shift_ = 64;
};

}  // namespace detail

namespace sys {

/**
 * What `getsizeof`, `deep_sizeof` and `footprint` pass to a type's `memlens_sizeof`: the one
 * customization point for sizes. A type reports the memory it owns beyond `sizeof(T)`:
 *
 * ```cpp
 * struct Record {
 *   std::string name;
 *   std::vector<Ref<Node>> links;
 *   std::size_t length = 0;
 *   std::unique_ptr<double[]> samples;  // length elements, from new double[length]
 *   void memlens_sizeof(memlens::sys::SizeVisitor& size) const {
 *     size(name, links);                         // members that own memory or hold Refs
 *     size.allocation(length * sizeof(double));  // a block Record allocated itself
 *   }
 * };
 * ```
 * Declare it as that member, or, for a type you cannot change, as a function
 * `void memlens_sizeof(memlens::sys::SizeVisitor&, const T&)` in T's namespace (found by ADL).
 *
 * A SizeVisitor can also measure several roots at once, counting shared objects once:
 * `SizeVisitor size(SizeVisitor::Mode::deep); size.measure(a); size.measure(b); size.total()`.
 */
class SizeVisitor {
 public:
  /// What is counted: `shallow` (getsizeof) counts the object and the memory it owns
  /// directly; `deep` (deep_sizeof) adds its elements' memory and the objects its Refs reach;
  /// `footprint` counts as `deep` with each allocation rounded up as glibc's malloc does.
  enum class Mode { shallow, deep, footprint };

  explicit SizeVisitor(Mode mode = Mode::deep) noexcept : mode_(mode) {}
  SizeVisitor(const SizeVisitor&) = delete;
  SizeVisitor& operator=(const SizeVisitor&) = delete;

  /// Reports members stored inside the object. Their own allocations count as the object's
  /// (a `std::string` member's buffer is part of `getsizeof`); what they reach (their
  /// elements' memory, the objects of their Refs) counts in the deep size only.
  template <class... Members>
  void operator()(const Members&... members);

  /// Reports `count` blocks of `bytes` bytes each that the object obtained from operator new
  /// (or its allocator) and owns. Blocks of 0 bytes count as none.
  void allocation(std::size_t bytes, std::size_t count = 1) noexcept {
    if (bytes == 0) return;
    total_ += count * (mode_ == Mode::footprint ? detail::malloc_chunk_size(bytes) : bytes);
  }

  /// Reports a value stored in one of the object's allocations (its bytes are counted there):
  /// the memory the value owns counts in the deep size only.
  template <class T>
  void element(const T& value);

  /// `element` for every value of a range (skipped at compile time when the values own nothing).
  template <class Range>
  void elements(const Range& values);

  /// Whether elements and referents are counted: a type can skip work when this is false.
  bool deep() const noexcept { return mode_ != Mode::shallow; }
  Mode mode() const noexcept { return mode_; }

  /// Adds a root: `sizeof(root)` and what it owns, or for a Ref (or an object made by `make`)
  /// the object itself with its header. Objects already counted are not counted again.
  template <class T>
  void measure(const T& root);

  /// The bytes counted so far.
  std::size_t total() const noexcept { return total_; }

  /// How many objects were measured without knowing all the memory they own: objects of a type
  /// with no `memlens_sizeof` of its own, reached through a `Ref<Base>`, a `Ref<Object>` or a
  /// `traverse` (their block and their Refs are counted, not what their members own). 0 when
  /// the total is exact.
  std::size_t inexact() const noexcept { return inexact_; }

 private:
  friend struct detail::SizeAccess;

  struct Pending {
    const Object* object;
    detail::ObjectSizer sizer;
  };

  template <class T>
  void follow(const Ref<T>& ref);
  void follow_dynamic(const Object& object);
  void drain();

  Mode mode_;
  std::size_t total_ = 0;
  std::size_t inexact_ = 0;
  detail::AddressSet<4> visited_;  // objects: at least 16 bytes apart
  // shared_ptr control blocks, by owner (an aliasing shared_ptr, or one to a base that is not
  // the first, points elsewhere into the same block)
  std::set<std::weak_ptr<const void>, std::owner_less<>> shared_blocks_;
  std::vector<Pending> pending_;  // found, not yet measured: no recursion per Ref
};

}  // namespace sys

namespace detail {

// ---------------------------------------------------------------------------------------------
// The customization point and its checks

template <class T>
concept has_member_sizeof = requires(const T& t, sys::SizeVisitor& size) {
  t.memlens_sizeof(size);
};
template <class T>
concept has_adl_sizeof = requires(const T& t, sys::SizeVisitor& size) {
  memlens_sizeof(size, t);
};
template <class T>
concept has_sizeof_hook = has_member_sizeof<T> || has_adl_sizeof<T>;

template <class M>
struct hook_owner {
  using type = void;
};
template <class C>
struct hook_owner<void (C::*)(sys::SizeVisitor&) const> {
  using type = C;
};
template <class C>
struct hook_owner<void (C::*)(sys::SizeVisitor&) const noexcept> {
  using type = C;
};

/// Calls T's hook. A member hook inherited from a base cannot see T's own members, so it is an
/// error rather than a silent undercount.
template <class T>
void call_sizeof_hook(sys::SizeVisitor& size, const T& value) {
  if constexpr (has_member_sizeof<T>) {
    if constexpr (requires { &T::memlens_sizeof; }) {
      using Owner = typename hook_owner<decltype(&T::memlens_sizeof)>::type;
      static_assert(std::is_void_v<Owner> || std::is_same_v<Owner, T>,
                    "memlens::sys: this type inherits memlens_sizeof from a base class, which "
                    "cannot see the members this type adds: declare memlens_sizeof in this type "
                    "too (call the base's, then list the new members)");
    }
    value.memlens_sizeof(size);
  } else {
    memlens_sizeof(size, value);
  }
}

template <class T>
struct is_box : std::false_type {};
template <class T>
struct is_box<Box<T>> : std::true_type {};

template <class T>
struct SizeOf;

/// Whether a T can own memory (or hold Refs) at all: loops over such elements are skipped.
template <class T>
inline constexpr bool owns_nothing = [] {
  if constexpr (has_sizeof_hook<T> || is_object_type<T>) {
    return false;
  } else {
    return SizeOf<T>::heap_free;
  }
}();

template <class T>
void add_heap(sys::SizeVisitor& size, const T& value);

struct SizeAccess {
  static void add_inline(sys::SizeVisitor& size, std::size_t bytes) noexcept {
    size.total_ += bytes;
  }
  /// An object's block: from make's pool (16-byte size classes, no per-block header) or from
  /// operator new.
  static void add_object(sys::SizeVisitor& size, std::size_t bytes, bool pooled) noexcept {
    if (size.mode_ != sys::SizeVisitor::Mode::footprint) {
      size.total_ += bytes;
    } else if (pooled) {
      size.total_ += (bytes + pool::granularity - 1) / pool::granularity * pool::granularity;
    } else {
      size.total_ += malloc_chunk_size(bytes);
    }
  }
  template <class T>
  static void follow(sys::SizeVisitor& size, const Ref<T>& ref) {
    size.follow(ref);
  }
  static void follow_dynamic(sys::SizeVisitor& size, const Object& object) {
    size.follow_dynamic(object);
  }
  template <class T>
  static bool first_shared_visit(sys::SizeVisitor& size, const std::shared_ptr<T>& p) {
    return size.shared_blocks_.insert(std::weak_ptr<const void>(p)).second;
  }
  static void count_inexact(sys::SizeVisitor& size) noexcept { ++size.inexact_; }
};

/// Follows the Refs an object reports from its traverse: the way out of every object (boxes
/// aside), including objects whose type is unknown.
class RefFollower final : public Visitor {
 public:
  explicit RefFollower(sys::SizeVisitor& size) noexcept : size_(&size) {}
  void visit_edge(const Edge& edge) override {
    SizeAccess::follow_dynamic(*size_, edge.referent());
  }

 private:
  sys::SizeVisitor* size_;
};

inline void follow_traverse(sys::SizeVisitor& size, const Object& object) {
  RefFollower follower(size);
  // traverse only reports (its contract), so calling it on a const object is safe.
  const_cast<Object&>(object).traverse(follower);
}

/// Whether T has a `memlens_sizeof` of its own: an ADL function, or a member declared in T (a
/// member inherited from a base cannot see the members T adds).
template <class T>
inline constexpr bool has_own_sizeof_hook = [] {
  if constexpr (has_adl_sizeof<T>) {
    return true;
  } else if constexpr (!has_member_sizeof<T>) {
    return false;
  } else if constexpr (requires { &T::memlens_sizeof; }) {
    using Owner = typename hook_owner<decltype(&T::memlens_sizeof)>::type;
    return std::is_void_v<Owner> || std::is_same_v<Owner, T>;
  } else {
    return true;  // an overloaded or template member: T's own
  }
}();

/// Whether memlens can measure a T exactly: decided at compile time, so that make<T> can record
/// how to measure its objects without making a type that cannot be measured an error.
template <class T>
inline constexpr bool measurable = [] {
  if constexpr (is_box<T>::value) {
    return measurable<std::remove_cv_t<decltype(std::declval<T&>().value)>>;
  } else if constexpr (is_object_type<T>) {
    return std::is_same_v<T, Object> || has_own_sizeof_hook<T>;
  } else if constexpr (has_sizeof_hook<T>) {
    return has_own_sizeof_hook<T>;
  } else {
    return SizeOf<T>::measurable;
  }
}();

/// The members of an object of type S (S's own bytes are counted by the caller). Refs its hook
/// lists are followed where they are found, then those its traverse reports (the one place a
/// type must declare them); each object is counted once, however it is reached.
template <class S>
void object_heap(sys::SizeVisitor& size, const S& object) {
  if constexpr (is_box<S>::value) {
    // The value's Refs are followed where they are found; the box's traverse would repeat it.
    add_heap(size, object.value);
  } else {
    if constexpr (has_sizeof_hook<S>) {
      call_sizeof_hook(size, object);
    } else {
      static_assert(std::is_same_v<S, Object>,
                    "memlens::sys: cannot measure this Object type: give it a member "
                    "`void memlens_sizeof(memlens::sys::SizeVisitor& size) const` that lists "
                    "its members with `size(member, ...)` (an empty body if it has only "
                    "fixed-size members); see docs/design.md, \"Size measurement\"");
    }
    if (size.deep()) follow_traverse(size, object);
  }
}

/// The object's own bytes: its block (prefix + sizeof(S), what make<S> requested) if it was
/// made by make, else its storage, which belongs to whatever holds it.
template <class S>
void object_bytes(sys::SizeVisitor& size, const Object& object) {
  const std::uint32_t flags = Access::flags(&object);
  if (flags & flag::heap) {
    SizeAccess::add_object(size, prefix_size(&object) + sizeof(S), (flags & flag::pooled) != 0);
  } else {
    SizeAccess::add_inline(size, sizeof(S));
  }
}

/// An object whose most derived type is S.
template <class S>
void measure_object(sys::SizeVisitor& size, const Object& object) {
  object_bytes<S>(size, object);
  object_heap(size, static_cast<const S&>(object));
}

/// An object of most derived type S, which has no `memlens_sizeof` of its own: its block and its
/// references are exact, what its members own is not known (the hook it inherits, if any, sees
/// its base's members only). Counted inexact.
template <class S>
void measure_without_hook(sys::SizeVisitor& size, const Object& object) {
  SizeAccess::count_inexact(size);
  object_bytes<S>(size, object);
  if constexpr (!is_box<S>::value && has_member_sizeof<S>) {
    if constexpr (requires { &S::memlens_sizeof; }) {
      using Owner = typename hook_owner<decltype(&S::memlens_sizeof)>::type;
      if constexpr (!std::is_void_v<Owner>) call_sizeof_hook(size, static_cast<const Owner&>(object));
    }
  }
  if (size.deep()) follow_traverse(size, object);
}

/// An object that make did not create, known to derive from S: measured as an S (a lower bound
/// when it is of a derived type), counted inexact.
template <class S>
void measure_unknown(sys::SizeVisitor& size, const Object& object) {
  SizeAccess::count_inexact(size);
  object_bytes<S>(size, object);
  if constexpr (!std::is_same_v<S, Object> && !is_box<S>::value && has_own_sizeof_hook<S>) {
    call_sizeof_hook(size, static_cast<const S&>(object));
  }
  if (size.deep()) follow_traverse(size, object);
}

template <class S>
ObjectSizer sizer_of() noexcept {
  if constexpr (measurable<S>) {
    return &measure_object<S>;
  } else {
    return &measure_without_hook<S>;
  }
}

/// How to measure the object a Ref<T> names: as its most derived type, which make recorded.
template <class T>
ObjectSizer sizer_for(const Object& object) {
  if (const TypeRecord* type = type_record_of(&object)) return type->sizer;
  return &measure_unknown<std::remove_const_t<stored_t<T>>>;
}

// ---------------------------------------------------------------------------------------------
// libstdc++ node sizes. node_type (C++17) names the node allocator as its last template
// argument, which gives the exact node type; other libraries get a layout computed the same way.

template <class Handle>
struct node_allocator_of {};
template <template <class...> class Handle, class... Args>
struct node_allocator_of<Handle<Args...>> {
  using type = std::tuple_element_t<sizeof...(Args) - 1, std::tuple<Args...>>;
};

template <class C>
concept names_its_node = requires {
  typename std::allocator_traits<
      typename node_allocator_of<typename C::node_type>::type>::value_type;
};

template <class V>
struct TreeNodeLayout {  // color, parent, left, right, value
  int color;
  void* links[3];
  alignas(V) unsigned char value[sizeof(V)];
};
template <class V>
struct HashNodeLayout {  // next, value, cached hash
  void* next;
  alignas(V) unsigned char value[sizeof(V)];
  std::size_t hash;
};
template <class V>
struct ListNodeLayout {  // next, prev, value
  void* links[2];
  alignas(V) unsigned char value[sizeof(V)];
};
template <class V>
struct ForwardListNodeLayout {  // next, value
  void* next;
  alignas(V) unsigned char value[sizeof(V)];
};

template <class C, class Layout>
inline constexpr std::size_t node_size = [] {
  if constexpr (names_its_node<C>) {
    return sizeof(typename std::allocator_traits<
                  typename node_allocator_of<typename C::node_type>::type>::value_type);
  } else {
    return sizeof(Layout);
  }
}();

template <class C>
void tree_heap(sys::SizeVisitor& size, const C& tree) {
  size.allocation(node_size<C, TreeNodeLayout<typename C::value_type>>, tree.size());
  size.elements(tree);
}

template <class C>
void hash_heap(sys::SizeVisitor& size, const C& table) {
  size.allocation(node_size<C, HashNodeLayout<typename C::value_type>>, table.size());
  // A table of one bucket uses a pointer inside the container (libstdc++'s _M_single_bucket).
  if (table.bucket_count() > 1) size.allocation(table.bucket_count() * sizeof(void*));
  size.elements(table);
}

/// Elements per deque node (libstdc++'s __deque_buf_size).
template <class T>
inline constexpr std::size_t deque_node_elements = sizeof(T) < 512 ? 512 / sizeof(T) : 1;

#if defined(__GLIBCXX__)
/// The map size is private, and depends on history (a push_front that recentres the map, a
/// push_back that doubles it). _Deque_base keeps it in a protected member; a class derived from
/// the base may name it, and a C-style cast may convert to an inaccessible base.
template <class T, class A>
struct DequeLayout : std::_Deque_base<T, A> {
  static std::pair<std::size_t, std::size_t> of(const std::deque<T, A>& d) noexcept {
    const auto& impl = ((const std::_Deque_base<T, A>&)d).*(&DequeLayout::_M_impl);
    if (!impl._M_map) return {0, 0};
    return {impl._M_map_size,
            static_cast<std::size_t>(impl._M_finish._M_node - impl._M_start._M_node) + 1};
  }
};
#endif

/// {map slots, nodes} of a deque.
template <class T, class A>
std::pair<std::size_t, std::size_t> deque_layout(const std::deque<T, A>& d) noexcept {
#if defined(__GLIBCXX__)
  return DequeLayout<T, A>::of(d);
#else
  // Not libstdc++: an estimate, libstdc++'s map for a deque grown at one end.
  const std::size_t nodes = d.size() / deque_node_elements<T> + 1;
  return {nodes + 2 > 8 ? nodes + 2 : 8, nodes};
#endif
}

/// make_shared's single block: the counts (a vtable pointer and two ints), then the value.
template <class T>
struct SharedBlockLayout {
  void* vptr;
  int counts[2];
  alignas(T) unsigned char value[sizeof(T)];
};
/// shared_ptr<T>(new T)'s separate control block: the counts and the pointer to delete.
struct SharedCountLayout {
  void* vptr;
  int counts[2];
  void* pointer;
};

// ---------------------------------------------------------------------------------------------
// The standard types. heap() reports what a value owns beyond sizeof; heap_free says at
// compile time that it never owns anything, so containers of it skip their loop.

/// Anything else: trivially copyable types own nothing (a raw pointer owns nothing either).
template <class T>
struct SizeOf {
  static constexpr bool heap_free = std::is_trivially_copyable_v<T>;
  static constexpr bool measurable = std::is_trivially_copyable_v<T>;
  static void heap(sys::SizeVisitor&, const T&) {
    static_assert(std::is_trivially_copyable_v<T>,
                  "memlens::sys: cannot measure this type: it may own memory memlens cannot "
                  "see. Give it a member `void memlens_sizeof(memlens::sys::SizeVisitor& size) "
                  "const` listing its members with `size(member, ...)` (or an ADL function "
                  "`memlens_sizeof(memlens::sys::SizeVisitor&, const T&)`); see "
                  "docs/design.md, \"Size measurement\"");
  }
};

template <class C, class Traits, class A>
struct SizeOf<std::basic_string<C, Traits, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = true;
  static void heap(sys::SizeVisitor& size, const std::basic_string<C, Traits, A>& s) {
    // Short strings live in a buffer inside the string object (SSO).
    const auto* self = reinterpret_cast<const unsigned char*>(&s);
    const void* data = s.data();
    const bool local = std::less_equal<const void*>{}(self, data) &&
                       std::less<const void*>{}(data, self + sizeof(s));
    if (!local) size.allocation((s.capacity() + 1) * sizeof(C));
  }
};

template <class T, class A>
struct SizeOf<std::vector<T, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const std::vector<T, A>& v) {
    if (v.capacity() != 0) size.allocation(v.capacity() * sizeof(T));
    size.elements(v);
  }
};

template <class A>
struct SizeOf<std::vector<bool, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = true;
  static void heap(sys::SizeVisitor& size, const std::vector<bool, A>& v) {
    constexpr std::size_t word_bits = CHAR_BIT * sizeof(unsigned long);
    const std::size_t words = (v.capacity() + word_bits - 1) / word_bits;
    if (words != 0) size.allocation(words * sizeof(unsigned long));
  }
};

template <class T, class A>
struct SizeOf<std::deque<T, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const std::deque<T, A>& d) {
    const auto [map_slots, nodes] = deque_layout(d);
    if (map_slots != 0) size.allocation(map_slots * sizeof(T*));
    size.allocation(deque_node_elements<T> * sizeof(T), nodes);
    size.elements(d);
  }
};

template <class T, class A>
struct SizeOf<std::list<T, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const std::list<T, A>& l) {
    size.allocation(sizeof(ListNodeLayout<T>), l.size());
    size.elements(l);
  }
};

template <class T, class A>
struct SizeOf<std::forward_list<T, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const std::forward_list<T, A>& l) {
    const auto n = static_cast<std::size_t>(std::distance(l.begin(), l.end()));
    size.allocation(sizeof(ForwardListNodeLayout<T>), n);
    size.elements(l);
  }
};

template <class T, std::size_t N>
struct SizeOf<std::array<T, N>> {
  static constexpr bool heap_free = owns_nothing<T>;
  static constexpr bool measurable = detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const std::array<T, N>& a) { size.elements(a); }
};

template <class T, std::size_t N>
struct SizeOf<T[N]> {
  static constexpr bool heap_free = owns_nothing<T>;
  static constexpr bool measurable = detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const T (&a)[N]) { size.elements(a); }
};

template <class K, class C, class A>
struct SizeOf<std::set<K, C, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K>;
  static void heap(sys::SizeVisitor& size, const std::set<K, C, A>& s) { tree_heap(size, s); }
};
template <class K, class C, class A>
struct SizeOf<std::multiset<K, C, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K>;
  static void heap(sys::SizeVisitor& size, const std::multiset<K, C, A>& s) { tree_heap(size, s); }
};
template <class K, class V, class C, class A>
struct SizeOf<std::map<K, V, C, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K> && detail::measurable<V>;
  static void heap(sys::SizeVisitor& size, const std::map<K, V, C, A>& m) { tree_heap(size, m); }
};
template <class K, class V, class C, class A>
struct SizeOf<std::multimap<K, V, C, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K> && detail::measurable<V>;
  static void heap(sys::SizeVisitor& size, const std::multimap<K, V, C, A>& m) {
    tree_heap(size, m);
  }
};

template <class K, class H, class E, class A>
struct SizeOf<std::unordered_set<K, H, E, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K>;
  static void heap(sys::SizeVisitor& size, const std::unordered_set<K, H, E, A>& s) {
    hash_heap(size, s);
  }
};
template <class K, class H, class E, class A>
struct SizeOf<std::unordered_multiset<K, H, E, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K>;
  static void heap(sys::SizeVisitor& size, const std::unordered_multiset<K, H, E, A>& s) {
    hash_heap(size, s);
  }
};
template <class K, class V, class H, class E, class A>
struct SizeOf<std::unordered_map<K, V, H, E, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K> && detail::measurable<V>;
  static void heap(sys::SizeVisitor& size, const std::unordered_map<K, V, H, E, A>& m) {
    hash_heap(size, m);
  }
};
template <class K, class V, class H, class E, class A>
struct SizeOf<std::unordered_multimap<K, V, H, E, A>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = detail::measurable<K> && detail::measurable<V>;
  static void heap(sys::SizeVisitor& size, const std::unordered_multimap<K, V, H, E, A>& m) {
    hash_heap(size, m);
  }
};

template <class A, class B>
struct SizeOf<std::pair<A, B>> {
  static constexpr bool heap_free = owns_nothing<A> && owns_nothing<B>;
  static constexpr bool measurable = detail::measurable<A> && detail::measurable<B>;
  static void heap(sys::SizeVisitor& size, const std::pair<A, B>& p) { size(p.first, p.second); }
};

template <class... A>
struct SizeOf<std::tuple<A...>> {
  static constexpr bool heap_free = (owns_nothing<A> && ...);
  static constexpr bool measurable = (detail::measurable<A> && ...);
  static void heap(sys::SizeVisitor& size, const std::tuple<A...>& t) {
    std::apply([&size](const auto&... members) { size(members...); }, t);
  }
};

template <class T>
struct SizeOf<std::optional<T>> {
  static constexpr bool heap_free = owns_nothing<T>;
  static constexpr bool measurable = detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const std::optional<T>& o) {
    if (o) size(*o);
  }
};

template <class... A>
struct SizeOf<std::variant<A...>> {
  static constexpr bool heap_free = (owns_nothing<A> && ...);
  static constexpr bool measurable = (detail::measurable<A> && ...);
  static void heap(sys::SizeVisitor& size, const std::variant<A...>& v) {
    if (!v.valueless_by_exception()) std::visit([&size](const auto& member) { size(member); }, v);
  }
};

template <class T, class D>
struct SizeOf<std::unique_ptr<T, D>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = !std::is_array_v<T> && detail::measurable<T>;
  static void heap(sys::SizeVisitor& size, const std::unique_ptr<T, D>& p) {
    static_assert(!std::is_array_v<T>,
                  "memlens::sys: a unique_ptr<T[]> does not know its length: measure the "
                  "type that holds it with memlens_sizeof and size.allocation(n * sizeof(T))");
    if (!p) return;
    size.allocation(sizeof(T));  // as new T made it; a derived pointee counts as a T
    size.element(*p);
  }
};

template <class T>
struct SizeOf<std::shared_ptr<T>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = !std::is_void_v<T> && !std::is_array_v<T> && detail::measurable<std::remove_cv_t<T>>;
  static void heap(sys::SizeVisitor& size, const std::shared_ptr<T>& p) {
    static_assert(!std::is_void_v<T> && !std::is_array_v<T>,
                  "memlens::sys: a shared_ptr<void> or shared_ptr<T[]> does not say what it "
                  "owns: measure its owner with memlens_sizeof and size.allocation(...)");
    if (p.use_count() == 0) return;  // empty, or an alias that owns nothing
    // The block belongs to every shared_ptr sharing it: count it once.
    if (!SizeAccess::first_shared_visit(size, p)) return;
    bool in_place = false;
#if defined(__GLIBCXX__)
    // make_shared and allocate_shared answer this tag with the value's address.
    in_place = std::get_deleter<std::_Sp_make_shared_tag>(p) != nullptr;
#endif
    if (in_place) {
      size.allocation(sizeof(SharedBlockLayout<std::remove_cv_t<T>>));
    } else {
      size.allocation(sizeof(SharedCountLayout));
      if (p.get()) size.allocation(sizeof(T));
    }
    if (p.get()) size.element(*p);
  }
};

template <class T>
struct SizeOf<std::weak_ptr<T>> {  // owns nothing: the block belongs to the shared_ptrs
  static constexpr bool heap_free = true;
  static constexpr bool measurable = true;
  static void heap(sys::SizeVisitor&, const std::weak_ptr<T>&) {}
};

template <class T>
struct SizeOf<Ref<T>> {
  static constexpr bool heap_free = false;
  static constexpr bool measurable = true;
  static void heap(sys::SizeVisitor& size, const Ref<T>& ref) {
    if (size.deep()) SizeAccess::follow(size, ref);
  }
};

template <class T>
struct SizeOf<Weak<T>> {  // refers, never owns (a callback's own allocation is not counted)
  static constexpr bool heap_free = true;
  static constexpr bool measurable = true;
  static void heap(sys::SizeVisitor&, const Weak<T>&) {}
};

/// What a value owns beyond its own sizeof, in the visitor's mode.
template <class T>
void add_heap(sys::SizeVisitor& size, const T& value) {
  using U = std::remove_cv_t<T>;
  if constexpr (is_object_type<U>) {
    object_heap<U>(size, value);
  } else if constexpr (has_sizeof_hook<U>) {
    call_sizeof_hook(size, value);
  } else {
    SizeOf<U>::heap(size, value);
  }
}

}  // namespace detail

namespace sys {

template <class... Members>
void SizeVisitor::operator()(const Members&... members) {
  (detail::add_heap(*this, members), ...);
}

template <class T>
void SizeVisitor::element(const T& value) {
  if constexpr (!detail::owns_nothing<std::remove_cv_t<T>>) {
    if (deep()) detail::add_heap(*this, value);
  }
}

template <class Range>
void SizeVisitor::elements(const Range& values) {
  using E = std::remove_cv_t<std::iter_value_t<decltype(std::begin(values))>>;
  if constexpr (!detail::owns_nothing<E>) {
    if (!deep()) return;
    for (const auto& value : values) detail::add_heap(*this, value);
  }
}

template <class T>
void SizeVisitor::measure(const T& root) {
  using U = std::remove_cv_t<T>;
  if constexpr (detail::is_ref<U>::value) {
    // Measuring a Ref<T> whose T cannot be measured is a compile error, as for a value of type
    // T; objects of such types reached otherwise count as inexact.
    using S = std::remove_const_t<detail::stored_t<typename U::element_type>>;
    if constexpr (!std::is_abstract_v<S>) static_cast<void>(&detail::measure_object<S>);
    follow(root);
  } else if constexpr (detail::is_object_type<U>) {
    // An object is measured as a Ref to it would be: with its header, when make made it.
    const Object& object = root;
    if (visited_.insert(&object)) {
      if (detail::Access::flags(&object) & detail::flag::heap) {
        pending_.push_back({&object, detail::sizer_for<U>(object)});
      } else {
        total_ += sizeof(U);
        detail::object_heap<U>(*this, root);
      }
    }
  } else {
    total_ += sizeof(U);
    detail::add_heap(*this, root);
  }
  drain();
}

template <class T>
void SizeVisitor::follow(const Ref<T>& ref) {
  const Object* object = ref.object();
  if (!object || !visited_.insert(object)) return;
  pending_.push_back({object, detail::sizer_for<T>(*object)});
}

inline void SizeVisitor::follow_dynamic(const Object& object) {
  if (!visited_.insert(&object)) return;
  const detail::TypeRecord* type = detail::type_record_of(&object);
  pending_.push_back({&object, type ? type->sizer : &detail::measure_unknown<Object>});
}

inline void SizeVisitor::drain() {
  while (!pending_.empty()) {
    const Pending next = pending_.back();
    pending_.pop_back();
    next.sizer(*this, *next.object);
  }
}

}  // namespace sys

}  // namespace memlens
