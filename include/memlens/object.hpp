// memlens: objects with identity and reference counts (CPython's PyObject, `is`, `id()`).
#pragma once

#include <cstdint>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "memlens/detail/collector.hpp"
#include "memlens/detail/core.hpp"
#include "memlens/visit.hpp"

namespace memlens {

namespace detail {

/// The object that holds a value made by make<T> for a T not derived from Object.
template <class T>
class Box final : public BoxBase {
 public:
  template <class... Args>
  explicit Box(std::in_place_t, Args&&... args) : value(make_value(std::forward<Args>(args)...)) {}

  const std::type_info& value_type() const noexcept override { return typeid(T); }
  void traverse(Visitor& visit) override { memlens::traverse(visit, value); }

  T value;

 private:
  // Parentheses when T has such a constructor, braces for aggregates (make<Point>(1, 2)).
  // The arguments convert as the caller wrote them (make<std::vector<int>>(3, 7)); a warning
  // would point here, where the caller cannot act, so none is given, as std::make_shared gives
  // none from its system header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
  template <class... Args>
  static T make_value(Args&&... args) {
    if constexpr (std::is_constructible_v<T, Args&&...>) {
      return T(std::forward<Args>(args)...);
    } else {
      return T{std::forward<Args>(args)...};
    }
  }
#pragma GCC diagnostic pop
};

/// Whether S uses Object's own traverse: `&S::traverse` is then Object's, of type
/// `void (Object::*)(Visitor&)`. A type may override it private or protected (memlens calls it
/// through Object, where it is public); `&S::traverse` is then inaccessible here, which only a
/// redeclaration can make it, so that counts as an override.
template <class S>
concept inherits_object_traverse =
    requires { requires std::is_same_v<decltype(&S::traverse), void (Object::*)(Visitor&)>; };
/// Whether S uses Object's own finalize (as above).
template <class S>
concept inherits_object_finalize =
    requires { requires std::is_same_v<decltype(&S::finalize), void (Object::*)()>; };

/// Whether objects of type S (an Object type or a Box) are tracked by the cycle collector:
/// those whose traverse can report a reference.
template <class S>
inline constexpr bool is_tracked_type = !inherits_object_traverse<S>;
template <class T>
inline constexpr bool is_tracked_type<Box<T>> = may_hold_refs<T>;

template <class S>
inline constexpr bool has_finalizer = !inherits_object_finalize<S>;
template <class T>
inline constexpr bool has_finalizer<Box<T>> = false;

/// How memlens/sys.hpp measures an object whose most derived type is S (defined with the
/// sizes, in memlens/detail/sizes.hpp, which this header includes at its end).
template <class S>
ObjectSizer sizer_of() noexcept;

/// The index of S's record, 0 until the first make<S> (in each shared library) registers it.
/// Not MEMLENS_SHARED: that would do nothing for a type of hidden visibility, and
/// register_type's table, which is shared, gives every library the same index for S. A plain
/// variable, not a guarded static: make reads it with one load (make runs under the heap lock).
template <class S>
inline constinit std::uint32_t type_index = 0;

/// The type reports name for objects of type S: the value's type for a box.
template <class S>
struct shown_type_of {
  using type = S;
};
template <class T>
struct shown_type_of<Box<T>> {
  using type = T;
};
template <class S>
const std::type_info& shown_type() noexcept {
  return typeid(typename shown_type_of<S>::type);
}

template <class S, std::size_t Size, std::size_t Prefix>
MEMLENS_NOINLINE std::uint32_t register_type_of() {
  return type_index<S> =
             register_type(TypeRecord{&typeid(S), &shown_type<S>(), sizer_of<S>(), Size, Prefix,
                                      alignof(S), 0, 0});
}

/// Undoes what make did before its constructor threw.
MEMLENS_NOINLINE inline void make_failed(void* memory, bool pooled, std::size_t align,
                                         bool tracked) noexcept {
  if (pooled) {
    pool::deallocate(memory);
  } else {
    deallocate(memory, align);
  }
  if (tracked && gc_state().counts[0] > 0) --gc_state().counts[0];
}

}  // namespace detail

/**
 * Creates an object and returns the only reference to it, like calling a Python class.
 *
 * T may derive from Object, or be any value type, which is stored in a box:
 * ```cpp
 * auto node = memlens::make<Node>();                  // Ref<Node>
 * auto list = memlens::make<std::vector<int>>(3, 7);  // Ref<std::vector<int>>, *list == {7, 7, 7}
 * ```
 * Objects whose type overrides `traverse` (or boxes whose value may hold Refs) are tracked by
 * the cycle collector, as CPython tracks containers.
 */
template <class T, class... Args>
Ref<T> make(Args&&... args) {
  static_assert(!std::is_reference_v<T> && !std::is_array_v<T> && !std::is_volatile_v<T>,
                "memlens::make<T>: T must be an object or value type");
  using S = std::remove_const_t<detail::stored_t<T>>;
  static_assert(!std::is_abstract_v<S>, "memlens::make<T>: T is abstract");
  constexpr bool tracked = detail::is_tracked_type<S>;
  constexpr std::size_t align = alignof(S);
  constexpr std::size_t prefix =
      tracked ? (align > sizeof(detail::GcHead) ? align : sizeof(detail::GcHead)) : 0;

  constexpr std::size_t size = prefix + sizeof(S);
  // Small objects of the usual alignment come from the pool (detail/pool.hpp).
  constexpr bool pooled = detail::pool::enabled && align <= detail::pool::granularity &&
                          size <= detail::pool::max_block;
  detail::check_heap_lock("make was called");
  std::uint32_t type_id = detail::type_index<S>;
  if (MEMLENS_UNLIKELY(type_id == 0)) type_id = detail::register_type_of<S, size, prefix>();
  if constexpr (tracked) detail::gc_on_allocation();  // may collect, as CPython's allocator does
  void* memory = pooled ? detail::pool::allocate(size) : detail::allocate(size, align);
  S* object;
  try {
    const detail::ConstructionScope constructing(memory, size);
    if constexpr (detail::is_object_type<T>) {
      object = ::new (static_cast<char*>(memory) + prefix) S(std::forward<Args>(args)...);
    } else {
      object = ::new (static_cast<char*>(memory) + prefix) S(std::in_place, std::forward<Args>(args)...);
    }
  } catch (...) {
    detail::make_failed(memory, pooled, align, tracked);
    throw;
  }
  const Object* base = object;
  std::uint32_t& flags = detail::Access::flags(base);
  flags |= detail::flag::heap | (type_id << detail::flag::type_shift);
  if (static_cast<const void*>(base) != static_cast<const void*>(object)) {
    // Object is not the first base: the record keeps where it sits (the same in every S).
    flags |= detail::flag::inner_base;
    detail::type_registry.records[type_id]->offset = static_cast<std::size_t>(
        reinterpret_cast<const char*>(base) - reinterpret_cast<const char*>(object));
  }
  if constexpr (align > __STDCPP_DEFAULT_NEW_ALIGNMENT__) flags |= detail::flag::over_aligned;
  if constexpr (detail::has_finalizer<S>) flags |= detail::flag::has_finalizer;
  if constexpr (pooled) flags |= detail::flag::pooled;
  if constexpr (tracked) {
    flags |= detail::flag::tracked;
    detail::gc_list_append(const_cast<Object*>(base), detail::gc_state().generations[0]);
  }
  detail::count_created(type_id);
  return Ref<T>(detail::adopt, const_cast<Object*>(base));
}

/// Python's `a is b`: whether two references name the same object (null is null).
template <class A, class B>
bool is(const Ref<A>& a, const Ref<B>& b) noexcept {
  return a.object() == b.object();
}

/// Python's `id(x)`: the object's address as an integer, 0 for a null Ref. Unique among live
/// objects; a freed object's id may be reused.
template <class T>
std::uintptr_t id(const Ref<T>& r) noexcept {
  return reinterpret_cast<std::uintptr_t>(r.object());
}

/// Converts a Ref to a Ref of a related type without a check, as static_cast.
template <class T, class U>
Ref<T> static_ref_cast(Ref<U> r) noexcept {
  return Ref<T>(detail::adopt, r.release());
}

/// Converts a Ref to a Ref of a related type, or null if the object is not a T.
template <class T, class U>
Ref<T> dynamic_ref_cast(const Ref<U>& r) noexcept {
  if (!r || !dynamic_cast<const detail::stored_t<T>*>(r.object())) return {};
  return Ref<T>(detail::adopt, (detail::incref(r.object()), const_cast<Object*>(r.object())));
}

/// The name of the object's type, as reports show it (the value's type for a boxed value).
template <class T>
std::string type_name(const Ref<T>& r) {
  return r ? detail::type_name(*r.object()) : std::string("NoneType");
}

/// Python's repr for objects without one: `<Type object at 0x...>`, or `None`.
template <class T>
std::string repr(const Ref<T>& r) {
  return detail::repr(r.object());
}

}  // namespace memlens

// The sizes of objects are recorded by make (sizer_of), so they come with the object model.
#include "memlens/detail/sizes.hpp"
