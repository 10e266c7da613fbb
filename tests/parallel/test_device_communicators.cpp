// The communicators of run.device cuda over device buffers (docs/cuda.md, "Which communicator"):
// MPI staged through host memory (staged_communicator.h) and NCCL (nccl_communicator.h), with
// the expectations of the host communicator's tests (test_communicator.cpp). They skip without a
// CUDA device (CI's main build); in the emulated build (scripts/sanitizers.sh) the device is the
// guarded arena and NCCL is the emulation's MPI-based one (tests/cuda_emulation/runtime/nccl.h):
// that checks the staging and the NCCL calls' arguments, blocks and roots, not a GPU. CTest runs
// them under mpirun -np 2 and 4 (tests/mpi_tests.cmake: "Comm*"); world ranks 0 and 1 exchange.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "layers/backend.h"
#include "parallel/comm.h"
#include "parallel/communicator.h"
#include "parallel/staged_communicator.h"
#include "tests/support/backends.h"
#include "tests/support/mpi_groups.h"
#ifdef HG_HAVE_CUDA
#include "parallel/nccl_communicator.h"
#endif

namespace hg {
namespace {

using testing::to_host;
using testing::world_rank;
using testing::world_size;

Tensor on_device(const std::vector<float>& values) {
  return testing::on_device(values, Device::Cuda);
}

// World ranks 0 and 1 as a group, over device memory through the communicator named by the
// parameter. Collective over world (the split and NCCL's creation), so every rank sets up.
class CommOnDevice : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string why = unavailable_reason(Device::Cuda);
    if (!why.empty()) GTEST_SKIP() << "cuda: " << why;
    if (world_size() < 2) GTEST_SKIP() << "needs 2 MPI ranks (mpirun -np 2), has " << world_size();
    backend_for(Device::Cuda);  // registers device memory
    pair_mpi_ = comm::split(MPI_COMM_WORLD, world_rank() < 2 ? 0 : MPI_UNDEFINED, world_rank());
    if (pair_mpi_ == MPI_COMM_NULL) return;
    if (GetParam() == "nccl") {
#ifdef HG_HAVE_CUDA
      pair_ = make_nccl_communicator(pair_mpi_);
#endif
    } else {
      pair_ = make_host_staged(make_mpi_communicator(pair_mpi_), Device::Cuda);
    }
  }
  void TearDown() override {
    pair_.reset();
    if (pair_mpi_ != MPI_COMM_NULL) MPI_Comm_free(&pair_mpi_);
  }
  MPI_Comm pair_mpi_ = MPI_COMM_NULL;
  std::shared_ptr<Communicator> pair_;  // null on world ranks >= 2
};

TEST_P(CommOnDevice, AllReduceSumsDeviceBuffers) {
  if (!pair_) return;
  EXPECT_EQ(pair_->memory(), Device::Cuda);
  const int r = pair_->rank();
  Tensor x = on_device({float(r + 1), 0.25f, -1.0f});
  ASSERT_TRUE(pair_->allreduce_sum(x.data(), 3, "all-reduce test"));
  EXPECT_EQ(to_host(x), (std::vector<float>{3.0f, 0.5f, -2.0f}));
  std::vector<float> values(5000);
  std::iota(values.begin(), values.end(), float(r));
  Tensor big = on_device(values);
  Pending sum = pair_->iallreduce_sum(big.data(), 5000, "all-reduce test (non-blocking)");
  ASSERT_TRUE(pair_->wait(sum));
  EXPECT_TRUE(sum.done());
  const std::vector<float> summed = to_host(big);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(summed[i], float(2 * i + 1));
}

