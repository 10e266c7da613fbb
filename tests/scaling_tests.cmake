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

# The sweep's srun path: the tiny grid inside `salloc --ntasks 2` on the local one-node Slurm
# (scripts/slurm_local.sh, as slurm.templates does; root only, exit 77 = skipped).
add_test(NAME scaling.sweep_tiny_slurm
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/scaling/test_sweep_slurm.sh $<TARGET_FILE:hourglass>
          ${CMAKE_BINARY_DIR}/scaling-test-sweep-slurm)
set_tests_properties(scaling.sweep_tiny_slurm PROPERTIES
  LABELS "scaling;slurm;mpi" TIMEOUT 400 SKIP_RETURN_CODE 77 RESOURCE_LOCK local_slurm)
