# One consumer test, run by ctest as `cmake -D... -P run_consumer.cmake`. MODE picks which:
#   install           fresh configure of memlens (library only), `cmake --install` into PREFIX
#   add_subdirectory  add_subdirectory/ builds memlens as its subproject
#   find_package      find_package/ finds the memlens installed in PREFIX
#   pkg-config        main.cpp compiled by hand with `pkg-config --cflags --libs memlens`
#   hidden_visibility hidden_visibility/ (through add_subdirectory): a program and a shared library
#                     built with hidden visibility share memlens objects; the library is linked
#                     (consumer) or loaded with dlopen by a program exporting nothing
#                     (consumer_dlopen)
#   strict            strict/ (through add_subdirectory): every public header alone, all of them
#                     with track_new.hpp in a program, and every name of the public contract
#                     through memlens/memlens.hpp alone, under -Wall -Wextra -Wpedantic
#                     -Wconversion -Wsign-conversion -Wshadow -Werror, at -O0 and at -O2, with
#                     the compiler CXX names
# Every mode but install then runs the consumer(s), which exit 0 only if memlens works.
cmake_policy(VERSION 3.20)

macro(run)
  execute_process(COMMAND ${ARGV} COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
endmacro()

set(build ${WORK_DIR}/${MODE}${SUFFIX})
# Always from scratch: a cache left by an earlier run could hide a broken package.
file(REMOVE_RECURSE ${build})
set(configure ${CMAKE_COMMAND} -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE ${PREFIX})
  run(${configure} -S ${MEMLENS_SOURCE_DIR} -B ${build} -DCMAKE_INSTALL_PREFIX=${PREFIX}
      -DMEMLENS_BUILD_TESTS=OFF -DMEMLENS_BUILD_EXAMPLES=OFF -DMEMLENS_BUILD_BENCHMARKS=OFF)
  run(${CMAKE_COMMAND} --install ${build})
  return()
elseif(MODE STREQUAL "add_subdirectory")
  run(${configure} -S ${CONSUMERS_DIR}/add_subdirectory -B ${build}
      -DMEMLENS_SOURCE_DIR=${MEMLENS_SOURCE_DIR})
  run(${CMAKE_COMMAND} --build ${build})
elseif(MODE STREQUAL "hidden_visibility")
  run(${configure} -S ${CONSUMERS_DIR}/hidden_visibility -B ${build}
      -DMEMLENS_SOURCE_DIR=${MEMLENS_SOURCE_DIR})
  run(${CMAKE_COMMAND} --build ${build})
  # Both programs run, whatever the first one says: each failure tells something of its own.
  set(failed)
  foreach(program IN ITEMS consumer consumer_dlopen)
    execute_process(COMMAND ${build}/${program} COMMAND_ECHO STDOUT RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
      list(APPEND failed "${program} (${result})")
    endif()
  endforeach()
  if(failed)
    message(FATAL_ERROR "hidden_visibility: failed: ${failed}")
  endif()
  return()
elseif(MODE STREQUAL "strict")
  # Optimization changes what g++ warns about (-Wmismatched-new-delete needs inlining).
  foreach(level IN ITEMS -O0 -O2)
    set(dir ${build}/${level})
    run(${configure} -S ${CONSUMERS_DIR}/strict -B ${dir} -DCMAKE_CXX_FLAGS=${level}
        -DMEMLENS_SOURCE_DIR=${MEMLENS_SOURCE_DIR})
    file(READ ${dir}/compile_commands.json commands)
    string(FIND "${commands}" "-isystem ${MEMLENS_SOURCE_DIR}/include" sheltered)
    string(FIND "${commands}" "-I${MEMLENS_SOURCE_DIR}/include" plain)
    if(NOT sheltered EQUAL -1 OR plain EQUAL -1)
      message(FATAL_ERROR "strict: memlens' headers must reach the compiler with -I, not -isystem")
    endif()
    run(${CMAKE_COMMAND} --build ${dir})
    run(${dir}/everything)
    run(${dir}/contract)
  endforeach()
  return()
elseif(MODE STREQUAL "find_package")
  run(${configure} -S ${CONSUMERS_DIR}/find_package -B ${build} -DCMAKE_PREFIX_PATH=${PREFIX})
  run(${CMAKE_COMMAND} --build ${build})
elseif(MODE STREQUAL "pkg-config")
  set(ENV{PKG_CONFIG_PATH} ${PREFIX}/share/pkgconfig)
  foreach(kind IN ITEMS cflags libs)
    execute_process(COMMAND ${PKG_CONFIG} --${kind} memlens OUTPUT_VARIABLE ${kind}
                    OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
    separate_arguments(${kind} UNIX_COMMAND "${${kind}}")
  endforeach()
  # The same flags as the CMake target: tracemalloc walks frame pointers.
  if(NOT "-fno-omit-frame-pointer" IN_LIST cflags)
    message(FATAL_ERROR "pkg-config: --cflags lacks -fno-omit-frame-pointer: ${cflags}")
  endif()
  file(MAKE_DIRECTORY ${build})
  run(${LAUNCHER} ${CXX} ${cflags} ${CONSUMERS_DIR}/main.cpp -o ${build}/consumer ${libs})
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

run(${build}/consumer)
