// memlens: how a type declares the references it holds (CPython's tp_traverse).
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "memlens/detail/core.hpp"

namespace memlens {

/// A member passed to a Visitor with its name, so reports can say `next` rather than `?`.
template <class T>
struct Named {
  std::string_view name;
  T& member;
};

/// Names a member for the visitor: `visit(memlens::named("next", next), children)`.
template <class T>
Named<T> named(std::string_view name, T& member) noexcept {
  return {name, member};
}

/// One strong reference found while traversing an object.
class Edge {
 public:
  using take_fn = Object* (*)(void* slot) noexcept;

  Edge(Object& referent, std::string_view name, void* slot, take_fn detach) noexcept
      : referent_(&referent), name_(name), slot_(slot), take_(detach) {}

  /// The object this reference points at.
  Object& referent() const noexcept { return *referent_; }
  /// The member name given with `named`, or empty.
  std::string_view name() const noexcept { return name_; }
  /// Whether `take()` can detach this reference (false for const members such as map keys).
  bool can_take() const noexcept { return take_ != nullptr; }
  /// Detaches the reference from its owner, which now holds null, and hands it to the caller
  /// without changing the count. The collector breaks cycles this way (CPython's tp_clear).
  Ref<Object> take() const noexcept {
    return take_ ? Ref<Object>(detail::adopt, take_(slot_)) : Ref<Object>();
  }

 private:
  Object* referent_;
  std::string_view name_;
  void* slot_;
  take_fn take_;
};

/**
 * Receives the references an object holds. Types call it from `traverse` with every member
 * that may hold a strong reference, nested in std containers, optionals, pairs, tuples,
 * variants and unique_ptrs as deep as they like; anything else is skipped at compile time:
 *
 * ```cpp
 * void traverse(memlens::Visitor& visit) override { visit(parent, children, by_name); }
 * ```
 *
 * Tools derive from it and override `visit_edge`. Each reference slot must be reported exactly
 * once over the whole heap: do not visit members reached through a shared_ptr or a raw pointer.
 */
class Visitor {
 public:
  virtual ~Visitor() = default;

  /// Reports every strong reference held in `members`.
  template <class... Members>
  MEMLENS_ALWAYS_INLINE void operator()(Members&&... members) {
    (visit_member(members), ...);
  }

  /// Called once for each non-null strong reference.
  virtual void visit_edge(const Edge& edge) = 0;

  /// Called for each Weak handle a type lists in its traverse. Listing them is optional; it
  /// tells the collector that the handle dies with its owner, so that its callback does not
  /// run when both are garbage (as CPython does for weakref objects in a garbage cycle).
  virtual void visit_weak(detail::WeakLink& link) { static_cast<void>(link); }

 protected:
  Visitor() = default;
  /// For the collector's own visitors, whose work traverse does inline.
  explicit Visitor(const detail::GcVisitState& gc) noexcept : gc_(gc) {}
  Visitor(const Visitor&) = default;
  Visitor& operator=(const Visitor&) = default;

  detail::GcVisitState gc_;

 private:
  template <class T>
  MEMLENS_ALWAYS_INLINE void visit_member(T& member);
  template <class T>
  friend void traverse(Visitor& visit, T& member);
  template <class R>
  MEMLENS_ALWAYS_INLINE void visit_ref(R& ref);
  template <class R>
  MEMLENS_NOINLINE void visit_edge_of(R& ref);
  template <class C>
  MEMLENS_NOINLINE void detach_keys(C& container) noexcept;
  std::string_view name_;
};

/// A Visitor that calls a function with each Edge.
template <class F>
class EdgeVisitor final : public Visitor {
 public:
  explicit EdgeVisitor(F f) : f_(std::move(f)) {}
  void visit_edge(const Edge& edge) override { f_(edge); }

