#!/usr/bin/env python3
"""CPython's side of memlens' cache benchmarks (benchmarks/caches.cpp): cachetools and lru_cache.

Three parts, as caches.cpp:

  * hits per second: 10,000 keys, all present, read in the random order of caches.cpp's first
    thread (the same splitmix64 sequence of 2^20 reads), one thread: cachetools' LRUCache,
    LFUCache and FIFOCache through `cache.get(key)`, a functools.lru_cache-wrapped function
    called with the key, and a bare dict.get (no cache: the floor). The median of 3 passes;
    the loop's own cost (`for key in sequence`) is included, as a Python caller pays it.
  * bytes per entry: 1,000,000 int -> int entries; tracemalloc's traced memory before and after
    the structure is filled, the key and value objects made beforehand so that only the
    structures count (tracemalloc counts the bytes asked of Python's allocators, as the
    cache's own accounting and caches.cpp's counting allocator do). The int objects are extra:
    sys.getsizeof gives 36 bytes for a 64-bit int, two per entry, where
    C++ stores both in 16 bytes.
  * hit ratios at 10,000 entries on caches.cpp's two traces (generated here the same way, with
    the same checksums, or read from files that `bench_caches --dump-traces=DIR` writes, with
    `--traces DIR`), the cache used as a user does: `if cache.get(key) is None: cache[key] = v`.
    cachetools' LFUCache finds its victim with Counter.most_common(1), a scan of every entry
    (0.5 ms at 10,000 entries): a whole trace would take 10 minutes. Its hit ratio is therefore
    replayed by an exact model of its policy (the fewest uses since insertion; ties: the
    earliest inserted) in O(log n), checked first to make the same hit-or-miss decision as
    cachetools.LFUCache at every request of both traces' first 200,000, at 1,000 entries
    (`--full-lfu` replays cachetools.LFUCache itself on the whole traces).

Usage: caches_cpython.py [--traces DIR] [--full-lfu] [--skip-bytes]
Needs cachetools (Debian: apt install python3-cachetools, for /usr/bin/python3); another
python3 that lacks it hands over to /usr/bin/python3 when that one has it.
"""

import argparse
import bisect
import functools
import gc
import heapq
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc

try:
    import cachetools
except ImportError:
    # A pyenv or venv python3 does not see Debian's dist-packages: use the system interpreter.
    system = "/usr/bin/python3"
    if (
        os.path.realpath(sys.executable) != os.path.realpath(system)
        and os.path.exists(system)
        and not os.environ.get("MEMLENS_CACHES_REEXEC")
        and subprocess.run([system, "-c", "import cachetools"], capture_output=True).returncode
        == 0
    ):
        print(f"caches_cpython.py: cachetools not importable here; running under {system}",
              file=sys.stderr, flush=True)
        os.environ["MEMLENS_CACHES_REEXEC"] = "1"
        os.execv(system, [system, os.path.abspath(__file__), *sys.argv[1:]])
    sys.exit("caches_cpython.py needs cachetools (Debian: apt install python3-cachetools)")

MASK = (1 << 64) - 1
CAPACITY = 10_000

# --------------------------------------------------------------------------------------------
# caches.cpp's deterministic randomness.


def splitmix64(state):
    """Returns (new state, output) of splitmix64."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def scramble(x):
    """splitmix64's finalizer: a bijection from key numbers to keys."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def value_for(key):
    return key ^ 0x5555555555555555


UNIT = 2.0**-53


def checksum(keys):
    """FNV-1a over the keys as 64-bit words, as caches.cpp prints."""
    h = 0xCBF29CE484222325
    for key in keys:
        h = ((h ^ key) * 0x100000001B3) & MASK
    return h


# --------------------------------------------------------------------------------------------
# The traces: the parameters and the arithmetic of caches.cpp's zipf_scan_trace and
# recency_trace (the same libm pow, log and log1p, the same order of additions).

