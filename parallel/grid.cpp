#include "parallel/grid.h"

#include <string>

#include "core/error.h"
#include "parallel/comm.h"

namespace hg {

ProcessGrid::ProcessGrid(int dp, int pp, int tp, MPI_Comm world)
    : dp_(dp), pp_(pp), tp_(tp), world_(world) {
  int world_size = 0;
  MPI_Comm_rank(world, &rank_);
  MPI_Comm_size(world, &world_size);
  require(dp >= 1 && pp >= 1 && tp >= 1,
          "parallel.dp, parallel.pp and parallel.tp must be >= 1 (got dp = " + std::to_string(dp) +
              ", pp = " + std::to_string(pp) + ", tp = " + std::to_string(tp) + ")");
  require(dp * pp * tp == world_size,
          "parallel.dp · parallel.pp · parallel.tp = " + std::to_string(dp) + " · " +
              std::to_string(pp) + " · " + std::to_string(tp) + " = " +
              std::to_string(dp * pp * tp) + " but the job has " + std::to_string(world_size) +
              " MPI ranks: launch with mpirun -np " + std::to_string(dp * pp * tp) +
              " or change the layout so that the product equals " + std::to_string(world_size));
  t_ = rank_ % tp;
  p_ = (rank_ / tp) % pp;
  d_ = rank_ / (tp * pp);
  // Fixed order on every rank: tp, pp, dp. The key orders each group by its varying coordinate.
  tp_comm_ = comm::split(world, d_ * pp + p_, t_, "split tensor-parallel groups");
  pp_comm_ = comm::split(world, d_ * tp + t_, p_, "split pipeline groups");
  dp_comm_ = comm::split(world, p_ * tp + t_, d_, "split data-parallel groups");
}

ProcessGrid::~ProcessGrid() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;  // freeing after MPI_Finalize is erroneous; the communicators are gone
  for (MPI_Comm* comm : {&dp_comm_, &pp_comm_, &tp_comm_})
    if (*comm != MPI_COMM_NULL) MPI_Comm_free(comm);
}

}  // namespace hg
