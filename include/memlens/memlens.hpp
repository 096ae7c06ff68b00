// memlens: everything but memlens/track_new.hpp (which replaces the global operator new and so
// belongs in exactly one .cpp file of a program): the core, the fmt formatters and the tools.
#pragma once

#include "memlens/errors.hpp"
#include "memlens/format.hpp"
#include "memlens/fwd.hpp"
#include "memlens/gc.hpp"
#include "memlens/object.hpp"
#include "memlens/serialize.hpp"
#include "memlens/sys.hpp"
#include "memlens/threads.hpp"
#include "memlens/tracemalloc.hpp"
#include "memlens/visit.hpp"
#include "memlens/weakref.hpp"

#include "memlens/tools/advanced_cache.hpp"
#include "memlens/tools/advanced_memory_profiler.hpp"
#include "memlens/tools/circular_reference_detector.hpp"
#include "memlens/tools/dataset_processor.hpp"
#include "memlens/tools/memory_leak_detector.hpp"
#include "memlens/tools/memory_profiler.hpp"
#include "memlens/tools/memory_tracker.hpp"
#include "memlens/tools/object_pool.hpp"
#include "memlens/tools/ttl_weak_cache.hpp"
#include "memlens/tools/weak_cache.hpp"
#include "memlens/tools/weak_event_system.hpp"
