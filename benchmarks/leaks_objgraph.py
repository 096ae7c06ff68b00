#!/usr/bin/env python3
"""Leak-hunting benchmark, CPython + objgraph side.

Mirrors benchmarks/leaks.cpp of memlens: same heap shape, same steps.

Heap (built untimed):
  * a module-level global `holder` (Holder) whose `items` list holds N Item
    objects (default 1,000,000); item i's `next` is item i-1, item 0's is None;
  * a module-level global `registry` (Registry) with an empty `sessions` list.

Timed part (time.perf_counter):
  (a) objgraph.show_growth(limit=10, file=StringIO) once as a baseline, then
      3 rounds of [append 1,000 Session objects to registry.sessions (untimed);
      show_growth (timed)] -> "show_growth_total" (4 calls) and per call;
  (b) objgraph.find_backref_chain(registry.sessions[-1], objgraph.is_proper_module)
      -> "backref_chain";
  (c) (a) + (b) -> "total".

Checks: the last show_growth output reports Session with +1000, the chain
starts at a module and ends at the leaked Session; the chain length is printed.

Repetitions: show_growth keeps its peak counts inside the process, so a second
scenario in the same process would not see Session grow again. Each repetition
therefore runs the whole scenario (build + timed part) in a fresh child process
with the same interpreter; medians over the repetitions are reported.

Usage: leaks_objgraph.py [--items N] [--repetitions R] [--json]
(needs objgraph importable, e.g. Debian's python3-objgraph with /usr/bin/python3)
"""
import argparse
import io
import json
import platform
import statistics
import subprocess
import sys
import time

import objgraph

SESSIONS_PER_ROUND = 1000
ROUNDS = 3


class Item:
    def __init__(self, next):
        self.next = next


class Holder:
    def __init__(self, items):
        self.items = items


class Session:
    def __init__(self, payload):
        self.payload = payload


class Registry:
    def __init__(self):
        self.sessions = []


holder = None
registry = None


def build_heap(n):
    global holder, registry
    items = []
    prev = None
    for _ in range(n):
        prev = Item(prev)
        items.append(prev)
    holder = Holder(items)
    registry = Registry()


def session_growth(report):
    """The +delta that a show_growth report gives for Session, or None."""
    for line in report.splitlines():
        fields = line.split()
        if fields and fields[0] == "Session":
            return fields[-1]
    return None


def run_once(n_items):
    """One full scenario in this process; returns a dict of timings."""
    build_heap(n_items)
    growth_times = []

    def timed_growth():
        out = io.StringIO()
        t0 = time.perf_counter()
        objgraph.show_growth(limit=10, file=out)
        growth_times.append(time.perf_counter() - t0)
        return out.getvalue()

    timed_growth()  # baseline
    payload = 0
    for _ in range(ROUNDS):
        for _ in range(SESSIONS_PER_ROUND):
            registry.sessions.append(Session(payload))
            payload += 1
        report = timed_growth()

    leaked = registry.sessions[-1]
    t0 = time.perf_counter()
    chain = objgraph.find_backref_chain(leaked, objgraph.is_proper_module)
    backref = time.perf_counter() - t0

    growth = session_growth(report)
    assert growth == "+%d" % SESSIONS_PER_ROUND, "last show_growth: %r" % report
    assert chain[-1] is leaked, "chain does not end at the leaked Session"
    assert objgraph.is_proper_module(chain[0]), "chain does not start at a module"

    return {
        "show_growth_calls": growth_times,
        "show_growth_total": sum(growth_times),
        "backref_chain": backref,
        "total": sum(growth_times) + backref,
        "chain_length": len(chain),
        "chain": [type(o).__name__ for o in chain],
        "last_growth_report": report,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.single:  # child process: one scenario, result as JSON on stdout
        print(json.dumps(run_once(args.items)))
        return

    runs = []
    for _ in range(args.repetitions):
        out = subprocess.run(
            [sys.executable, __file__, "--single", "--items", str(args.items)],
            check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out))

    def med(key):
        return statistics.median(r[key] for r in runs)

    result = {
        "items": args.items,
        "repetitions": args.repetitions,
        "show_growth_total": med("show_growth_total"),
        "show_growth_per_call": med("show_growth_total") / (ROUNDS + 1),
        "backref_chain": med("backref_chain"),
        "total": med("total"),
        "chain_length": runs[0]["chain_length"],
        "python_version": platform.python_version(),
        "objgraph_version": objgraph.__version__,
    }
    if args.json:
        print(json.dumps(result))
        return

    print("Python %s, objgraph %s, items=%d, repetitions=%d"
          % (result["python_version"], result["objgraph_version"],
             args.items, args.repetitions))
    for i, r in enumerate(runs, 1):
        calls = ", ".join("%.4f" % t for t in r["show_growth_calls"])
        print("run %d: show_growth [%s] total %.4f s, backref_chain %.4f s, "
              "total %.4f s" % (i, calls, r["show_growth_total"],
                                r["backref_chain"], r["total"]))
    print("last show_growth output (run 1):")
    print(runs[0]["last_growth_report"].rstrip())
    print("chain (%d objects): %s" % (result["chain_length"],
                                      " -> ".join(runs[0]["chain"])))
    print("median: show_growth_total %.4f s (%.4f s/call), backref_chain %.4f s,"
          " total %.4f s" % (result["show_growth_total"],
                             result["show_growth_per_call"],
                             result["backref_chain"], result["total"]))


if __name__ == "__main__":
    main()
