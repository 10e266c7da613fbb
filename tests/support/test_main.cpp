// One GoogleTest main for every test binary: it initialises MPI so that the same binary runs
// serially (1 rank) or under mpirun; multi-rank tests GTEST_SKIP() when the world is too small.
#include <gtest/gtest.h>
#include <mpi.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace {

// Open MPI 4.1 keeps every job's session directory under one per-user top directory
// (/tmp/ompi.<host>.<uid>), which each job creates and, when empty, removes on exit. Under
// `ctest -j` two starting or ending jobs race on it ("mkdir /tmp/ompi.vm.0: File exists").
// A test process not started by mpirun gets a top directory of its own; the mpirun commands its
// tests start take it too (tests/support/run_command.cpp). Returns it, to be removed at exit.
std::string own_open_mpi_session_base() {
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("OMPI_MCA_orte_tmpdir_base")) return "";
  std::string pattern = (std::filesystem::temp_directory_path() / "hg-ompi-XXXXXX").string();
  if (!mkdtemp(pattern.data())) return "";  // then Open MPI's default, as before
  setenv("OMPI_MCA_orte_tmpdir_base", pattern.c_str(), 1);
  return pattern;
}

}  // namespace

int main(int argc, char** argv) {
  std::string session_base = own_open_mpi_session_base();
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    // Only rank 0 prints results; the others still run every test (collectives need them).
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  std::error_code ignored;
  if (!session_base.empty()) std::filesystem::remove_all(session_base, ignored);
  return any_failed;
}
