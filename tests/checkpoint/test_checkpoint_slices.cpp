// Tensor-parallel saves (docs/checkpoints.md): every rank of a stage's tensor-parallel group
// writes its own slices as hyperslabs (heads as one column or row block, MatFormer FFN bands as
// one block per band), and the file is the canonical checkpoint, bit for bit, that one process
// writes. Runs under mpirun (the "*TensorParallelMpi*" filter of tests/mpi_tests.cmake) on a
// sub-communicator of 2 ranks; skipped on one process.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <string>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_io.h"
#include "checkpoint/checkpoint_store.h"
#include "model/stage_model.h"
#include "model/tensor_parallel.h"
#include "parallel/comm.h"
#include "parallel/communicator.h"
#include "parallel/grid.h"
#include "tests/support/run_command.h"
#include "tests/support/tiny_models.h"

namespace hg {
namespace {

// 4 heads, MatFormer joint at widths 32, 16, 8: every FFN tensor is split band by band, so each
// rank writes 3 blocks per FFN tensor.
const char* kIni =
    "[model]\nvocab_size = 16\nd_model = 16\nheads = 4\nffn = 32\nwindow = 8\nchunk = 4\n"
    "rank = 2\nhierarchy = 1@1 2@3 1@1\nffn_granularities = 1,2,4\n"
    "[train]\nseq_len = 24\nbatch = 4\nmicro_batch = 1\nmatformer = joint\n";

// A canonical checkpoint whose every value differs: the init, and moments derived from it.
CheckpointData canonical_checkpoint(const Config& config) {
  StageModel full(config.model, config.train.seq_len);
  full.params().init_all(config.train.seed);
  CheckpointData data;
  export_params(full.params(), data, true);
  for (auto& [name, v] : data.params) {
    Tensor& m = data.exp_avg.at(name);
    Tensor& s = data.exp_avg_sq.at(name);
    for (int64_t i = 0; i < v.numel(); ++i) {
      m[i] = 0.5f * v[i] + 1e-3f * static_cast<float>(i % 101);
      s[i] = 1e-4f * static_cast<float>(1 + i % 89);
    }
  }
  data.config = config.to_ini();
  data.step = 3;
  return data;
}

TEST(TensorParallelMpiSave, EachRankWritesItsSlicesIntoTheCanonicalFile) {
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  if (world_size < 2) GTEST_SKIP() << "needs 2 MPI ranks, has " << world_size;
  MPI_Comm pair = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < 2 ? 0 : MPI_UNDEFINED, world_rank, &pair);
  if (pair != MPI_COMM_NULL) {
    Config config = testing::tiny_config(kIni);
    config.parallel.tp = 2;
    // One directory for both ranks: rank 0's name, broadcast.
    testing::TempDir dir;
    std::string base = dir.path();
    int64_t length = static_cast<int64_t>(base.size());
    MPI_Bcast(&length, 1, MPI_INT64_T, 0, pair);
    base.resize(static_cast<size_t>(length));
    MPI_Bcast(base.data(), static_cast<int>(length), MPI_CHAR, 0, pair);

    const std::string original = base + "/original.h5";
    const CheckpointData expected = canonical_checkpoint(config);
    if (world_rank == 0) write_checkpoint(original, expected);
    comm::barrier(pair);

    ProcessGrid grid(1, 1, 2, pair);
    const GridCommunicators comms = make_mpi_communicators(grid);
    StageModel model(config.model, config.train.seq_len, 0, -1,
                     make_tensor_parallel(grid, comms, trained_granularities(config)));
    int sharded = 0;
    for (const auto& [name, p] : model.params().all()) sharded += p.slice.sharded();
    EXPECT_GT(sharded, 10) << "the model should have many tensor-parallel slices";
    EXPECT_EQ(load_checkpoint(original, model.params(), true, grid, "test"), 3);
    const std::string saved = save_checkpoint(base + "/saved", 3, expected.config,
                                              model.params(), grid);

    if (world_rank == 0) {
      const CheckpointCheck check = verify_checkpoint(saved);
      EXPECT_TRUE(check.valid) << check.problem;
      EXPECT_EQ(check.checksummed, check.tensors);
      const CheckpointData got = read_checkpoint(saved);
      EXPECT_EQ(got.step, 3);
      ASSERT_EQ(got.params.size(), expected.params.size());
      for (const TensorMap CheckpointData::*group :
           {&CheckpointData::params, &CheckpointData::exp_avg, &CheckpointData::exp_avg_sq})
        for (const auto& [name, t] : expected.*group) {
          const Tensor& u = (got.*group).at(name);
          ASSERT_EQ(t.shape(), u.shape()) << name;
          EXPECT_EQ(0, std::memcmp(t.data(), u.data(), sizeof(float) * t.numel())) << name;
        }
    }
    comm::barrier(pair);
    MPI_Comm_free(&pair);
  }
  comm::barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace hg
