// The schedules over real MPI: a toy runtime executes every rank's instruction list with the comm
// layer (non-blocking sends, waited at the end of the step; receives waited where listed) and
// messages large enough for Open MPI's rendezvous protocol. Each "stage" adds numbers, so the
// values that arrive prove every message reached the right instruction; finishing proves no
// deadlock. pp = the world size (serially: one stage). Interleaved: the toy runs over the pp·v
// virtual stages, each rank's buffers kept per (micro-batch, chunk).
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

// Serial reference of the toy model over the V = S·v (virtual) stages. Forward: f(k) = f(k-1) + 1
// + Σ skips consumed at k (skip = the producer's f), f(-1) = mb. Backward: g(k) = g(k+1) + 1 + Σ
// skip gradients of edges produced at k (= the consumer's g), g(V) = 1000·mb. Edges within one
// rank carry nothing.
struct Reference {
  std::vector<double> f, g;
};
bool crosses_ranks(const SkipEdge& e, int S) {
  return e.producer_stage % S != e.consumer_stage % S;
}
Reference reference(const PipelineLayout& layout, int mb) {
  const int S = layout.stages, V = S * layout.virtual_stages;
  Reference r{std::vector<double>(V), std::vector<double>(V)};
  for (int k = 0; k < V; ++k) {
    r.f[k] = (k ? r.f[k - 1] : mb) + 1;
    for (const SkipEdge& e : layout.skips)
      if (e.consumer_stage == k && crosses_ranks(e, S)) r.f[k] += r.f[e.producer_stage];
  }
  for (int k = V - 1; k >= 0; --k) {
    r.g[k] = (k < V - 1 ? r.g[k + 1] : 1000.0 * mb) + 1;
    for (const SkipEdge& e : layout.skips)
      if (e.producer_stage == k && crosses_ranks(e, S)) r.g[k] += r.g[e.consumer_stage];
  }
  return r;
}

void run_toy_pipeline(const ProcessGrid& grid, ScheduleKind kind, const PipelineLayout& layout) {
  const int s = grid.stage(), S = layout.stages, v = layout.virtual_stages;
  const int n = layout.micro_batches * v, last = S * v - 1;
  const auto list = make_schedule(kind, layout)[s];
  using Buffer = std::vector<float>;
  // Buffers per (micro-batch, chunk) = index mb·v + chunk; skips by level. Values are small
  // integers: exact in float.
  std::vector<Buffer> act_in(n, Buffer(kElements)), act_out(n, Buffer(kElements));
  std::vector<Buffer> grad_in(n, Buffer(kElements)), grad_out(n, Buffer(kElements));
  std::map<int, std::vector<Buffer>> skip_in, skip_grad_in;
  for (const SkipEdge& e : layout.skips) {
    skip_in[e.level].assign(n, Buffer(kElements));
    skip_grad_in[e.level].assign(n, Buffer(kElements));
  }
  std::vector<comm::Request> sends;
  auto wait_recv = [](comm::Request r) { ASSERT_TRUE(comm::wait(r)); };
  for (const Instruction& in : list) {
    const int mb = in.micro_batch * v + in.chunk, tag = message_tag(in), peer = in.peer_stage;
    const int k = in.chunk * S + s;  // virtual stage
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
          float x = (k ? act_in[mb][i] : float(in.micro_batch)) + 1;
          for (const SkipEdge& e : layout.skips)
            if (e.consumer_stage == k && crosses_ranks(e, S)) x += skip_in[e.level][mb][i];
          act_out[mb][i] = x;
        }
        break;
      case Op::Backward:
        for (int i = 0; i < kElements; ++i) {
          float x = (k < last ? grad_in[mb][i] : 1000.0f * in.micro_batch) + 1;
          for (const SkipEdge& e : layout.skips)
            if (e.producer_stage == k && crosses_ranks(e, S)) x += skip_grad_in[e.level][mb][i];
          grad_out[mb][i] = x;
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
      case Op::BackwardWeight:  // zbh1's W: no message, nothing the toy checks
        break;
    }
    for (auto& r : sends) comm::test(r);  // progress for rendezvous sends
  }
  ASSERT_TRUE(comm::wait_all(sends.data(), static_cast<int>(sends.size())));
  for (int mb = 0; mb < layout.micro_batches; ++mb)
    for (int c = 0; c < v; ++c) {
      const Reference r = reference(layout, mb);
      const int k = c * S + s, at = mb * v + c;
      ASSERT_EQ(act_out[at][0], r.f[k]) << "stage " << s << " mb " << mb << " chunk " << c;
      ASSERT_EQ(act_out[at][kElements - 1], r.f[k]);
      ASSERT_EQ(grad_out[at][0], r.g[k]) << "stage " << s << " mb " << mb << " chunk " << c;
      ASSERT_EQ(grad_out[at][kElements - 1], r.g[k]);
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
  for (ScheduleKind kind :
       {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::ZeroBubbleH1})
    for (int m : {1, 2, 3, 5, 8})
      for (const auto& skips : layouts) {
        SCOPED_TRACE(std::string(schedule_name(kind)) + " m=" + std::to_string(m) +
                     " skips=" + std::to_string(skips.size()));
        run_toy_pipeline(grid, kind, {S, m, skips});
        comm::barrier(MPI_COMM_WORLD);
      }
  // Interleaved over S·v virtual stages: skips within a rank (0 -> S) and across ranks.
  if (S < 2) return;
  for (int v : {1, 2, 3})
    for (int m : {S, 2 * S, 3 * S}) {
      const int V = S * v;
      const std::vector<std::vector<SkipEdge>> virtual_layouts = {
          {}, {{0, 0, V - 1}}, {{0, 0, V - 1}, {1, 1, V - 2}}, {{0, 0, S}, {1, 1, V - 1}}};
      for (const auto& skips : virtual_layouts) {
        bool valid = true;  // too few virtual stages for some edges
        for (const SkipEdge& e : skips)
          valid = valid && e.producer_stage <= e.consumer_stage && e.consumer_stage < V;
        if (!valid) continue;
        SCOPED_TRACE("interleaved v=" + std::to_string(v) + " m=" + std::to_string(m) +
                     " skips=" + std::to_string(skips.size()));
        run_toy_pipeline(grid, ScheduleKind::Interleaved, {S, m, skips, v});
        comm::barrier(MPI_COMM_WORLD);
      }
    }
}

TEST(PipelineMpi, TwoPipelinesSideBySide) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 4) GTEST_SKIP() << "needs 4 MPI ranks (mpirun -np 4), has " << size;
  ProcessGrid grid(2, 2, 1);  // replicas {0,1} and {2,3}, same tags on both: no crosstalk
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    run_toy_pipeline(grid, kind, {2, 4, {{0, 0, 1}}});
  run_toy_pipeline(grid, ScheduleKind::Interleaved, {2, 4, {{0, 0, 3}, {1, 1, 2}}, 2});
}

}  // namespace
}  // namespace hg
