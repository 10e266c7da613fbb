#include "tests/support/mpi_groups.h"

#include <vector>

#include "parallel/comm.h"

namespace hg::testing {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

std::string on_this_rank(const std::string& name) {
  return name + " (rank " + std::to_string(world_rank()) + ")";
}

namespace {
std::string g_timeout_message;
int g_timeout_calls = 0;
void record_timeout(const char* message) {
  g_timeout_message = message;
  ++g_timeout_calls;
}
}  // namespace

RecordedTimeouts::RecordedTimeouts(double seconds) : saved_timeout_(comm::timeout()) {
  g_timeout_calls = 0;
  g_timeout_message.clear();
  comm::set_timeout(seconds);
  comm::set_abort_handler(&record_timeout);
}
RecordedTimeouts::~RecordedTimeouts() {
  comm::set_abort_handler(nullptr);
  comm::set_timeout(saved_timeout_);
}
int RecordedTimeouts::calls() { return g_timeout_calls; }
const std::string& RecordedTimeouts::message() { return g_timeout_message; }

namespace {

// Concatenates every rank's `report` on rank 0 of world (others get ""). Collective over world.
std::string gather_reports(const std::string& report) {
  const int n = world_size();
  int length = static_cast<int>(report.size());
  std::vector<int> lengths(n), offsets(n);
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  int total = 0;
  for (int i = 0; i < n; ++i) offsets[i] = total, total += lengths[i];
  std::string all(world_rank() == 0 ? total : 0, '\0');
  MPI_Gatherv(report.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
              0, MPI_COMM_WORLD);
  return all;
}

}  // namespace

std::string reports_of_first_ranks(int n, const std::function<std::string(MPI_Comm)>& check) {
  const int r = world_rank();
  MPI_Comm first_ranks = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, r < n ? 0 : MPI_UNDEFINED, r, &first_ranks);
  std::string report;
  if (first_ranks != MPI_COMM_NULL) {
    report = check(first_ranks);
    MPI_Comm_free(&first_ranks);
  }
  // Sleeping, so that on a few oversubscribed cores the waiting ranks leave the CPU to the others.
  comm::barrier(MPI_COMM_WORLD);
  return gather_reports(report);
}

}  // namespace hg::testing
