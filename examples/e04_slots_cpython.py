#!/usr/bin/env python3
"""Seed exercise 4 in CPython: the figures examples/e04_compare_slots_memory.cpp prints beside
memlens' own. tracemalloc measures the list of instances, their dictionaries or slots; the
attribute values are small cached integers, shared by all instances.

    python3 examples/e04_slots_cpython.py [n]

The figures in examples/compare_slots_memory.hpp come from CPython 3.11 on 64-bit Linux (the
first measurement of a process is a few KiB higher: the interpreter warms its caches).
"""

import gc
import sys
import tracemalloc


class Point:
    def __init__(self, x, y, z):
        self.x, self.y, self.z = x, y, z


class SlottedPoint:
    __slots__ = ("x", "y", "z")

    def __init__(self, x, y, z):
        self.x, self.y, self.z = x, y, z


def total_memory(cls, n):
    gc.collect()
    tracemalloc.start()
    points = [cls(1, 2, 3) for _ in range(n)]
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del points
    return current


def compare_slots_memory(n=10000):
    """The exercise's function: the bytes of each version and the saving in percent."""
    total_memory(Point, n)  # warm up, so the figures are the steady ones
    regular = total_memory(Point, n)
    slotted = total_memory(SlottedPoint, n)
    return {"regular": regular, "slots": slotted, "saving_percent": 100 * (1 - slotted / regular)}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    stats = compare_slots_memory(n)
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"CPython {version}, {n} instances")
    print(f"{'class':<12} {'bytes':>12} {'per instance':>13}")
    print(f"{'__dict__':<12} {stats['regular']:>12,} {stats['regular'] / n:>13.1f}")
    print(f"{'__slots__':<12} {stats['slots']:>12,} {stats['slots'] / n:>13.1f}")
    print(f"saving: {stats['saving_percent']:.1f} %")


if __name__ == "__main__":
    main()
