# The batch templates of slurm/ on a real one-node Slurm (tests/slurm/test_slurm_templates.sh).
# The test starts the local Slurm (scripts/slurm_local.sh) and stops it again; it needs root and
# ports 6817/6818, so only one instance runs at a time. Exit 77 = skipped (not root).
add_test(NAME slurm.templates
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_slurm_templates.sh $<TARGET_FILE:hourglass>)
set_tests_properties(slurm.templates PROPERTIES
  LABELS "slurm;mpi" TIMEOUT 400 SKIP_RETURN_CODE 77 RESOURCE_LOCK local_slurm)
