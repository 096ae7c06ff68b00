# The CTest check meta.docs, run as `cmake -DSOURCE_DIR=... -P check_docs.cmake`: what the
# README and docs/ say about the repository holds.
#   - They speak to users: no paths outside the repository, no word of the project's own
#     process (issues, goals, sessions, its machine).
#   - The README's map of the headers names only headers that exist, every public header is in
#     it, and memlens/memlens.hpp includes every header the map says it does.
#   - docs/challenges.md names every challenge and exercise test and example that exists, each
#     path it names exists, and the 25 are all there, built or said not to be.
cmake_policy(VERSION 3.20)

set(failures "")
macro(fail)
  string(APPEND failures "  ${ARGV}\n")
endmacro()

file(GLOB docs RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/README.md ${SOURCE_DIR}/docs/*.md)
foreach(doc IN LISTS docs)
  file(STRINGS ${SOURCE_DIR}/${doc} lines)
  set(number 0)
  set(in_code FALSE)
  foreach(line IN LISTS lines)
    math(EXPR number "${number} + 1")
    # Code is code: a program's `sessions` member is not the project speaking of itself.
    if(line MATCHES "^```")
      if(in_code)
        set(in_code FALSE)
      else()
        set(in_code TRUE)
      endif()
      continue()
    endif()
    if(in_code)
      continue()
    endif()
    string(REGEX REPLACE "`[^`]*`" "" prose "${line}")
    string(TOLOWER "${prose}" lower)
    if(lower MATCHES "\\.\\./shared|[^a-z]issues?[^a-z]|[^a-z]goals?[^a-z]|[^a-z]sessions?[^a-z]|this machine|seed document")
      fail("${doc}:${number} speaks of the project rather than to users: ${line}")
    endif()
  endforeach()
endforeach()

# The README promises no tool that is not there: each phrase below may appear only once its
# header exists.
file(READ ${SOURCE_DIR}/README.md readme_text)
string(TOLOWER "${readme_text}" readme_lower)
foreach(promise IN ITEMS "leak detector=memory_leak_detector" "object pool=object_pool"
                         "event system=weak_event_system" "ttlweakcache=ttl_weak_cache"
                         "time to live=ttl_weak_cache"
                         "advancedcache=advanced_cache" "eviction polic=advanced_cache"
                         "dataset=dataset_processor" "advancedmemoryprofiler=advanced_memory_profiler")
  string(REPLACE "=" ";" promise "${promise}")
  list(GET promise 0 phrase)
  list(GET promise 1 tool)
  string(FIND "${readme_lower}" "${phrase}" at)
  if(NOT at EQUAL -1 AND NOT EXISTS ${SOURCE_DIR}/include/memlens/tools/${tool}.hpp)
    fail("README.md speaks of '${phrase}', but memlens/tools/${tool}.hpp does not exist")
  endif()
endforeach()

# The map: table rows of README.md that start with a header in backquotes.
file(STRINGS ${SOURCE_DIR}/README.md readme)
file(READ ${SOURCE_DIR}/include/memlens/memlens.hpp umbrella)
set(mapped "")
foreach(line IN LISTS readme)
  if(line MATCHES "^\\| `(memlens/[a-z_/]+\\.hpp)`")
    set(header ${CMAKE_MATCH_1})
    list(APPEND mapped ${header})
    if(NOT EXISTS ${SOURCE_DIR}/include/${header})
      fail("README.md maps ${header}, which does not exist")
    endif()
    if(NOT header MATCHES "^memlens/(memlens|track_new|testing)\\.hpp$")
      string(FIND "${umbrella}" "#include \"${header}\"" included)
      if(included EQUAL -1)
        fail("README.md says memlens/memlens.hpp includes ${header}; it does not")
      endif()
    endif()
  endif()
endforeach()
file(GLOB_RECURSE headers RELATIVE ${SOURCE_DIR}/include
     ${SOURCE_DIR}/include/memlens/*.hpp)
foreach(header IN LISTS headers)
  # Internals, and the two headers every other one includes for itself.
  if(header MATCHES "/detail/|^memlens/(config|fwd)\\.hpp$")
    continue()
  endif()
  if(NOT header IN_LIST mapped)
    fail("README.md's map of the headers lacks ${header}")
  endif()
endforeach()

# The challenges and exercises.
set(challenges "")
if(EXISTS ${SOURCE_DIR}/docs/challenges.md)
  file(READ ${SOURCE_DIR}/docs/challenges.md challenges)
else()
  fail("docs/challenges.md is missing")
endif()
file(GLOB programs RELATIVE ${SOURCE_DIR}
     ${SOURCE_DIR}/tests/challenges/*.cpp ${SOURCE_DIR}/tests/exercises/*.cpp
     ${SOURCE_DIR}/examples/c[0-9][0-9]_*.cpp ${SOURCE_DIR}/examples/e[0-9][0-9]_*.cpp)
foreach(program IN LISTS programs)
  string(FIND "${challenges}" "`${program}`" named)
  if(named EQUAL -1)
    fail("docs/challenges.md does not name ${program}")
  endif()
endforeach()
string(REGEX MATCHALL "`(tests|examples)/[a-z0-9_/]+\\.cpp`" named "${challenges}")
foreach(path IN LISTS named)
  string(REPLACE "`" "" path "${path}")
  if(NOT EXISTS ${SOURCE_DIR}/${path})
    fail("docs/challenges.md names ${path}, which does not exist")
  endif()
endforeach()
foreach(kind IN ITEMS c e)
  if(kind STREQUAL "c")
    set(count 10)
  else()
    set(count 15)
  endif()
  foreach(n RANGE 1 ${count})
    string(LENGTH "${n}" digits)
    set(id "${kind}${n}")
    if(digits EQUAL 1)
      set(id "${kind}0${n}")
    endif()
    if(NOT challenges MATCHES "\n\\| ${id} \\|[^\n]*(tests/[a-z]+/${id}_[a-z0-9_]+\\.cpp|Not built yet)")
      fail("docs/challenges.md has no row for ${id} naming its test or saying it is not built")
    endif()
  endforeach()
endforeach()

if(failures)
  message(FATAL_ERROR "README.md and docs/ do not match the repository:\n${failures}")
endif()
list(LENGTH programs program_count)
message(STATUS "README.md and docs/ match the repository (${program_count} challenge and "
               "exercise programs named)")
