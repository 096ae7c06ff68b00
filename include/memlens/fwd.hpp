// memlens: forward declarations of the public types, for headers that only name them.
#pragma once

namespace memlens {

class Object;
class Visitor;
template <class T>
class Ref;
template <class T>
class Weak;
class HeapLock;

namespace serial {
class Writer;
class Reader;
}  // namespace serial

}  // namespace memlens
