// memlens: fmt formatters for memlens types. Included by memlens/memlens.hpp.
#pragma once

#include <fmt/format.h>

#include <string>

#include "memlens/detail/trace_format.hpp"
#include "memlens/object.hpp"
#include "memlens/weakref.hpp"

/// `<Type object at 0x...>`, or `None` for a null Ref (Python's default repr).
template <class T>
struct fmt::formatter<memlens::Ref<T>> : fmt::formatter<std::string> {
  template <class Context>
  auto format(const memlens::Ref<T>& r, Context& ctx) const {
    return fmt::formatter<std::string>::format(memlens::repr(r), ctx);
  }
};

/// `<weakref at 0x...; to 'Type' at 0x...>` or `<weakref at 0x...; dead>`, as Python.
template <class T>
struct fmt::formatter<memlens::Weak<T>> : fmt::formatter<std::string> {
  template <class Context>
  auto format(const memlens::Weak<T>& w, Context& ctx) const {
    const memlens::Object* o = w.object();
    std::string text =
        o ? fmt::format("<weakref at {}; to '{}' at {}>", fmt::ptr(&w), memlens::detail::type_name(*o),
                        fmt::ptr(o))
          : fmt::format("<weakref at {}; dead>", fmt::ptr(&w));
    return fmt::formatter<std::string>::format(text, ctx);
  }
};
