// The process grid of ARCHITECTURE.md §6: world = dp · pp · tp, rank r = (d·pp + p)·tp + t, so
// tensor-parallel ranks are adjacent (same node), then pipeline stages, then data replicas.
//
// Every communicator is created once, here, in a fixed order (tp, then pp, then dp), so every
// rank makes the same sequence of collective MPI_Comm_split calls and none can hang on another
// that splits in a different order. Ranks inside each group are ordered by the coordinate the
// group varies: rank p of pp_comm() is pipeline stage p, so a schedule's `peer_stage` is directly
// a rank of pp_comm().
#pragma once
#include <mpi.h>

namespace hg {

class ProcessGrid {
 public:
  // Collective over `world`. Throws UsageError (on every rank alike) when dp·pp·tp differs from
  // the size of `world` or a factor is < 1. `world` is borrowed, not freed.
  ProcessGrid(int dp, int pp, int tp, MPI_Comm world = MPI_COMM_WORLD);
  ~ProcessGrid();  // frees the three communicators (not collective in MPI, but call it on all
                   // ranks)
  ProcessGrid(const ProcessGrid&) = delete;
  ProcessGrid& operator=(const ProcessGrid&) = delete;

  int dp() const { return dp_; }
  int pp() const { return pp_; }
  int tp() const { return tp_; }
  int rank() const { return rank_; }  // in world
  int size() const { return dp_ * pp_ * tp_; }

  // This rank's coordinates (d, p, t).
  int dp_rank() const { return d_; }
  int stage() const { return p_; }  // = pp_rank
  int tp_rank() const { return t_; }
  bool first_stage() const { return p_ == 0; }
  bool last_stage() const { return p_ == pp_ - 1; }

  // World rank of coordinates (d, p, t) = (d·pp + p)·tp + t.
  int rank_of(int d, int p, int t) const { return (d * pp_ + p) * tp_ + t; }
  // World rank of pipeline stage `p` in this rank's (d, t) pipeline.
  int stage_rank(int p) const { return rank_of(d_, p, t_); }

  MPI_Comm world() const { return world_; }
  MPI_Comm tp_comm() const { return tp_comm_; }  // same (d, p); rank = t; size tp
  MPI_Comm pp_comm() const { return pp_comm_; }  // same (d, t); rank = p; size pp
  MPI_Comm dp_comm() const { return dp_comm_; }  // same (p, t); rank = d; size dp

 private:
  int dp_ = 1, pp_ = 1, tp_ = 1;
  int rank_ = 0, d_ = 0, p_ = 0, t_ = 0;
  MPI_Comm world_ = MPI_COMM_NULL;
  MPI_Comm tp_comm_ = MPI_COMM_NULL;
  MPI_Comm pp_comm_ = MPI_COMM_NULL;
  MPI_Comm dp_comm_ = MPI_COMM_NULL;
};

}  // namespace hg
