# Runs at install time (cmake/install.cmake): copies slurm/*.sbatch into the installed tree with
# `HOURGLASS=${HOURGLASS:-hourglass}` (the binary on PATH) replaced by the installed binary's
# absolute path, so that `sbatch P/share/hourglass/slurm/train_single_node.sbatch ...` runs
# P/bin/hourglass without PATH or HOURGLASS set. DESTDIR (staged installs) is honoured.
set(default_line [=[HOURGLASS=${HOURGLASS:-hourglass}]=])
set(binary "${CMAKE_INSTALL_PREFIX}/${HG_BINARY_DESTINATION}/hourglass")
set(destination "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/${HG_SLURM_DESTINATION}")
file(GLOB templates "${HG_SLURM_SOURCE}/*.sbatch")
foreach(template ${templates})
  file(READ "${template}" text)
  string(FIND "${text}" "${default_line}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${template} has no line '${default_line}' to point at ${binary}")
  endif()
  string(REPLACE "${default_line}" "HOURGLASS=\${HOURGLASS:-${binary}}" text "${text}")
  get_filename_component(name "${template}" NAME)
  message(STATUS "Installing: ${destination}/${name} (HOURGLASS defaults to ${binary})")
  file(WRITE "${destination}/${name}" "${text}")
  file(CHMOD "${destination}/${name}" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
       GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()
