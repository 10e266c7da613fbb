// The Communicator (parallel/communicator.h) over MPI. Serially (1 rank) the tests that need a
// partner skip; CTest also runs them under mpirun -np 2 and 4 (tests/mpi_tests.cmake: "Comm*").
// Every exchange is between world ranks 0 and 1, on a communicator of those two only, so the
// other ranks of a larger run pass through.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/communicator.h"
#include "parallel/grid.h"
#include "tests/support/mpi_groups.h"

namespace hg {
namespace {

using testing::world_rank;
using testing::world_size;

// World ranks 0 and 1 as their own group (rank = world rank); null elsewhere. Collective over
// world, so every rank calls it before deciding to skip.
class CommunicatorPair : public ::testing::Test {
 protected:
  void SetUp() override {
    pair_mpi_ = comm::split(MPI_COMM_WORLD, world_rank() < 2 ? 0 : MPI_UNDEFINED, world_rank());
    if (world_size() < 2) GTEST_SKIP() << "needs 2 MPI ranks (mpirun -np 2), has " << world_size();
    if (pair_mpi_ != MPI_COMM_NULL) pair_ = make_mpi_communicator(pair_mpi_);
  }
  void TearDown() override {
    pair_.reset();
    if (pair_mpi_ != MPI_COMM_NULL) MPI_Comm_free(&pair_mpi_);
  }
  MPI_Comm pair_mpi_ = MPI_COMM_NULL;
  std::shared_ptr<Communicator> pair_;  // null on world ranks >= 2
};

TEST(Communicator, MpiOverOneRankSendsToItself) {
  const std::shared_ptr<Communicator> self = make_mpi_communicator(MPI_COMM_SELF);
  EXPECT_STREQ(self->name(), "mpi");
  EXPECT_EQ(self->rank(), 0);
  EXPECT_EQ(self->size(), 1);
  std::vector<float> out = {1.5f, -2.0f, 3.25f}, in(3, 0.0f);
  Pending recv = self->irecv(in.data(), 3, 0, 4, "recv from self");
  Pending send = self->isend(out.data(), 3, 0, 4, "send to self");
  EXPECT_TRUE(self->wait(send));
  EXPECT_TRUE(self->wait(recv));
  EXPECT_TRUE(recv.done());
  EXPECT_TRUE(self->test(recv));  // a done op tests true
  EXPECT_EQ(in, out);
  EXPECT_TRUE(self->allreduce_sum(out.data(), 3, "all-reduce over one rank"));
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f, 3.25f}));
}

TEST(Communicator, GridGroupsHaveTheGridsRanks) {
  ProcessGrid grid(world_size(), 1, 1);
  const GridCommunicators comms = make_mpi_communicators(grid);
  EXPECT_EQ(comms.tp->size(), 1);
  EXPECT_EQ(comms.pp->size(), 1);
  EXPECT_EQ(comms.pp->rank(), grid.stage());
  EXPECT_EQ(comms.dp->size(), world_size());
  EXPECT_EQ(comms.dp->rank(), grid.dp_rank());
}

TEST_F(CommunicatorPair, AllReduceSumBlockingAndNonBlocking) {
  if (!pair_) return;
  const int r = pair_->rank();
  EXPECT_EQ(pair_->size(), 2);
  std::vector<float> x = {float(r + 1), 0.25f, -1.0f};
  ASSERT_TRUE(pair_->allreduce_sum(x.data(), 3, "all-reduce test"));
  EXPECT_EQ(x, (std::vector<float>{3.0f, 0.5f, -2.0f}));
  std::vector<float> big(5000);
  std::iota(big.begin(), big.end(), float(r));
  Pending sum = pair_->iallreduce_sum(big.data(), 5000, "all-reduce test (non-blocking)");
  ASSERT_TRUE(pair_->wait(sum));
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(big[i], float(2 * i + 1));
}

// ZeRO-1's pair: uneven blocks (3 for rank 0, 2 for rank 1), rank-major. The reduce-scatter
// leaves each rank the sum of its own block; the in-place all-gather gives everyone every block.
TEST_F(CommunicatorPair, ReduceScatterAndAllGatherUnevenBlocks) {
  if (!pair_) return;
  const int r = pair_->rank();
  const std::vector<int> counts = {3, 2}, displacements = {0, 3};
  std::vector<float> x = {1, 2, 3, 4, 5};
  for (float& v : x) v *= float(r + 1);  // rank 1 holds twice rank 0's
  std::vector<float> shard(3, -1.0f);
  Pending scatter = pair_->ireduce_scatter_sum(x.data(), shard.data(), counts, "scatter test");
  ASSERT_TRUE(pair_->wait(scatter));
  const std::vector<float> expected =
      r == 0 ? std::vector<float>{3, 6, 9} : std::vector<float>{12, 15, -1};
  EXPECT_EQ(shard, expected);
  std::vector<float> gathered(5, 0.0f);
  for (int i = 0; i < counts[r]; ++i) gathered[displacements[r] + i] = float(10 * r + i);
  Pending gather = pair_->iallgather(gathered.data(), counts, displacements, "gather test");
  ASSERT_TRUE(pair_->wait(gather));
  EXPECT_EQ(gathered, (std::vector<float>{0, 1, 2, 10, 11}));
}

