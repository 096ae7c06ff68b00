// memlens: the exception hierarchy. Every error memlens throws derives from memlens::Error and
// its message starts with the part that threw ("weakref: ...", "sys: ...").
#pragma once

#include <stdexcept>
#include <string>

namespace memlens {

/// Base of every exception memlens throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A weak reference was used as if its referent were alive (Python's ReferenceError).
class ReferenceError : public Error {
 public:
  using Error::Error;
};

/// An argument has the right type but a value the function cannot accept (Python's ValueError).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// An object or file does not have the shape memlens expects (Python's TypeError).
class TypeError : public Error {
 public:
  using Error::Error;
};

/// A wait ran out of time: ObjectPool::acquire found no object free within its timeout.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

}  // namespace memlens
