#include "trainer/pipeline_runtime.h"

#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <utility>

#include "parallel/comm.h"

namespace hg {

std::vector<UnitInfo> unit_infos(const std::vector<UnitPlan>& plans) {
  std::vector<UnitInfo> infos;
  for (const UnitPlan& p : plans) {
    UnitInfo u;
    u.name = p.name;
    u.stack = (p.kind == UnitKind::Block || p.kind == UnitKind::StackNorm) ? p.stack : -1;
    u.flops = p.flops;
    u.activation_bytes = p.activation_bytes;
    u.params = p.params;
    u.stage_hint = p.natural_stage;
    infos.push_back(u);
  }
  return infos;
}

PipelineRuntime::PipelineRuntime(StageModel& model, const ProcessGrid& grid, ScheduleKind kind,
                                 std::vector<int> stage_first, TraceRecorder* trace,
                                 int64_t grad_bucket_bytes)
    : model_(model), grid_(grid), kind_(kind), first_(std::move(stage_first)), trace_(trace) {
  const int virtual_count = static_cast<int>(first_.size()) - 1;
  if (virtual_count < 1 || virtual_count % grid.pp() != 0 ||
      model.chunks() != virtual_count / grid.pp())
    throw std::logic_error("pipeline runtime: " + std::to_string(virtual_count) +
                           " virtual stages for pp " + std::to_string(grid.pp()) +
                           " ranks holding " + std::to_string(model.chunks()) + " chunks each");
  virtual_stages_ = virtual_count / grid.pp();
  skips_ = skip_edges(unit_infos(model.plans()), first_);
  for (const UnitPlan& p : model.plans())
    if (p.kind == UnitKind::Down) skip_rows_[p.stack] = static_cast<int>(p.rows);
  if (grid.dp() > 1)
    grad_buckets_ = std::make_unique<GradientBuckets>(model.params(), model.unit_params(),
                                                      grid.dp_comm(), grad_bucket_bytes);
}

Shape PipelineRuntime::activation_shape(int unit, int64_t batch) const {
  return {batch, model_.plans().at(unit).rows, model_.config().d_model};
}

namespace {

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// A posted receive and the tensor it fills.
struct PendingRecv {
  Tensor buffer;
  comm::Request request;
};

const char* recv_what(Op op) {
  switch (op) {
    case Op::RecvActivation:
      return "recv activation";
    case Op::RecvSkip:
      return "recv skip";
    case Op::RecvGradient:
      return "recv gradient";
    default:
      return "recv skip gradient";
  }
}

}  // namespace

std::vector<double> PipelineRuntime::run(const StepContext& ctx,
                                         const std::vector<TokenBatch>& micro_batches,
                                         const std::vector<int>& granularities,
                                         const std::vector<std::vector<int>>& widths) {
  const int G = static_cast<int>(granularities.size());
  const int m = static_cast<int>(micro_batches.size()) * G;
  const int stage = grid_.stage(), pp = grid_.pp();
  const int last_virtual = pp * virtual_stages_ - 1;
  auto virtual_stage = [&](const Instruction& ins) { return ins.chunk * pp + stage; };
  const MPI_Comm comm = grid_.pp_comm();
  PipelineLayout layout{pp, m, skips_, virtual_stages_};
  auto lists = make_schedule(kind_, layout);
  const auto& list = lists.at(stage);

  model_.params().zero_grads();
  stats_ = PipelineStats{};
  const double t_start = MPI_Wtime();
  std::vector<double> loss_sums(G, 0.0);

  // Receives are posted a window ahead, keyed by their position in the list: before compute op k
  // runs, every receive listed before compute op k + kLookahead is posted. A message that arrives
  // earlier waits in MPI's unexpected queue (its first bytes; a large one's body is read by this
  // rank when the receive matches), so posting further ahead gains nothing, and a bounded window
  // keeps the receive buffers to a few micro-batches, as 1F1B's activation bound intends.
  constexpr int kLookahead = 2;
  std::vector<size_t> compute_at;  // positions of the compute ops in `list`
  // Per chunk, the op after which the gradients of the chunk's units are complete.
  std::vector<size_t> final_backward(virtual_stages_, list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].op == Op::Forward || list[i].op == Op::Backward) compute_at.push_back(i);
    if (list[i].op == Op::Backward) final_backward.at(list[i].chunk) = i;
  }
  // The buckets expect the units done in descending stage-local order over the whole step, so
  // the last chunk's final backward must come first (true of every schedule here).
  for (int c = 0; c + 1 < virtual_stages_; ++c)
    if (final_backward[c] < final_backward[c + 1])
      throw std::logic_error("pipeline runtime: chunk " + std::to_string(c) +
                             "'s final backward precedes chunk " + std::to_string(c + 1) + "'s");
  if (grad_buckets_) grad_buckets_->begin_step();
  const StageModel::UnitDone start_buckets = [&](int unit) { grad_buckets_->unit_done(unit); };
  std::map<size_t, PendingRecv> recvs;
  size_t posted = 0;  // every receive in list[0, posted) is posted
  auto post_recvs_before = [&](size_t end) {
    for (; posted < end; ++posted) {
      const Instruction& ins = list[posted];
      if (ins.op != Op::RecvActivation && ins.op != Op::RecvSkip && ins.op != Op::RecvGradient &&
          ins.op != Op::RecvSkipGradient)
        continue;
      const int64_t batch = micro_batches.at(ins.micro_batch / G).sequences;
      Shape shape;
      if (ins.op == Op::RecvActivation)
        shape = activation_shape(first_[virtual_stage(ins)], batch);
      else if (ins.op == Op::RecvGradient)
        shape = activation_shape(first_[virtual_stage(ins) + 1], batch);
      else
        shape = {batch, skip_rows_.at(ins.skip_level), model_.config().d_model};
      PendingRecv& r = recvs[posted];
      r.buffer.reset(shape);
      r.request = comm::irecv(r.buffer.data(), r.buffer.numel(), ins.peer_stage, message_tag(ins),
                              comm, recv_what(ins.op));
    }
  };

  // Sends own their buffers (the activation, the input gradient, a skip or its gradient moved
  // out of the compute's result) until MPI reports them complete: tested after every compute op,
  // all waited at the end of the step (schedule.h: waiting right after a send would be a
  // blocking send, which the deadlock proof does not cover).
  struct PendingSend {
    std::unique_ptr<Tensor> buffer;
    comm::Request request;
  };
  std::vector<PendingSend> sends;
  auto send = [&](Tensor&& t, const Instruction& ins, const char* what) {
    auto buffer = std::make_unique<Tensor>(std::move(t));
    comm::Request request =
        comm::isend(buffer->data(), buffer->numel(), ins.peer_stage, message_tag(ins), comm, what);
    sends.push_back({std::move(buffer), request});
  };
  auto progress_sends = [&] {
    std::erase_if(sends, [](PendingSend& s) { return comm::test(s.request); });
    if (grad_buckets_) grad_buckets_->progress();
  };

  // micro-batch -> its slot: shared by the rank's chunks, so a skip between two chunks of this
  // rank stays in it (schedule.h)
  std::map<int, Slot> slots;
  // (micro-batch, chunk) -> computed, not yet handed to a send
  std::map<std::pair<int, int>, Tensor> outputs, input_grads;
  // Waits for the posted receives of micro-batch `mb`, chunk `chunk` listed before the compute
  // op at `end`.
  auto take_recvs = [&](size_t end, int mb, int chunk, Slot& slot, Tensor& activation) {
    for (auto it = recvs.begin(); it != recvs.end() && it->first < end;) {
      const Instruction& ins = list[it->first];
      if (ins.micro_batch != mb || ins.chunk != chunk) {
        ++it;
        continue;
      }
      const double t0 = trace_ ? trace_->now_us() : 0;
      const double w0 = MPI_Wtime();
      comm::wait(it->second.request);
      stats_.wait_seconds += MPI_Wtime() - w0;
      if (trace_) trace_->record_since(recv_what(ins.op), TraceCategory::Recv, t0, mb);
      Tensor& buf = it->second.buffer;
      switch (ins.op) {
        case Op::RecvActivation:
        case Op::RecvGradient:
          activation = std::move(buf);
          break;
        case Op::RecvSkip:
          slot.skips[ins.skip_level] = std::move(buf);
          break;
        default:
          slot.skip_grads[ins.skip_level] = std::move(buf);
          break;
      }
      it = recvs.erase(it);
    }
  };

  size_t computes_done = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    const Instruction& ins = list[i];
    const int mb = ins.micro_batch, chunk = ins.chunk;
    const int k = virtual_stage(ins);
    const std::string label =
        std::to_string(mb) + (virtual_stages_ > 1 ? "." + std::to_string(chunk) : "");
    if (ins.op == Op::Forward || ins.op == Op::Backward) {
      const size_t ahead = computes_done + kLookahead;
      post_recvs_before(ahead < compute_at.size() ? compute_at[ahead] : list.size());
      ++computes_done;
    }
    switch (ins.op) {
      case Op::Forward: {
        const TokenBatch& tb = micro_batches.at(mb / G);
        Slot& slot = slots[mb];
        slot.id = mb;
        slot.ctx = &ctx;
        slot.tokens = tb.tokens;
        slot.batch = tb.sequences;
        slot.first_sample = tb.first_sample;
        const int g = granularities[mb % G];
        slot.ffn_widths = g < 0 ? nullptr : &widths[g];
        Tensor in, out;
        take_recvs(i, mb, chunk, slot, in);
        const double t0 = trace_ ? trace_->now_us() : 0;
        const double c0 = MPI_Wtime(), cpu0 = process_cpu_seconds();
        model_.forward(slot, in, out, chunk);
        stats_.compute_seconds += MPI_Wtime() - c0;
        stats_.forward_cpu_seconds += process_cpu_seconds() - cpu0;
        if (trace_) trace_->record_since("F" + label, TraceCategory::Forward, t0, mb);
        stats_.max_live = std::max(stats_.max_live, model_.live_slots());
        if (k == last_virtual)
          loss_sums[mb % G] += slot.loss_sum;
        else
          outputs[{mb, chunk}] = std::move(out);
        progress_sends();
        break;
      }
      case Op::SendActivation:
        send(std::move(outputs.at({mb, chunk})), ins, "send activation");
        outputs.erase({mb, chunk});
        break;
      case Op::SendSkip: {
        Slot& slot = slots.at(mb);
        send(std::move(slot.skips.at(ins.skip_level)), ins, "send skip");
        slot.skips.erase(ins.skip_level);
        break;
      }
      case Op::Backward: {
        Slot& slot = slots.at(mb);
        Tensor dout, din;
        take_recvs(i, mb, chunk, slot, dout);
        const double t0 = trace_ ? trace_->now_us() : 0;
        const double c0 = MPI_Wtime(), cpu0 = process_cpu_seconds();
        model_.backward(
            slot, dout, din,
            grad_buckets_ && i == final_backward[chunk] ? start_buckets : StageModel::UnitDone{},
            chunk);
        stats_.compute_seconds += MPI_Wtime() - c0;
        stats_.backward_cpu_seconds += process_cpu_seconds() - cpu0;
        if (trace_) trace_->record_since("B" + label, TraceCategory::Backward, t0, mb);
        if (k > 0) input_grads[{mb, chunk}] = std::move(din);
        progress_sends();
        break;
      }
      case Op::SendGradient:
        send(std::move(input_grads.at({mb, chunk})), ins, "send gradient");
        input_grads.erase({mb, chunk});
        break;
      case Op::SendSkipGradient: {
        Slot& slot = slots.at(mb);
        send(std::move(slot.skip_grads.at(ins.skip_level)), ins, "send skip gradient");
        slot.skip_grads.erase(ins.skip_level);
        break;
      }
      default:
        break;  // receives are posted ahead and taken by the compute ops
    }
  }
  const double t0 = trace_ ? trace_->now_us() : 0;
  const double w0 = MPI_Wtime();
  for (PendingSend& s : sends) comm::wait(s.request);
  sends.clear();
  stats_.wait_seconds += MPI_Wtime() - w0;
  if (trace_) trace_->record_since("send completion", TraceCategory::Send, t0);
  if (!recvs.empty() || posted < list.size() || !outputs.empty() || !input_grads.empty())
    throw std::logic_error("pipeline runtime: the schedule left receives or results unconsumed");
  stats_.step_seconds = MPI_Wtime() - t_start;
  // After the schedule's time (the bubble is the schedule's): the rest of the replicas' sum.
  if (grad_buckets_) {
    const double g0 = trace_ ? trace_->now_us() : 0;
    grad_buckets_->finish();
    stats_.grad_sync = grad_buckets_->stats();
    if (trace_) trace_->record_since("gradient all-reduce", TraceCategory::Send, g0);
  }
  return loss_sums;
}

}  // namespace hg
