#!/usr/bin/env python3
"""CPython's side of memlens' cycle-collector benchmarks (benchmarks/gc.cpp runs this script).

Builds the graphs gc.cpp builds, with a __slots__ class of the same shape as its Node, and times
only the gc call (gc.collect, gc.collect(0) or gc.get_referrers), never the construction. Prints
a JSON object naming the interpreter, then one per shape, on stdout:

    {"python": "3.11.7", "implementation": "CPython"}
    {"shape": "ring", "objects": 1000000, "found": 1000000, "ns_per_object": 140.2, ...}

`objects` is what the cost is divided by: the objects collected, or the tracked heap scanned.
`ns_per_object` is the median over the repetitions. Shapes may be named on the command line;
without names, all run. Errors go to stderr and make the exit status non-zero.
"""

import argparse
import gc
import json
import platform
import statistics
import sys
import time

MILLION = 1_000_000
YOUNG_OBJECTS = 700  # gen 0's default threshold (gc.get_threshold()[0])


class Node:
    """48 bytes with its GC header, as memlens' Node (GcHead + header + two Refs)."""

    __slots__ = ("next", "prev")

    def __init__(self):
        self.next = None
        self.prev = None


# Each builder leaves no reference to its nodes behind but the one it returns, if any.


def build_pairs(objects):
    for _ in range(objects // 2):
        a, b = Node(), Node()
        a.next, b.next = b, a


def build_ring(objects):
    head = tail = Node()
    for _ in range(objects - 1):
        node = Node()
        tail.next = node
        tail = node
    tail.next = head
    return head


def build_doubly_linked(objects):
    head = tail = Node()
    for _ in range(objects - 1):
        node = Node()
        tail.next, node.prev = node, tail
        tail = node


def timed_ns(call, *args):
    start = time.perf_counter_ns()
    result = call(*args)
    return time.perf_counter_ns() - start, result


def collect_garbage(build, objects):
    """One repetition: build garbage, then time the full collection that frees it."""
    build(objects)
    ns, found = timed_ns(gc.collect)
    return ns, found, objects, objects


def collect_reachable(objects):
    root = build_ring(objects)
    ns, found = timed_ns(gc.collect)
    del root
    gc.collect()  # untimed: free the ring before the next repetition
    return ns, found, 0, objects


def referrers(objects):
    root = build_ring(objects)
    target = root.next
    heap = len(gc.get_objects())  # the frozen interpreter objects are not scanned
    # No lambda: its closure cell would be one more referrer.
    ns, found = timed_ns(gc.get_referrers, target)
    found = len(found)
    del root, target
    gc.collect()
    return ns, found, 1, heap


def young(objects, old_heap, collections=200):
    """The mean pause of `collections` young collections of `objects` fresh 2-cycle objects,
    with `old_heap` reachable objects in the oldest generation."""
    root = build_ring(old_heap) if old_heap else None
    gc.collect()  # moves the old heap to generation 2
    total = 0
    for _ in range(collections):
        build_pairs(objects)
        ns, found = timed_ns(gc.collect, 0)
        total += ns
        if found != objects:
            break
    del root
    gc.collect()
    return total / collections, found, objects, objects


# name -> (repetitions, one repetition). Names and repetitions are gc.cpp's.
SHAPES = {
    "pairs": (5, lambda: collect_garbage(build_pairs, MILLION)),
    "ring": (5, lambda: collect_garbage(build_ring, MILLION)),
    "doubly_linked": (5, lambda: collect_garbage(build_doubly_linked, MILLION)),
    "reachable": (5, lambda: collect_reachable(MILLION)),
    "ring_4m": (3, lambda: collect_garbage(build_ring, 4 * MILLION)),
    "get_referrers": (5, lambda: referrers(MILLION)),
    "young": (5, lambda: young(YOUNG_OBJECTS, 0)),
    "young_old_heap": (5, lambda: young(YOUNG_OBJECTS, MILLION)),
}


def measure(name):
    repetitions, run = SHAPES[name]
    times = []
    for _ in range(repetitions):
        ns, found, expected, objects = run()
        if found != expected:
            raise RuntimeError(f"{name}: found {found} objects, expected {expected}")
        times.append(ns)
    median = statistics.median(times)
    return {
        "shape": name,
        "objects": objects,
        "found": found,
        "repetitions": repetitions,
        "ns": median,
        "ns_per_object": median / objects,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", help=f"any of: {', '.join(SHAPES)} (default: all)")
    shapes = parser.parse_args().shapes or list(SHAPES)
    unknown = [name for name in shapes if name not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s): {', '.join(unknown)}")

    # As gc.cpp: no automatic collection, and only the benchmark's objects in the generations
    # (the interpreter's own objects go to the permanent generation, which gc ignores).
    gc.disable()
    gc.collect()
    gc.freeze()
    implementation = platform.python_implementation()
    print(json.dumps({"python": platform.python_version(), "implementation": implementation}))
    status = 0
    for name in shapes:
        try:
            print(json.dumps(measure(name)), flush=True)
        except (RuntimeError, MemoryError) as error:
            print(f"gc_cpython.py: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