// Two messages each way under different tags, received in the other order than sent: the tag,
// not the order, matches them.
TEST_F(CommunicatorPair, SendReceiveRoundTripWithTags) {
  if (!pair_) return;
  const int r = pair_->rank(), peer = 1 - r;
  std::vector<float> first(1000), second(3, float(10 * r)), got_first(1000), got_second(3);
  std::iota(first.begin(), first.end(), float(r * 1000));
  Pending recvs[2] = {pair_->irecv(got_second.data(), 3, peer, 8, "recv second"),
                      pair_->irecv(got_first.data(), 1000, peer, 7, "recv first")};
  Pending sends[2] = {pair_->isend(first.data(), 1000, peer, 7, "send first"),
                      pair_->isend(second.data(), 3, peer, 8, "send second")};
  for (Pending& p : recvs) ASSERT_TRUE(pair_->wait(p));
  for (Pending& p : sends) ASSERT_TRUE(pair_->wait(p));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(got_first[i], float(peer * 1000 + i));
  EXPECT_EQ(got_second, std::vector<float>(3, float(10 * peer)));
}

// Rank 1 sends only after rank 0 has tested its receive and told it to go.
TEST_F(CommunicatorPair, TestIsFalseUntilThePeerHasSentThenCompletes) {
  if (!pair_) return;
  float value = 0, go = 1;
  if (pair_->rank() == 0) {
    Pending recv = pair_->irecv(&value, 1, 1, 21, "recv late value");
    EXPECT_FALSE(pair_->test(recv));
    EXPECT_FALSE(recv.done());
    Pending send_go = pair_->isend(&go, 1, 1, 20, "send go");
    ASSERT_TRUE(pair_->wait(send_go));
    while (!pair_->test(recv)) {
    }
    EXPECT_TRUE(recv.done());
    EXPECT_EQ(value, 42.0f);
  } else {
    Pending recv_go = pair_->irecv(&go, 1, 0, 20, "recv go");
    ASSERT_TRUE(pair_->wait(recv_go));
    value = 42.0f;
    Pending send = pair_->isend(&value, 1, 0, 21, "send late value");
    ASSERT_TRUE(pair_->wait(send));
  }
}

// Rank 0 waits for a message rank 1 never sends, then for an all-reduce rank 1 joins only after
// rank 0 has timed out: both messages name `what` and the peer (peers), and the collective, left
// pending by the timeout, still completes once rank 1 joins.
TEST_F(CommunicatorPair, TimeoutNamesTheOperationAndThePeer) {
  if (!pair_) return;
  float value = 0, sum = 1, done = 1;
  if (pair_->rank() == 0) {
    Pending stuck, early;
    std::string recv_message, collective_message;
    {
      testing::RecordedTimeouts recorded(0.2);
      stuck = pair_->irecv(&value, 1, 1, 77, "recv nothing");
      EXPECT_FALSE(pair_->wait(stuck));
      recv_message = testing::RecordedTimeouts::message();
      early = pair_->iallreduce_sum(&sum, 1, "all-reduce alone");
      EXPECT_FALSE(pair_->wait(early));
      collective_message = testing::RecordedTimeouts::message();
      EXPECT_EQ(testing::RecordedTimeouts::calls(), 2);
    }
    Pending told = pair_->isend(&done, 1, 1, 78, "send timed out");
    ASSERT_TRUE(pair_->wait(told));
    EXPECT_TRUE(pair_->wait(early));
    EXPECT_EQ(sum, 2.0f);
    EXPECT_NE(recv_message.find("rank 0: timed out after "), std::string::npos) << recv_message;
    EXPECT_NE(recv_message.find("waiting for recv nothing with peer 1 (tag 77)"), std::string::npos)
        << recv_message;
    EXPECT_NE(collective_message.find("waiting for all-reduce alone with peers 0,1 (collective)"),
              std::string::npos)
        << collective_message;
    EXPECT_TRUE(stuck.done());  // a timed-out receive is cancelled
  } else {
    Pending told = pair_->irecv(&done, 1, 0, 78, "recv timed out");
    ASSERT_TRUE(pair_->wait(told));
    ASSERT_TRUE(pair_->allreduce_sum(&sum, 1, "all-reduce late"));
    EXPECT_EQ(sum, 2.0f);
  }
}

}  // namespace
}  // namespace hg
