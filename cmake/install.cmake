# `cmake --install BUILD --prefix P` (issue 18): the binary in P/bin, and under
# P/share/hourglass what a user runs beside it: the Slurm templates, configs, the scripts users
# call (quick start, plotting, scaling) and the bundled corpus the quick start trains on.
# Scripts find P/bin/hourglass relative to themselves (scripts/quickstart.sh,
# scripts/scaling/hourglass_binary.py); the Slurm templates cannot, because sbatch runs a copy of
# the script from its spool directory, so their default binary is written into them here.
include(GNUInstallDirs)
set(HG_INSTALL_SHARE ${CMAKE_INSTALL_DATADIR}/hourglass)

# The build tree's RUNPATH (CUDA's lib, HDF5's serial directory, Open MPI's) is what makes the
# binary start at all: CMake drops it on install unless told to keep the linked directories.
set_target_properties(hourglass PROPERTIES INSTALL_RPATH_USE_LINK_PATH TRUE)
install(TARGETS hourglass RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(DIRECTORY configs/ DESTINATION ${HG_INSTALL_SHARE}/configs)
install(FILES data/corpus/common-licenses.txt data/corpus/README.md
        DESTINATION ${HG_INSTALL_SHARE}/data/corpus)
install(PROGRAMS scripts/quickstart.sh scripts/plot_metrics.py
        DESTINATION ${HG_INSTALL_SHARE}/scripts)
install(PROGRAMS scripts/scaling/sweep scripts/scaling/compare
        DESTINATION ${HG_INSTALL_SHARE}/scripts/scaling)
install(FILES scripts/scaling/hourglass_binary.py scripts/scaling/local.ini
              scripts/scaling/h100_64x8.ini
        DESTINATION ${HG_INSTALL_SHARE}/scripts/scaling)
install(FILES slurm/README.md DESTINATION ${HG_INSTALL_SHARE}/slurm)

# The templates with their default binary replaced by the installed one (the prefix is known
# only at install time: `--prefix` overrides CMAKE_INSTALL_PREFIX then).
install(CODE "set(HG_SLURM_SOURCE \"${CMAKE_SOURCE_DIR}/slurm\")
              set(HG_SLURM_DESTINATION \"${HG_INSTALL_SHARE}/slurm\")
              set(HG_BINARY_DESTINATION \"${CMAKE_INSTALL_BINDIR}\")")
install(SCRIPT cmake/install_slurm_templates.cmake)