ZIPF_KEYS = 1_000_000
ZIPF_EXPONENT = 0.99
ZIPF_PER_CYCLE = 100_000
SCAN_LENGTH = 20_000
CYCLES = 20
ZIPF_SEED = 0x21FF
SCAN_BASE = 1 << 40

RECENCY_REQUESTS = 2_000_000
REUSE_PROBABILITY = 0.8
MEAN_DISTANCE = 10_000.0
RECENCY_SEED = 0x4ECC
RECENCY_BASE = 2 << 40


def zipf_scan_trace():
    cumulative = []
    total = 0.0
    for r in range(1, ZIPF_KEYS + 1):
        total += float(r) ** -ZIPF_EXPONENT
        cumulative.append(total)
    keys = []
    state = ZIPF_SEED
    scanned = 0
    last = ZIPF_KEYS - 1
    for _ in range(CYCLES):
        for _ in range(ZIPF_PER_CYCLE):
            state, x = splitmix64(state)
            u = (x >> 11) * UNIT * total
            rank = min(bisect.bisect_right(cumulative, u), last) + 1
            keys.append(scramble(rank))
        for _ in range(SCAN_LENGTH):
            keys.append(scramble(SCAN_BASE + scanned))
            scanned += 1
    return keys


def recency_trace():
    keys = []
    state = RECENCY_SEED
    log_q = math.log1p(-1.0 / MEAN_DISTANCE)
    fresh = 0
    for i in range(RECENCY_REQUESTS):
        key = None
        state, x = splitmix64(state)
        if (x >> 11) * UNIT < REUSE_PROBABILITY:
            state, x = splitmix64(state)
            depth = math.log(1.0 - (x >> 11) * UNIT) / log_q
            if depth < i:
                key = keys[i - 1 - int(depth)]
        if key is None:
            key = scramble(RECENCY_BASE + fresh)
            fresh += 1
        keys.append(key)
    return keys


TRACES = {"zipf_scan": zipf_scan_trace, "recency": recency_trace}


def load_trace(name, directory):
    if directory is None:
        return TRACES[name]()
    with open(os.path.join(directory, f"{name}.u64"), "rb") as f:
        data = f.read()
    return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]


# --------------------------------------------------------------------------------------------
# Part 1: hits per second.

SEQUENCE_LENGTH = 1 << 20


def hit_sequence(keys):
    """caches.cpp's sequence of reads for its first thread."""
    state = 0x417
    out = []
    n = len(keys)
    for _ in range(SEQUENCE_LENGTH):
        state, x = splitmix64(state)
        out.append(keys[x % n])
    return out


def time_reads(get, sequence, passes=3):
    """Median hits per second of `get` over `sequence`; fails if any read misses."""
    if any(get(key) is None for key in sequence[:100_000]):
        raise RuntimeError("a key that was set was not found")
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for key in sequence:
            get(key)
        rates.append(len(sequence) / (time.perf_counter() - start))
    return statistics.median(rates)


def hits_per_second():
    keys = [scramble(i) for i in range(CAPACITY)]
    sequence = hit_sequence(keys)
    rows = []
    for name, cls in (("cachetools.LRUCache", cachetools.LRUCache),
                      ("cachetools.LFUCache", cachetools.LFUCache),
                      ("cachetools.FIFOCache", cachetools.FIFOCache)):
        cache = cls(maxsize=CAPACITY)
        for key in keys:
            cache[key] = value_for(key)
        rows.append((name, time_reads(cache.get, sequence)))

    @functools.lru_cache(maxsize=CAPACITY)
    def load(key):
        return value_for(key)

    for key in keys:
        load(key)
    rate = time_reads(load, sequence)
    info = load.cache_info()
    if info.misses != CAPACITY:
        raise RuntimeError(f"lru_cache missed {info.misses - CAPACITY} reads of present keys")
    rows.append(("functools.lru_cache", rate))
    table = {key: value_for(key) for key in keys}
    rows.append(("dict.get (no cache: floor)", time_reads(table.get, sequence)))
    return rows


