// test_layers' own main, in place of tests/support/test_main.cpp's: no layer test communicates
// and this binary never runs under mpirun, so it skips MPI_Init. That costs ~0.4 s per process,
// and ctest starts one process per test: with every operation test run once per backend (/cpu,
// /cuda), the MPI start-up alone would add about half again to the suite's wall time.
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
