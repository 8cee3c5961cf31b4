# One harness's ctest run (tests/fuzz/CMakeLists.txt): the seed corpus is copied to WORK first,
# since libFuzzer writes the inputs it finds into its corpus folder and the source tree stays
# clean; a crashing input lands in WORK/artifacts/.
#   cmake -DHARNESS=... -DCORPUS=... -DWORK=... -DMAX_LEN=... -DRUNS=... -P short_run.cmake
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/artifacts)
file(COPY ${CORPUS}/ DESTINATION ${WORK}/corpus)
execute_process(
  COMMAND ${HARNESS} -runs=${RUNS} -seed=1 -max_len=${MAX_LEN} -rss_limit_mb=2048 -timeout=30
          -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/ ${WORK}/corpus
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB found ${WORK}/artifacts/*)
  message(FATAL_ERROR "${HARNESS} failed (exit ${rc}); input(s): ${found}\n"
                      "reproduce: ${HARNESS} <input>")
endif()
