// The allocation hook of bench_tracemalloc, alone in its translation unit: bench_tracemalloc and
// bench_tracemalloc_untraced compile benchmarks/tracemalloc.cpp the same way, and only the first
// links this file, so the untraced program runs the same workload code with no hook at all.
#include "memlens/track_new.hpp"
