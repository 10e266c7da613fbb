// Process grid and the MPI layer. Serially (1 rank) the multi-rank tests skip; CTest also runs
// them under `mpirun -np 4` (tests/mpi_tests.cmake).
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "tests/support/mpi_groups.h"

namespace hg {
namespace {

using testing::world_rank;
using testing::world_size;

// World ranks of every member of `comm`, in the order of their rank in `comm`.
std::vector<int> members(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<int> ranks(size);
  int me = world_rank();
  MPI_Allgather(&me, 1, MPI_INT, ranks.data(), 1, MPI_INT, comm);
  return ranks;
}

void check_layout(int dp, int pp, int tp) {
  SCOPED_TRACE("dp=" + std::to_string(dp) + " pp=" + std::to_string(pp) +
               " tp=" + std::to_string(tp));
  ProcessGrid grid(dp, pp, tp);
  const int r = world_rank();
  EXPECT_EQ(grid.rank(), r);
  EXPECT_EQ(grid.size(), dp * pp * tp);
  const int d = grid.dp_rank(), p = grid.stage(), t = grid.tp_rank();
  EXPECT_EQ((d * pp + p) * tp + t, r);  // rank r = (d·pp + p)·tp + t
  EXPECT_GE(d, 0);
  EXPECT_LT(d, dp);
  EXPECT_GE(p, 0);
  EXPECT_LT(p, pp);
  EXPECT_GE(t, 0);
  EXPECT_LT(t, tp);
  EXPECT_EQ(grid.rank_of(d, p, t), r);
  EXPECT_EQ(grid.first_stage(), p == 0);
  EXPECT_EQ(grid.last_stage(), p == pp - 1);

  std::vector<int> tp_group, pp_group, dp_group;
  for (int i = 0; i < tp; ++i) tp_group.push_back(grid.rank_of(d, p, i));
  for (int i = 0; i < pp; ++i) pp_group.push_back(grid.rank_of(d, i, t));
  for (int i = 0; i < dp; ++i) dp_group.push_back(grid.rank_of(i, p, t));
  EXPECT_EQ(members(grid.tp_comm()), tp_group);
  EXPECT_EQ(members(grid.pp_comm()), pp_group);  // rank in pp_comm = stage
  EXPECT_EQ(members(grid.dp_comm()), dp_group);
  for (int i = 0; i < pp; ++i) EXPECT_EQ(grid.stage_rank(i), pp_group[i]);
}

TEST(Grid, LayoutsOnFourRanks) {
  if (world_size() != 4) GTEST_SKIP() << "needs 4 MPI ranks (mpirun -np 4), has " << world_size();
  for (auto [dp, pp, tp] :
       {std::tuple{2, 1, 2}, {1, 2, 2}, {1, 4, 1}, {4, 1, 1}, {2, 2, 1}, {1, 1, 4}})
    check_layout(dp, pp, tp);
}

TEST(Grid, EveryRankAloneIsItsOwnLayout) {
  check_layout(world_size(), 1, 1);
  check_layout(1, world_size(), 1);
  check_layout(1, 1, world_size());
}

TEST(Grid, ProductOtherThanWorldSizeIsAUsageError) {
  const int n = world_size();
  try {
    ProcessGrid grid(n, 2, 1);
    ADD_FAILURE() << "accepted dp·pp·tp = " << 2 * n << " on " << n << " ranks";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("but the job has " + std::to_string(n) + " MPI ranks"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("mpirun -np " + std::to_string(2 * n)), std::string::npos) << message;
  }
  EXPECT_THROW(ProcessGrid(0, n, 1), UsageError);
  EXPECT_THROW(ProcessGrid(n, 1, -1), UsageError);
}

TEST(Comm, SendAndReceiveToSelf) {
  std::vector<float> out = {1.5f, -2.0f, 3.25f}, in(3, 0.0f);
  std::vector<int32_t> iout = {7, -8, 1 << 30}, iin(3, 0);
  comm::Request requests[4] = {
      comm::irecv(in.data(), 3, 0, 11, MPI_COMM_SELF),
      comm::irecv(iin.data(), 3, 0, 12, MPI_COMM_SELF),
      comm::isend(iout.data(), 3, 0, 12, MPI_COMM_SELF),
      comm::isend(out.data(), 3, 0, 11, MPI_COMM_SELF),
  };
  EXPECT_TRUE(comm::wait_all(requests, 4));
  for (auto& r : requests) EXPECT_TRUE(r.done());
  EXPECT_EQ(in, out);
  EXPECT_EQ(iin, iout);
  EXPECT_TRUE(comm::test(requests[0]));  // a done request tests true
}

TEST(Comm, RingSendReceive) {
  const int n = world_size(), r = world_rank();
  if (n < 2) GTEST_SKIP() << "needs >= 2 MPI ranks, has " << n;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  std::vector<float> out(1000), in(1000, -1.0f);
  std::iota(out.begin(), out.end(), float(r * 1000));
  std::vector<int32_t> iout = {r, r * r}, iin(2, -1);
  comm::Request recv = comm::irecv(in.data(), 1000, prev, 5, MPI_COMM_WORLD, "recv ring");
  comm::Request irecv = comm::irecv(iin.data(), 2, prev, 6, MPI_COMM_WORLD, "recv ring int");
  comm::Request send = comm::isend(out.data(), 1000, next, 5, MPI_COMM_WORLD, "send ring");
  comm::Request isend = comm::isend(iout.data(), 2, next, 6, MPI_COMM_WORLD, "send ring int");
  while (!comm::test(recv)) {
  }
  EXPECT_TRUE(comm::wait(irecv));
  EXPECT_TRUE(comm::wait(send));
  EXPECT_TRUE(comm::wait(isend));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(in[i], float(prev * 1000 + i));
  EXPECT_EQ(iin, (std::vector<int32_t>{prev, prev * prev}));
}

// The blocking helpers that setup, checkpoints and reports use (each waits with the timeout):
// strings of different lengths per rank, byte gathers, communicator copies and splits.
TEST(Comm, StringsGathersAndCommunicators) {
  const int n = world_size(), r = world_rank();
  const std::string mine(static_cast<size_t>(r * 3), static_cast<char>('a' + r));
  const std::vector<std::string> all = comm::gather_strings(mine, 0, MPI_COMM_WORLD);
  ASSERT_EQ(all.size(), r == 0 ? static_cast<size_t>(n) : 0u);
  for (int i = 0; i < static_cast<int>(all.size()); ++i)
    EXPECT_EQ(all[i], std::string(static_cast<size_t>(i * 3), static_cast<char>('a' + i)));
  std::string text = r == n - 1 ? "from the last rank" : "";
  comm::broadcast_string(text, n - 1, MPI_COMM_WORLD);
  EXPECT_EQ(text, "from the last rank");
  const double value = 0.5 + r;
  std::vector<double> gathered(r == 0 ? n : 0), every(n);
  comm::gather(&value, sizeof value, gathered.data(), 0, MPI_COMM_WORLD);
  comm::allgather(&value, sizeof value, every.data(), MPI_COMM_WORLD);
  for (int i = 0; i < n; ++i) {
    if (r == 0) {
      EXPECT_EQ(gathered[i], 0.5 + i);
    }
    EXPECT_EQ(every[i], 0.5 + i);
  }
  double largest = value;
  int32_t smallest = r;
  comm::allreduce_max(&largest, 1, MPI_COMM_WORLD);
  comm::allreduce_min(&smallest, 1, MPI_COMM_WORLD);
  EXPECT_EQ(largest, n - 0.5);
  EXPECT_EQ(smallest, 0);
  MPI_Comm copy = comm::duplicate(MPI_COMM_WORLD);
  MPI_Comm halves = comm::split(copy, r % 2, r);
  int half_size = 0;
  MPI_Comm_size(halves, &half_size);
  EXPECT_EQ(half_size, r % 2 == 0 ? (n + 1) / 2 : n / 2);
  if (n >= 2) {  // a ring of strings over the copy
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    std::string received;
    if (r % 2 == 0) {
      comm::send_string("token " + std::to_string(r), next, 9, copy, "send token");
      received = comm::recv_string(prev, 9, copy, "recv token");
    } else {
      received = comm::recv_string(prev, 9, copy, "recv token");
      comm::send_string("token " + std::to_string(r), next, 9, copy, "send token");
    }
    EXPECT_EQ(received, "token " + std::to_string(prev));
  }
  MPI_Comm_free(&halves);
  MPI_Comm_free(&copy);
}

TEST(Comm, LateSenderWithinTheTimeoutIsFine) {
  const int n = world_size(), r = world_rank();
  if (n < 2) GTEST_SKIP() << "needs >= 2 MPI ranks, has " << n;
  const double saved = comm::timeout();
  comm::set_timeout(5);
  float value = 0;
  if (r == 0) {
    comm::Request recv = comm::irecv(&value, 1, 1, 9, MPI_COMM_WORLD);
    EXPECT_TRUE(comm::wait(recv));
    EXPECT_EQ(value, 42.0f);
  } else if (r == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    value = 42.0f;
    comm::Request send = comm::isend(&value, 1, 0, 9, MPI_COMM_WORLD);
    EXPECT_TRUE(comm::wait(send));
  }
  comm::set_timeout(saved);
}

TEST(Comm, AllReduceSumBlockingAndNonBlocking) {
  const int n = world_size(), r = world_rank();
  std::vector<float> f = {float(r + 1), 1.0f, -0.5f};
  std::vector<double> g = {double(r + 1) * 1e-3, 2.0};
  comm::allreduce_sum(f.data(), 3, MPI_COMM_WORLD);
  comm::allreduce_sum(g.data(), 2, MPI_COMM_WORLD);
  EXPECT_FLOAT_EQ(f[0], n * (n + 1) / 2.0f);
  EXPECT_FLOAT_EQ(f[1], float(n));
  EXPECT_FLOAT_EQ(f[2], -0.5f * n);
  EXPECT_DOUBLE_EQ(g[0], n * (n + 1) / 2.0 * 1e-3);
  EXPECT_DOUBLE_EQ(g[1], 2.0 * n);

  std::vector<float> a(4096, 1.0f);
  std::vector<double> b(7, double(r));
  comm::Request requests[2] = {comm::iallreduce_sum(a.data(), 4096, MPI_COMM_WORLD),
                               comm::iallreduce_sum(b.data(), 7, MPI_COMM_WORLD)};
  EXPECT_TRUE(comm::wait_all(requests, 2));
  for (float x : a) ASSERT_EQ(x, float(n));
  for (double x : b) ASSERT_EQ(x, n * (n - 1) / 2.0);

  int32_t failed[2] = {r == n - 1 ? 3 : 0, r};
  comm::allreduce_max(failed, 2, MPI_COMM_WORLD);
  EXPECT_EQ(failed[0], 3);
  EXPECT_EQ(failed[1], n - 1);
}

TEST(Comm, AllReduceOnGridCommunicators) {
  if (world_size() != 4) GTEST_SKIP() << "needs 4 MPI ranks (mpirun -np 4), has " << world_size();
  ProcessGrid grid(2, 1, 2);
  float x = float(grid.rank());
  comm::allreduce_sum(&x, 1, grid.tp_comm());  // {0,1} and {2,3}
  EXPECT_EQ(x, grid.dp_rank() == 0 ? 1.0f : 5.0f);
  double y = double(grid.rank());
  comm::allreduce_sum(&y, 1, grid.dp_comm());  // {0,2} and {1,3}
  EXPECT_EQ(y, grid.tp_rank() == 0 ? 2.0 : 4.0);
}

TEST(Comm, BroadcastAndBarrier) {
  const int n = world_size(), r = world_rank();
  const int root = n - 1;
  char text[32] = {};
  if (r == root) std::snprintf(text, sizeof text, "from %d", root);
  comm::broadcast(text, sizeof text, root, MPI_COMM_WORLD);
  EXPECT_EQ(std::string(text), "from " + std::to_string(root));
  comm::barrier(MPI_COMM_WORLD);
}

TEST(Comm, CountsBeyondIntAreRejected) {
  float x = 0;
  EXPECT_THROW(comm::isend(&x, int64_t(1) << 31, 0, 0, MPI_COMM_SELF), std::invalid_argument);
  EXPECT_THROW(comm::irecv(&x, -1, 0, 0, MPI_COMM_SELF), std::invalid_argument);
}

TEST(Comm, TimeoutCallsTheAbortHandlerWithRankPeerAndTag) {
  const int r = world_rank();
  float value = 0;
  comm::Request stuck;
  double waited = 0;
  {
    testing::RecordedTimeouts recorded(0.2);
    // Something completes first, so the message can name the last completed operation.
    float x = 1, y = 0;
    comm::Request ok[2] = {comm::irecv(&y, 1, 0, 3, MPI_COMM_SELF, "recv warm-up"),
                           comm::isend(&x, 1, 0, 3, MPI_COMM_SELF, "send warm-up")};
    ASSERT_TRUE(comm::wait_all(ok, 2));

    // Nobody sends tag 77 to this receive.
    stuck = comm::irecv(&value, 1, 0, 77, MPI_COMM_SELF, "recv activation");
    const auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(comm::wait(stuck));
    waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const std::string message = testing::RecordedTimeouts::message();

  EXPECT_EQ(testing::RecordedTimeouts::calls(), 1);
  EXPECT_GE(waited, 0.2);
  EXPECT_LT(waited, 5.0);
  const std::string expected = "rank " + std::to_string(r) + ": timed out after ";
  EXPECT_EQ(message.rfind(expected, 0), 0u) << message;
  EXPECT_NE(
      message.find(" s waiting for recv activation with peer " + std::to_string(r) + " (tag 77)"),
      std::string::npos)
      << message;
  EXPECT_NE(message.find("last completed: "), std::string::npos) << message;
  EXPECT_NE(message.find("warm-up with peer " + std::to_string(r) + " (tag 3)"), std::string::npos)
      << message;

  // The timed-out receive was cancelled: a later message with its tag reaches a new receive.
  EXPECT_TRUE(stuck.done());
  float later = 5, got = 0;
  comm::Request again[2] = {comm::irecv(&got, 1, 0, 77, MPI_COMM_SELF),
                            comm::isend(&later, 1, 0, 77, MPI_COMM_SELF)};
  EXPECT_TRUE(comm::wait_all(again, 2));
  EXPECT_EQ(got, 5.0f);
  EXPECT_EQ(value, 0.0f);
}

TEST(Comm, TimeoutMessageOfACollectiveNamesEveryPeer) {
  comm::Request collective;
  collective.comm = MPI_COMM_WORLD;
  collective.what = "all-reduce sum (float)";
  const std::string message = comm::timeout_message(collective, 600);
  std::string peers;
  for (int i = 0; i < world_size(); ++i) {
    if (i) peers += ',';
    peers += std::to_string(i);
  }
  EXPECT_NE(message.find("timed out after 600 s waiting for all-reduce sum (float) with peers " +
                         peers + " (collective)"),
            std::string::npos)
      << message;
}

TEST(Comm, TimeoutSetting) {
  const double saved = comm::timeout();
  EXPECT_EQ(saved, 600.0);  // the default
  comm::set_timeout(12.5);
  EXPECT_EQ(comm::timeout(), 12.5);
  comm::set_timeout(saved);
}

}  // namespace
}  // namespace hg
