# The CTest check meta.ctest_runs_every_test_case, run as `cmake -D... -P check_ctest_entries.cmake`:
# the tests CTest runs are exactly the test cases Catch2 lists.
#
# catch_discover_tests makes one CTest entry per test case, whose command selects it by name. A
# name that CMake or Catch2's command line splits (CMake at ';', Catch2 at ',') would become
# entries that select nothing and pass having run nothing. So this check requires:
#   - no test case name contains ';' or ',';
#   - every CTest entry of the test program selects exactly one test case, and the entries
#     together select each listed test case once (as many entries as test cases);
#   - every CTest entry has a TIMEOUT, so a deadlock fails in minutes.
# Inputs: TESTS (the test program), LIST_ARGS (its option that lists test case names), BUILD_DIR,
# CTEST (the ctest program).
cmake_policy(VERSION 3.20)

set(failures "")
macro(fail)
  string(APPEND failures "  ${ARGV}\n")
endmacro()

# Lines of `text`, each with ';' replaced by "<semicolon>" so that a name holding one stays one item.
function(lines_of text out)
  string(REPLACE ";" "<semicolon>" text "${text}")
  string(REPLACE "\n" ";" text "${text}")
  set(result "")
  foreach(line IN LISTS text)
    if(NOT line STREQUAL "")
      list(APPEND result "${line}")
    endif()
  endforeach()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

execute_process(COMMAND ${TESTS} ${LIST_ARGS} OUTPUT_VARIABLE listed RESULT_VARIABLE status)
lines_of("${listed}" names)
list(LENGTH names case_count)
if(case_count EQUAL 0)
  message(FATAL_ERROR "${TESTS} ${LIST_ARGS} listed no test case (exit ${status})")
endif()
foreach(name IN LISTS names)
  if(name MATCHES "<semicolon>|,")
    fail("test case name holds ';' or ',': \"${name}\"")
  endif()
endforeach()

execute_process(COMMAND ${CTEST} --show-only=json-v1 WORKING_DIRECTORY ${BUILD_DIR}
                OUTPUT_VARIABLE json RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "ctest --show-only=json-v1 failed (exit ${status})")
endif()
string(JSON tests GET "${json}" tests)
string(JSON test_count LENGTH "${tests}")
math(EXPR last "${test_count} - 1")
set(entry_count 0)
set(selected "")
foreach(i RANGE ${last})
  string(JSON entry GET "${tests}" ${i})
  string(JSON entry_name GET "${entry}" name)
  string(JSON properties ERROR_VARIABLE no_properties GET "${entry}" properties)
  set(has_timeout FALSE)
  if(NOT no_properties)
    string(JSON property_count LENGTH "${properties}")
    math(EXPR last_property "${property_count} - 1")
    foreach(p RANGE ${last_property})
      string(JSON property_name GET "${properties}" ${p} name)
      if(property_name STREQUAL "TIMEOUT")
        set(has_timeout TRUE)
      endif()
    endforeach()
  endif()
  if(NOT has_timeout)
    fail("CTest entry \"${entry_name}\" has no TIMEOUT")
  endif()

  string(JSON program ERROR_VARIABLE no_command GET "${entry}" command 0)
  if(no_command OR NOT program STREQUAL TESTS)
    continue()
  endif()
  math(EXPR entry_count "${entry_count} + 1")
  string(JSON argc LENGTH "${entry}" command)
  set(args "")
  math(EXPR last_arg "${argc} - 1")
  foreach(a RANGE 1 ${last_arg})
    string(JSON arg GET "${entry}" command ${a})
    list(APPEND args "${arg}")
  endforeach()
  execute_process(COMMAND ${TESTS} ${args} ${LIST_ARGS} OUTPUT_VARIABLE matched)
  lines_of("${matched}" matched)
  list(LENGTH matched matched_count)
  if(NOT matched_count EQUAL 1)
    fail("CTest entry \"${entry_name}\" runs ${matched_count} test cases, not 1")
  endif()
  list(APPEND selected ${matched})
endforeach()

if(NOT entry_count EQUAL case_count)
  fail("CTest has ${entry_count} entries for ${TESTS}; Catch2 lists ${case_count} test cases")
endif()
list(REMOVE_DUPLICATES selected)
list(LENGTH selected selected_count)
if(NOT selected_count EQUAL case_count)
  fail("CTest's entries run ${selected_count} distinct test cases; Catch2 lists ${case_count}")
endif()

if(failures)
  message(FATAL_ERROR "CTest does not run every test case once:\n${failures}")
endif()
message(STATUS "${entry_count} CTest entries run the ${case_count} test cases Catch2 lists, "
               "each once; every entry has a TIMEOUT")
