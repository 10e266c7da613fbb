# The scaling scripts end to end on a tiny grid (docs/scaling.md), with Debian's Python (numpy,
# matplotlib): the sweep writes a CSV row per point with every column filled and draws its plots;
# compare calibrates, sweeps and prints the planner's error per layout.
if(EXISTS /usr/bin/python3)
  foreach(check sweep compare)
    add_test(NAME scaling.${check}_tiny
      COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/scaling/test_scaling.py ${check}
              --hourglass $<TARGET_FILE:hourglass> --out ${CMAKE_BINARY_DIR}/scaling-test-${check})
    set_tests_properties(scaling.${check}_tiny PROPERTIES
      ENVIRONMENT "${HG_MPI_ENV}" LABELS "scaling;mpi" TIMEOUT 600)
  endforeach()
endif()
