# Tests that run the same GoogleTest binaries under mpirun (hg_mpi_test is in tests/CMakeLists.txt).
hg_mpi_test(parallel 4 "Grid*:Comm*:Trace*:PipelineMpi*")
hg_mpi_test(parallel 2 "Comm*:Trace*:PipelineMpi*")
hg_mpi_test(parallel 3 "PipelineMpi*")
hg_mpi_test(data 3 "DataMpi*")
# Pipeline and data-parallel layouts against the single-process reference (each case on a
# sub-communicator of world ranks [0, dp·pp); 6 ranks cover every layout, oversubscribed).
hg_mpi_test(trainer 6 "*PipelineMpi*")
hg_mpi_test(trainer 2 "*PipelineMpi*")
# Tensor-parallel layouts (dp, pp, tp) up to (2, 2, 2) against the single-process reference, each
# on a sub-communicator of world ranks [0, dp·pp·tp).
hg_mpi_test(model 8 "*TensorParallelMpi*")
hg_mpi_test(checkpoint 2 "*TensorParallelMpiSave*")