// ZeRO-1's uneven blocks (3 for rank 0, 2 for rank 1): NCCL runs them as one ncclReduce and one
// ncclBroadcast per block, since ncclReduceScatter and ncclAllGather need equal blocks.
TEST_P(CommOnDevice, ReduceScatterAndAllGatherUnevenBlocks) {
  if (!pair_) return;
  const int r = pair_->rank();
  const std::vector<int> counts = {3, 2}, displacements = {0, 3};
  std::vector<float> x = {1, 2, 3, 4, 5};
  for (float& v : x) v *= float(r + 1);
  Tensor data = on_device(x), shard = on_device({-1, -1, -1});
  Pending scatter = pair_->ireduce_scatter_sum(data.data(), shard.data(), counts, "scatter test");
  ASSERT_TRUE(pair_->wait(scatter));
  EXPECT_EQ(to_host(shard), r == 0 ? std::vector<float>({3, 6, 9}) : std::vector<float>({12, 15, -1}));
  std::vector<float> mine(5, 0.0f);
  for (int i = 0; i < counts[r]; ++i) mine[displacements[r] + i] = float(10 * r + i);
  Tensor gathered = on_device(mine);
  Pending gather = pair_->iallgather(gathered.data(), counts, displacements, "gather test");
  ASSERT_TRUE(pair_->wait(gather));
  EXPECT_EQ(to_host(gathered), (std::vector<float>{0, 1, 2, 10, 11}));
}

// One message each way; NCCL matches by order, so each rank receives what it was sent first.
TEST_P(CommOnDevice, SendAndReceiveDeviceBuffers) {
  if (!pair_) return;
  const int r = pair_->rank(), peer = 1 - r;
  std::vector<float> mine(1000);
  std::iota(mine.begin(), mine.end(), float(r * 1000));
  Tensor out = on_device(mine), in = on_device(std::vector<float>(1000, -1.0f));
  // Rank 0 sends first, rank 1 receives first: in order on both sides, even one at a time.
  Pending send, recv;
  if (r == 0) {
    send = pair_->isend(out.data(), 1000, peer, 3, "send test");
    ASSERT_TRUE(pair_->wait(send));
    recv = pair_->irecv(in.data(), 1000, peer, 3, "recv test");
  } else {
    recv = pair_->irecv(in.data(), 1000, peer, 3, "recv test");
    ASSERT_TRUE(pair_->wait(recv));
    send = pair_->isend(out.data(), 1000, peer, 3, "send test");
  }
  ASSERT_TRUE(pair_->wait(send));
  ASSERT_TRUE(pair_->wait(recv));
  std::vector<float> expected(1000);
  std::iota(expected.begin(), expected.end(), float(peer * 1000));
  EXPECT_EQ(to_host(in), expected);
}

#ifdef HG_CUDA_EMULATED
// A host buffer given to a device communicator: on a GPU, NCCL or the staging copy would fault;
// the emulated device refuses it with an error before any rank communicates.
TEST_P(CommOnDevice, RefusesAHostBuffer) {
  if (!pair_) return;
  std::vector<float> host(4, 1.0f);
  EXPECT_ANY_THROW(pair_->iallreduce_sum(host.data(), 4, "host buffer"));
}
#endif

#ifdef HG_HAVE_CUDA
// NCCL over one rank, which a single GPU can run (two ranks on one GPU it refuses): the stream,
// the events before and after each op, the grouped per-block reduce and broadcast, the wait with
// its timeout. The device check (scripts/device_check.sh) runs it on the GPU; every result is the
// input, exactly.
TEST(CommOnDeviceNccl, OneRankRunsEveryCollective) {
  if (!unavailable_reason(Device::Cuda).empty()) GTEST_SKIP() << "no CUDA device";
  backend_for(Device::Cuda);
  const std::shared_ptr<Communicator> one = make_nccl_communicator(MPI_COMM_SELF);
  EXPECT_STREQ(one->name(), "nccl");
  EXPECT_EQ(one->memory(), Device::Cuda);
  std::vector<float> values(3000);
  std::iota(values.begin(), values.end(), -7.0f);
  Tensor x = on_device(values);
  ASSERT_TRUE(one->allreduce_sum(x.data(), 3000, "one-rank all-reduce"));
  EXPECT_EQ(to_host(x), values);
  Pending sum = one->iallreduce_sum(x.data(), 3000, "one-rank all-reduce (non-blocking)");
  ASSERT_TRUE(one->wait(sum));
  EXPECT_TRUE(one->test(sum));
  EXPECT_EQ(to_host(x), values);
  const std::vector<int> counts = {3000}, displacements = {0};
  Tensor shard = on_device(std::vector<float>(3000, -1.0f));
  Pending scatter = one->ireduce_scatter_sum(x.data(), shard.data(), counts, "one-rank scatter");
  ASSERT_TRUE(one->wait(scatter));
  EXPECT_EQ(to_host(shard), values);
  Pending gather = one->iallgather(shard.data(), counts, displacements, "one-rank gather");
  ASSERT_TRUE(one->wait(gather));
  EXPECT_EQ(to_host(shard), values);
}

