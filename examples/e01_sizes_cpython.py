#!/usr/bin/env python3
"""Seed exercise 1 in CPython: the sizes examples/e01_measure_object_size.cpp prints beside
memlens' own, for the same 1000 integers.

Shallow is sys.getsizeof. Deep adds every object reachable from the structure, each counted
once by identity (as memlens' deep_sizeof does), so the integers a dict uses as both key and
value count once. CPython's small integers (-5..256) are cached objects, counted all the same.

    python3 examples/e01_sizes_cpython.py          # a table
    python3 examples/e01_sizes_cpython.py --cpp    # the C++ initializer of cpython_311_sizes

The figures in examples/measure_structure_sizes.hpp come from CPython 3.11 on 64-bit Linux.
"""

import array
import sys


def deep_getsizeof(obj, seen=None):
    """sys.getsizeof of obj and of everything it contains, each object once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        for key, value in obj.items():
            size += deep_getsizeof(key, seen) + deep_getsizeof(value, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            size += deep_getsizeof(item, seen)
    # array.array stores raw machine values: nothing else to count.
    return size


def measure_structure_sizes(data):
    """The exercise's function: {structure name: (shallow, deep)}."""
    appended = []
    for value in data:
        appended.append(value)
    structures = {
        "list": list(data),
        "list (appended)": appended,
        "tuple": tuple(data),
        "set": set(data),
        "dict": {value: value for value in data},
        "array('q')": array.array("q", data),
        "array('i')": array.array("i", data),
    }
    return {name: (sys.getsizeof(s), deep_getsizeof(s)) for name, s in structures.items()}


def main():
    results = measure_structure_sizes(list(range(1000)))
    version = ".".join(map(str, sys.version_info[:3]))
    if "--cpp" in sys.argv:
        print(f"// CPython {version}")
        for name, (shallow, deep) in results.items():
            print(f'    {{"{name}", {shallow}, {deep}}},')
        return
    print(f"CPython {version}, data = list(range(1000))")
    print(f"{'structure':<16} {'shallow':>10} {'deep':>10}")
    for name, (shallow, deep) in results.items():
        print(f"{name:<16} {shallow:>10,} {deep:>10,}")


if __name__ == "__main__":
    main()
