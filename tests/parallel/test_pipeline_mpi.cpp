// The schedules over real MPI: a toy runtime executes every rank's instruction list with the comm
// layer (non-blocking sends, waited at the end of the step; receives waited where listed) and
// messages large enough for Open MPI's rendezvous protocol. Each "stage" adds numbers, so the
// values that arrive prove every message reached the right instruction; finishing proves no
// deadlock. pp = the world size (serially: one stage).
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <vector>

#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/schedule.h"

namespace hg {
namespace {

constexpr int kElements = 1 << 16;  // 256 KB per message: beyond every eager limit

// Serial reference of the toy model. Forward: f(s) = f(s-1) + 1 + Σ skips consumed at s (skip =
// the producer's f), f(-1) = mb. Backward: g(s) = g(s+1) + 1 + Σ skip gradients of edges produced
// at s (= the consumer's g), g(S) = 1000·mb. Same-stage edges carry nothing.
struct Reference {
  std::vector<double> f, g;
};
Reference reference(const PipelineLayout& layout, int mb) {
  const int S = layout.stages;
  Reference r{std::vector<double>(S), std::vector<double>(S)};
  for (int s = 0; s < S; ++s) {
    r.f[s] = (s ? r.f[s - 1] : mb) + 1;
    for (const SkipEdge& e : layout.skips)
      if (e.consumer_stage == s && e.producer_stage != s) r.f[s] += r.f[e.producer_stage];
  }
  for (int s = S - 1; s >= 0; --s) {
    r.g[s] = (s < S - 1 ? r.g[s + 1] : 1000.0 * mb) + 1;
    for (const SkipEdge& e : layout.skips)
      if (e.producer_stage == s && e.consumer_stage != s) r.g[s] += r.g[e.consumer_stage];
  }
  return r;
}

void run_toy_pipeline(const ProcessGrid& grid, ScheduleKind kind, const PipelineLayout& layout) {
  const int s = grid.stage(), m = layout.micro_batches;
  const auto list = make_schedule(kind, layout)[s];
  using Buffer = std::vector<float>;
  // Per micro-batch buffers; skips by level. Values are small integers: exact in float.
  std::vector<Buffer> act_in(m, Buffer(kElements)), act_out(m, Buffer(kElements));
  std::vector<Buffer> grad_in(m, Buffer(kElements)), grad_out(m, Buffer(kElements));
  std::map<int, std::vector<Buffer>> skip_in, skip_grad_in;
  for (const SkipEdge& e : layout.skips) {
    skip_in[e.level].assign(m, Buffer(kElements));
    skip_grad_in[e.level].assign(m, Buffer(kElements));
  }
  std::vector<comm::Request> sends;
  auto wait_recv = [](comm::Request r) { ASSERT_TRUE(comm::wait(r)); };
  for (const Instruction& in : list) {
    const int mb = in.micro_batch, tag = message_tag(in), peer = in.peer_stage;
    MPI_Comm pp = grid.pp_comm();
    switch (in.op) {
      case Op::RecvActivation:
        wait_recv(comm::irecv(act_in[mb].data(), kElements, peer, tag, pp, "recv activation"));
        break;
      case Op::RecvSkip:
        wait_recv(
            comm::irecv(skip_in[in.skip_level][mb].data(), kElements, peer, tag, pp, "recv skip"));
        break;
      case Op::RecvGradient:
        wait_recv(comm::irecv(grad_in[mb].data(), kElements, peer, tag, pp, "recv gradient"));
        break;
      case Op::RecvSkipGradient:
        wait_recv(comm::irecv(skip_grad_in[in.skip_level][mb].data(), kElements, peer, tag, pp,
                              "recv skip gradient"));
        break;
      case Op::Forward:
        for (int i = 0; i < kElements; ++i) {
          float v = (s ? act_in[mb][i] : float(mb)) + 1;
          for (const SkipEdge& e : layout.skips)
            if (e.consumer_stage == s && e.producer_stage != s) v += skip_in[e.level][mb][i];
          act_out[mb][i] = v;
        }
        break;
      case Op::Backward:
        for (int i = 0; i < kElements; ++i) {
          float v = (s < layout.stages - 1 ? grad_in[mb][i] : 1000.0f * mb) + 1;
          for (const SkipEdge& e : layout.skips)
            if (e.producer_stage == s && e.consumer_stage != s) v += skip_grad_in[e.level][mb][i];
          grad_out[mb][i] = v;
        }
        break;
      case Op::SendActivation:
      case Op::SendSkip:  // the skip is this stage's forward output
        sends.push_back(comm::isend(act_out[mb].data(), kElements, peer, tag, pp, "send"));
        break;
      case Op::SendGradient:
      case Op::SendSkipGradient:  // the skip's gradient is this stage's backward output
        sends.push_back(comm::isend(grad_out[mb].data(), kElements, peer, tag, pp, "send"));
        break;
    }
    for (auto& r : sends) comm::test(r);  // progress for rendezvous sends
  }
  ASSERT_TRUE(comm::wait_all(sends.data(), static_cast<int>(sends.size())));
  for (int mb = 0; mb < m; ++mb) {
    const Reference r = reference(layout, mb);
    ASSERT_EQ(act_out[mb][0], r.f[s]) << "stage " << s << " mb " << mb;
    ASSERT_EQ(act_out[mb][kElements - 1], r.f[s]);
    ASSERT_EQ(grad_out[mb][0], r.g[s]) << "stage " << s << " mb " << mb;
    ASSERT_EQ(grad_out[mb][kElements - 1], r.g[s]);
  }
}

TEST(PipelineMpi, SchedulesRunOverMpiWithSkips) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ProcessGrid grid(1, size, 1);
  const int S = size;
  const std::vector<std::vector<SkipEdge>> layouts = {
      {},
      {{0, 0, S - 1}},
      {{0, 0, S - 1}, {1, S > 1 ? 1 : 0, S > 2 ? S - 2 : S - 1}},
      {{0, 0, S > 2 ? 2 : S - 1}, {1, S - 1, S - 1}},
  };
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    for (int m : {1, 2, 3, 5, 8})
      for (const auto& skips : layouts) {
        SCOPED_TRACE(std::string(schedule_name(kind)) + " m=" + std::to_string(m) +
                     " skips=" + std::to_string(skips.size()));
        run_toy_pipeline(grid, kind, {S, m, skips});
        comm::barrier(MPI_COMM_WORLD);
      }
}

TEST(PipelineMpi, TwoPipelinesSideBySide) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 4) GTEST_SKIP() << "needs 4 MPI ranks (mpirun -np 4), has " << size;
  ProcessGrid grid(2, 2, 1);  // replicas {0,1} and {2,3}, same tags on both: no crosstalk
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    run_toy_pipeline(grid, kind, {2, 4, {{0, 0, 1}}});
}

}  // namespace
}  // namespace hg