// World ranks 0 and 1 joined by the pipeline's NCCL communicator (one NCCL communicator per
// direction of the pair); null on the other ranks. Collective over world.
class CommOnDeviceNcclPair : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!unavailable_reason(Device::Cuda).empty()) GTEST_SKIP() << "no CUDA device";
    if (world_size() < 2) GTEST_SKIP() << "needs 2 MPI ranks";
    backend_for(Device::Cuda);
    pair_mpi_ = comm::split(MPI_COMM_WORLD, world_rank() < 2 ? 0 : MPI_UNDEFINED, world_rank());
    if (pair_mpi_ != MPI_COMM_NULL) pp_ = make_nccl_pipeline_communicator(pair_mpi_);
  }
  void TearDown() override {
    pp_.reset();
    if (pair_mpi_ != MPI_COMM_NULL) MPI_Comm_free(&pair_mpi_);
  }
  MPI_Comm pair_mpi_ = MPI_COMM_NULL;
  std::shared_ptr<Communicator> pp_;
};

// Messages match in the order sent, whatever their tags; both directions at once; no
// collectives.
TEST_F(CommOnDeviceNcclPair, PipelinePairsMatchInSendOrder) {
  if (!pp_) return;
  EXPECT_TRUE(pp_->matches_in_order());
  const int r = pp_->rank(), peer = 1 - r;
  Tensor small = on_device({float(r), 1.0f, 2.0f}),
         big = on_device(std::vector<float>(1000, float(r + 5)));
  Tensor got_small = on_device({-1, -1, -1}), got_big = on_device(std::vector<float>(1000, -1.0f));
  // Both ranks send at once (two directions, two streams), the tags differ from the receives'.
  Pending sends[2] = {pp_->isend(small.data(), 3, peer, 7, "send small"),
                      pp_->isend(big.data(), 1000, peer, 8, "send big")};
  Pending recvs[2] = {pp_->irecv(got_small.data(), 3, peer, 100, "recv small"),
                      pp_->irecv(got_big.data(), 1000, peer, 200, "recv big")};
  for (Pending& p : recvs) ASSERT_TRUE(pp_->wait(p));
  for (Pending& p : sends) ASSERT_TRUE(pp_->wait(p));
  EXPECT_EQ(to_host(got_small), (std::vector<float>{float(peer), 1.0f, 2.0f}));
  EXPECT_EQ(to_host(got_big), std::vector<float>(1000, float(peer + 5)));
  EXPECT_THROW(pp_->allreduce_sum(small.data(), 3, "no collectives"), std::logic_error);
}

// No NCCL wait is endless either: a receive its peer never sends ends at parallel.timeout with
// comm.h's message naming the op, the peer (a world rank) and the tag, after ncclCommAbort has
// ended the op (on the emulated device: its MPI receive cancelled). Later use of the aborted
// direction throws.
TEST_F(CommOnDeviceNcclPair, AReceiveNobodySendsTimesOutNamingItsPeer) {
  if (!pp_ || pp_->rank() != 1) return;
  Tensor never = on_device({-1.0f, -1.0f});
  std::string message;
  {
    testing::RecordedTimeouts recorded(0.2);
    Pending stuck = pp_->irecv(never.data(), 2, 0, 5, "recv nothing");
    EXPECT_FALSE(pp_->wait(stuck));
    EXPECT_TRUE(stuck.done());
    message = testing::RecordedTimeouts::message();
    EXPECT_EQ(testing::RecordedTimeouts::calls(), 1);
  }
  EXPECT_NE(message.find("rank 1: timed out after "), std::string::npos) << message;
  EXPECT_NE(message.find("waiting for recv nothing with peer 0 (tag 5)"), std::string::npos)
      << message;
  EXPECT_EQ(to_host(never), (std::vector<float>{-1.0f, -1.0f}));  // nothing arrived
  EXPECT_THROW(pp_->irecv(never.data(), 2, 0, 6, "after the abort"), std::runtime_error);
}
#endif

INSTANTIATE_TEST_SUITE_P(, CommOnDevice, ::testing::Values("mpi", "nccl"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace hg