 private:
  F f_;
};

/// Calls `f(const Edge&)` for each strong reference `object` reports from its traverse.
template <class F>
void for_each_edge(Object& object, F&& f) {
  EdgeVisitor<std::decay_t<F>> visitor(std::forward<F>(f));
  object.traverse(visitor);
}

namespace detail {

template <class T>
struct is_weak : std::false_type {};
template <class T>
struct is_weak<Weak<T>> : std::true_type {};
/// The list node inside a Weak handle (defined with Weak, in weakref.hpp).
template <class T>
WeakLink& weak_link_of(Weak<T>& weak) noexcept;

template <class T>
struct is_named : std::false_type {};
template <class T>
struct is_named<Named<T>> : std::true_type {};

template <class T>
struct is_tuple_like_ref_holder : std::false_type {};  // pair, tuple
template <class A, class B>
struct is_tuple_like_ref_holder<std::pair<A, B>> : std::true_type {};
template <class... A>
struct is_tuple_like_ref_holder<std::tuple<A...>> : std::true_type {};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T, class D>
struct is_optional<std::unique_ptr<T, D>> : std::true_type {};

template <class T>
struct is_variant : std::false_type {};
template <class... A>
struct is_variant<std::variant<A...>> : std::true_type {};

/// Value types with a `traverse(Visitor&)` member of their own (not Object, which boxes do).
template <class T>
concept has_member_traverse =
    !is_object_type<T> && requires(T& t, Visitor& v) { t.traverse(v); };

/// Third-party types can be described by an ADL function `memlens_traverse(Visitor&, T&)`.
template <class T>
concept has_adl_traverse = requires(T& t, Visitor& v) { memlens_traverse(v, t); };

template <class T>
struct may_hold_refs_impl;

/// Whether a member of type T can hold a strong reference: decides at compile time what the
/// visitor walks, so a vector<int> costs nothing.
template <class T>
inline constexpr bool may_hold_refs = may_hold_refs_impl<std::remove_cv_t<T>>::value;

template <class T>
struct may_hold_refs_impl
    : std::bool_constant<is_ref<T>::value || is_weak<T>::value || has_member_traverse<T> ||
                         has_adl_traverse<T>> {};
template <class T>
struct may_hold_refs_impl<Named<T>> : std::bool_constant<may_hold_refs<T>> {};
template <class T>
struct may_hold_refs_impl<std::optional<T>> : std::bool_constant<may_hold_refs<T>> {};
template <class T, class D>
struct may_hold_refs_impl<std::unique_ptr<T, D>> : std::bool_constant<may_hold_refs<T>> {};
template <class A, class B>
struct may_hold_refs_impl<std::pair<A, B>>
    : std::bool_constant<may_hold_refs<A> || may_hold_refs<B>> {};
template <class... A>
struct may_hold_refs_impl<std::tuple<A...>> : std::bool_constant<(may_hold_refs<A> || ...)> {};
template <class... A>
struct may_hold_refs_impl<std::variant<A...>> : std::bool_constant<(may_hold_refs<A> || ...)> {};

template <class T>
  requires(std::ranges::range<T> && !is_ref<T>::value && !has_member_traverse<T> &&
           !has_adl_traverse<T>)
struct may_hold_refs_impl<T> {
  // A range of itself (std::filesystem::path) holds nothing of interest.
  static constexpr bool value = !std::is_same_v<std::ranges::range_value_t<T>, T> &&
                                may_hold_refs<std::ranges::range_value_t<T>>;
};

/// Node containers whose keys may hold Refs (sets of Refs, maps keyed by Refs): their keys are
/// const, so the collector breaks a cycle through them by emptying the container, as CPython's
/// tp_clear empties a set or a dict. Their nodes, taken out, give mutable access to the keys.
template <class T>
concept has_ref_keys = requires(T& c) {
  typename T::node_type;
  typename T::key_type;
  c.extract(c.begin());
} && may_hold_refs<typename T::key_type>;

/// The nodes the collector took out of a container, destroyed once the garbage is freed: a
/// node may hold Refs its owner's traverse does not report, which must not go earlier.
template <class Node>
struct GcAsideNodes final : GcAside {
  std::vector<Node> nodes;
};

template <class T>
Object* take_ref(void* slot) noexcept {
  auto* ref = static_cast<Ref<T>*>(slot);
  return ref->release();
}

}  // namespace detail

// Inline in every traverse: the collector's passes do their work here, without a call.
template <class R>
MEMLENS_ALWAYS_INLINE inline void Visitor::visit_ref(R& ref) {
  if (!ref) return;
  if (gc_.kind == detail::GcVisit::generic) return visit_edge_of(ref);
  if (detail::gc_visit(gc_, const_cast<Object*>(ref.object()), &ref)) {
    if constexpr (!std::is_const_v<R>) detail::gc_detached(gc_, ref.release());
  }
}

template <class R>
MEMLENS_NOINLINE void Visitor::visit_edge_of(R& ref) {
  auto* object = const_cast<Object*>(ref.object());
  if constexpr (std::is_const_v<R>) {
    visit_edge(Edge(*object, name_, nullptr, nullptr));
  } else {
    visit_edge(Edge(*object, name_, &ref, &detail::take_ref<typename R::element_type>));
  }
}

// The collector's detach pass over a set of Refs or a map keyed by Refs: every node comes out,
// its Refs are detached (keys included, now mutable), and the node waits in `aside`.
template <class C>
MEMLENS_NOINLINE void Visitor::detach_keys(C& container) noexcept {
  using Node = typename C::node_type;
  detail::GcAsideNodes<Node>* aside = nullptr;
  try {
    auto owned = std::make_unique<detail::GcAsideNodes<Node>>();
    owned->nodes.reserve(container.size());
    aside = owned.get();
    gc_.aside->push_back(std::move(owned));
  } catch (...) {  // out of memory: the nodes go at once, with any Refs traverse does not report
    aside = nullptr;
  }
  while (!container.empty()) {
    Node node = container.extract(container.begin());
    if constexpr (requires { node.mapped(); }) {
      traverse(*this, node.key());
      traverse(*this, node.mapped());
    } else {
      traverse(*this, node.value());
    }
    if (aside) aside->nodes.push_back(std::move(node));  // reserved: does not throw
  }
}

/// Reports the strong references held in `member` to `visit`. This is the customization point:
/// a value type opts in with a member `void traverse(memlens::Visitor&)` or an ADL function
/// `memlens_traverse(memlens::Visitor&, T&)`.
template <class T>
void traverse(Visitor& visit, T& member) {
  using U = std::remove_cv_t<T>;
  if constexpr (!detail::may_hold_refs<U>) {
    return;
  } else if constexpr (detail::is_ref<U>::value) {
    visit.visit_ref(member);
  } else if constexpr (detail::is_weak<U>::value) {
    visit.visit_weak(detail::weak_link_of(const_cast<U&>(member)));
  } else if constexpr (detail::is_named<U>::value) {
    const std::string_view outer = std::exchange(visit.name_, member.name);
    traverse(visit, member.member);
    visit.name_ = outer;
  } else if constexpr (detail::has_member_traverse<U>) {
    member.traverse(visit);
  } else if constexpr (detail::has_adl_traverse<U>) {
    memlens_traverse(visit, member);
  } else if constexpr (detail::has_ref_keys<U> && !std::is_const_v<T>) {
    if (visit.gc_.kind == detail::GcVisit::detach) return visit.detach_keys(member);
    for (auto&& element : member) traverse(visit, element);
  } else if constexpr (detail::is_optional<U>::value) {
    if (member) traverse(visit, *member);
  } else if constexpr (detail::is_tuple_like_ref_holder<U>::value) {
    std::apply([&visit](auto&... elements) { (traverse(visit, elements), ...); }, member);
  } else if constexpr (detail::is_variant<U>::value) {
    std::visit([&visit](auto& element) { traverse(visit, element); }, member);
  } else {
    for (auto&& element : member) traverse(visit, element);
  }
}

template <class T>
MEMLENS_ALWAYS_INLINE inline void Visitor::visit_member(T& member) {
  if constexpr (detail::is_ref<std::remove_cv_t<T>>::value) {
    visit_ref(member);  // the common case, kept inline in the type's traverse
  } else {
    traverse(*this, member);
  }
}

}  // namespace memlens
