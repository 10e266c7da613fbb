# Tests that run the same GoogleTest binaries under mpirun (hg_mpi_test is in tests/CMakeLists.txt).
hg_mpi_test(parallel 4 "Grid*:Comm*:Trace*:PipelineMpi*")
hg_mpi_test(parallel 2 "Comm*:Trace*:PipelineMpi*")
hg_mpi_test(parallel 3 "PipelineMpi*")
hg_mpi_test(data 3 "DataMpi*")
