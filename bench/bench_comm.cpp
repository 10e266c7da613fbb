// Point-to-point and all-reduce costs through hg::comm (the trainer's waits, with their back-off),
// for the planner's cluster description (docs/scaling.md):
//   mpirun -np 2 build/bench/bench_comm
// prints one-way message time and ring all-reduce time per size, then the latency and bandwidth
// that fit them, as [cluster] lines.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "parallel/comm.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 2) {
    if (rank == 0) std::fprintf(stderr, "bench_comm: run under mpirun -np 2 (or more)\n");
    MPI_Finalize();
    return 2;
  }
  const int repeats = 30;
  std::vector<int64_t> counts;
  for (int64_t n = 1; n <= (int64_t{1} << 22); n *= 8) counts.push_back(n);
  if (rank == 0)
    std::printf("%12s %14s %14s %16s\n", "bytes", "one-way (us)", "GB/s", "allreduce (us)");
  double small_p2p = 0, big_p2p = 0, small_ar = 0;
  int64_t big_bytes = 0;
  for (int64_t n : counts) {
    std::vector<float> buf(n, 1.0f);
    std::vector<double> p2p, ar;
    for (int r = 0; r < repeats + 2; ++r) {
      hg::comm::barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      if (rank == 0) {
        auto s = hg::comm::isend(buf.data(), n, 1, 7, MPI_COMM_WORLD);
        hg::comm::wait(s);
        auto q = hg::comm::irecv(buf.data(), n, 1, 8, MPI_COMM_WORLD);
        hg::comm::wait(q);
      } else if (rank == 1) {
        auto q = hg::comm::irecv(buf.data(), n, 0, 7, MPI_COMM_WORLD);
        hg::comm::wait(q);
        auto s = hg::comm::isend(buf.data(), n, 0, 8, MPI_COMM_WORLD);
        hg::comm::wait(s);
      }
      const double rtt = MPI_Wtime() - t0;
      hg::comm::barrier(MPI_COMM_WORLD);
      t0 = MPI_Wtime();
      hg::comm::allreduce_sum(buf.data(), n, MPI_COMM_WORLD);
      const double reduce = MPI_Wtime() - t0;
      if (r >= 2) {
        p2p.push_back(rtt / 2);
        ar.push_back(reduce);
      }
    }
    const double one_way = median(p2p), reduce = median(ar);
    const int64_t bytes = n * 4;
    if (n == counts.front()) {
      small_p2p = one_way;
      small_ar = reduce;
    }
    big_p2p = one_way;
    big_bytes = bytes;
    if (rank == 0)
      std::printf("%12ld %14.1f %14.2f %16.1f\n", long(bytes), one_way * 1e6,
                  bytes / one_way / 1e9, reduce * 1e6);
  }
  if (rank == 0) {
    const double bandwidth = big_bytes / std::max(big_p2p - small_p2p, 1e-9);
    std::printf("\n# for the planner (%d ranks on this node):\n[cluster]\nintra_bandwidth = %.3g\n"
                "intra_latency = %.3g\n# a small all-reduce took %.1f us (the model: 2(n-1) x "
                "latency = %.1f us)\n",
                size, bandwidth, small_p2p, small_ar * 1e6, 2.0 * (size - 1) * small_p2p * 1e6);
  }
  MPI_Finalize();
  return 0;
}
