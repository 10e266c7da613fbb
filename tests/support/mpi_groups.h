// Multi-rank tests that share one mpirun: each case runs on world ranks [0, n) while the others
// wait in a sleeping barrier, so on a few oversubscribed cores they leave the CPU to the
// ranks that compute. Rank > 0 prints no GoogleTest output, so every rank's mismatches are gathered
// to rank 0 and asserted there.
#pragma once
#include <gtest/gtest.h>
#include <mpi.h>

#include <functional>
#include <string>

#include "parallel/comm.h"

namespace hg::testing {

int world_rank();
int world_size();

// `name (rank r)`, r this process's world rank: where a report line comes from.
std::string on_this_rank(const std::string& name);

// Runs `check` on world ranks [0, n), given their own communicator, while the other ranks wait
// in a sleeping barrier; returns on rank 0 what every rank's check reported, one after another,
// and "" on the other ranks. Collective over world.
std::string reports_of_first_ranks(int n, const std::function<std::string(MPI_Comm)>& check);

// While alive: comm::timeout() is `seconds`, and a wait that times out records its message here
// and returns false instead of aborting the job. After: the timeout before, the default handler.
class RecordedTimeouts {
 public:
  explicit RecordedTimeouts(double seconds);
  ~RecordedTimeouts();
  RecordedTimeouts(const RecordedTimeouts&) = delete;
  RecordedTimeouts& operator=(const RecordedTimeouts&) = delete;
  static int calls();                   // timeouts since the last RecordedTimeouts began
  static const std::string& message();  // the last one's

 private:
  double saved_timeout_;
};

// The fixture of a multi-rank test over layouts (a `Layout` has `name` and `ranks()`): skipped,
// with the reason, when the world has fewer ranks than the layout; comm::timeout() is 120 s while
// it runs, so that a hang fails the test in minutes, not after ctest's 15.
template <class Layout>
class LayoutMpiTest : public ::testing::TestWithParam<Layout> {
 protected:
  void SetUp() override {
    saved_timeout_ = comm::timeout();
    const Layout& layout = this->GetParam();
    if (world_size() < layout.ranks())
      GTEST_SKIP() << layout.name << " needs " << layout.ranks() << " MPI ranks, has "
                   << world_size();
    comm::set_timeout(120);
  }
  void TearDown() override { comm::set_timeout(saved_timeout_); }

 private:
  double saved_timeout_ = 600;
};

}  // namespace hg::testing
