# Runs a fuzz target once over each file in DIR (libFuzzer executes files given as arguments
# once each and exits non-zero if any crashes). An empty folder passes: given no file, libFuzzer
# would start fuzzing instead.
#   cmake -DFUZZER=build-fuzz/test/fuzz/fuzz_http -DDIR=test/fuzz/regressions/http \
#         -P test/fuzz/run_regressions.cmake
file(GLOB inputs LIST_DIRECTORIES false "${DIR}/*")
list(FILTER inputs EXCLUDE REGEX "/(README[^/]*|\\.[^/]*)$")
list(LENGTH inputs count)
if(count EQUAL 0)
  message(STATUS "no reproducers in ${DIR}")
  return()
endif()
message(STATUS "${count} reproducer(s) in ${DIR}")
execute_process(COMMAND ${FUZZER} ${inputs} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${rc}) on a reproducer in ${DIR}")
endif()