# --------------------------------------------------------------------------------------------
# Part 2: bytes per entry.

FILL_ENTRIES = 1_000_000


def traced_bytes(build):
    """The bytes `build()`'s result holds, by tracemalloc: traced memory before and after."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    structure = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return structure, after - before


def bytes_per_entry():
    keys = [scramble(i) for i in range(FILL_ENTRIES)]
    values = [value_for(key) for key in keys]  # made before: only the structures are traced
    rows = []

    def fill(cache):
        for key, value in zip(keys, values):
            cache[key] = value
        return cache

    for name, cls in (("cachetools.LRUCache", cachetools.LRUCache),
                      ("cachetools.LFUCache", cachetools.LFUCache),
                      ("cachetools.FIFOCache", cachetools.FIFOCache)):
        cache, traced = traced_bytes(lambda cls=cls: fill(cls(maxsize=FILL_ENTRIES)))
        assert len(cache) == FILL_ENTRIES
        # sys.getsizeof of the dicts inside (name-mangled attributes), as a cross-check.
        parts = sum(sys.getsizeof(v) for k, v in vars(cache).items() if isinstance(v, dict))
        rows.append((name, traced / FILL_ENTRIES, parts / FILL_ENTRIES))
        del cache

    lookup = dict(zip(keys, values))

    def build_lru_cache():
        @functools.lru_cache(maxsize=FILL_ENTRIES)
        def load(key):
            return lookup[key]

        for key in keys:
            load(key)
        return load

    load, traced = traced_bytes(build_lru_cache)
    assert load.cache_info().currsize == FILL_ENTRIES
    rows.append(("functools.lru_cache", traced / FILL_ENTRIES, None))
    del load
    table, traced = traced_bytes(lambda: fill({}))
    rows.append(("dict (no cache: floor)", traced / FILL_ENTRIES,
                 sys.getsizeof(table) / FILL_ENTRIES))
    return rows


# --------------------------------------------------------------------------------------------
# Part 3: hit ratios.


def replay(cache, keys):
    """Hits of `keys` through `cache` used as a user does."""
    hits = 0
    get = cache.get
    for key in keys:
        if get(key) is None:
            cache[key] = value_for(key)
        else:
            hits += 1
    return hits


class CachetoolsLfuModel:
    """cachetools.LFUCache's policy in O(log n): a miss with the cache full evicts the key with
    the fewest uses since it was inserted (a set counts one), ties going to the earliest
    inserted (Counter.most_common(1) returns the first maximum of -uses in insertion order)."""

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self.data = {}  # key -> [uses, insertion number, value]
        self.heap = []  # (uses, insertion number, key); stale entries skipped
        self.inserted = 0

    def get(self, key):
        entry = self.data.get(key)
        if entry is None:
            return None
        entry[0] += 1
        heapq.heappush(self.heap, (entry[0], entry[1], key))
        return entry[2]

    def __setitem__(self, key, value):  # only ever called for a key not present (see replay)
        if len(self.data) >= self.maxsize:
            heap, data = self.heap, self.data
            while True:
                uses, number, victim = heapq.heappop(heap)
                entry = data.get(victim)
                if entry is not None and entry[0] == uses and entry[1] == number:
                    del data[victim]
                    break
        self.inserted += 1
        self.data[key] = [1, self.inserted, value]
        heapq.heappush(self.heap, (1, self.inserted, key))


def same_decisions(keys, maxsize):
    """Whether the model and cachetools.LFUCache hit and miss alike at every request."""
    real, model = cachetools.LFUCache(maxsize), CachetoolsLfuModel(maxsize)
    for key in keys:
        hit_real = real.get(key) is not None
        hit_model = model.get(key) is not None
        if hit_real != hit_model:
            return False
        if not hit_real:
            real[key] = model[key] = value_for(key)
    return True


def hit_ratios(traces, full_lfu):
    rows = {}
    for name, keys in traces.items():
        n = len(keys)
        rows[(name, "LRU")] = replay(cachetools.LRUCache(CAPACITY), keys) / n
        rows[(name, "FIFO")] = replay(cachetools.FIFOCache(CAPACITY), keys) / n
        if full_lfu:
            rows[(name, "LFU")] = replay(cachetools.LFUCache(CAPACITY), keys) / n
        else:
            if not same_decisions(keys[:200_000], 1_000):
                raise RuntimeError(f"the LFU model differs from cachetools.LFUCache on {name}")
            rows[(name, "LFU")] = replay(CachetoolsLfuModel(CAPACITY), keys) / n
    return rows


# --------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", metavar="DIR",
                        help="read DIR/zipf_scan.u64 and DIR/recency.u64 (bench_caches "
                             "--dump-traces=DIR) instead of generating them")
    parser.add_argument("--full-lfu", action="store_true",
                        help="replay cachetools.LFUCache itself on the whole traces (~20 min)")
    parser.add_argument("--skip-bytes", action="store_true", help="skip the bytes per entry")
    args = parser.parse_args()

    print(f"{platform.python_implementation()} {platform.python_version()}, cachetools "
          f"{cachetools.__version__} ({sys.executable})")

    print("\nHits per second, 1 thread, 10000 keys all present, 2^20 random reads "
          "(median of 3 passes)")
    print(f"  {'':<30} {'M hits/s':>9} {'ns/hit':>8}")
    for name, rate in hits_per_second():
        print(f"  {name:<30} {rate / 1e6:>9.2f} {1e9 / rate:>8.1f}", flush=True)

    if not args.skip_bytes:
        print(f"\nBytes per entry of the structures, {FILL_ENTRIES} int -> int entries "
              "(the int objects not counted)")
        print(f"  {'':<30} {'tracemalloc':>11} {'getsizeof':>10}")
        for name, traced, sized in bytes_per_entry():
            sized_text = f"{sized:.1f}" if sized is not None else "n/a"
            print(f"  {name:<30} {traced:>11.1f} {sized_text:>10}", flush=True)
        print("  tracemalloc: the traced memory grown while filling (the bytes asked of Python's\n"
              "  allocators); getsizeof: sys.getsizeof of the dicts the cache object holds\n"
              "  (an OrderedDict's includes its nodes). Not counted: each entry's key and value\n"
              f"  objects, 2 x {sys.getsizeof(scramble(1))} bytes (sys.getsizeof of a 64-bit "
              "int).")

    traces = {}
    source = f"read from {args.traces}" if args.traces else "generated as caches.cpp does"
    print(f"\nHit ratios (%) at {CAPACITY} entries; the traces {source}")
    for name in TRACES:
        traces[name] = load_trace(name, args.traces)
        print(f"  {name}: {len(traces[name])} requests, {len(set(traces[name]))} distinct keys, "
              f"checksum {checksum(traces[name]):016x}", flush=True)
    ratios = hit_ratios(traces, args.full_lfu)
    print(f"\n  {'':<22} {'zipf_scan':>10} {'recency':>10}")
    for policy, label in (("LRU", "cachetools.LRUCache"),
                          ("LFU", "cachetools.LFUCache" + ("" if args.full_lfu else " *")),
                          ("FIFO", "cachetools.FIFOCache")):
        print(f"  {label:<22} {100 * ratios[('zipf_scan', policy)]:>10.2f} "
              f"{100 * ratios[('recency', policy)]:>10.2f}")
    if not args.full_lfu:
        print("  * its exact O(log n) model, which decided as cachetools.LFUCache at every one of "
              "both traces'\n    first 200000 requests at 1000 entries (--full-lfu: the real "
              "one, whole traces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
