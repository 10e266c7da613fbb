#include "trainer/pipeline_runtime.h"

#include <mpi.h>

#include <memory>
#include <stdexcept>

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
                                 std::vector<int> stage_first, TraceRecorder* trace)
    : model_(model), grid_(grid), kind_(kind), first_(std::move(stage_first)), trace_(trace) {
  skips_ = skip_edges(unit_infos(model.plans()), first_);
  for (const UnitPlan& p : model.plans())
    if (p.kind == UnitKind::Down) skip_rows_[p.stack] = static_cast<int>(p.rows);
}

Shape PipelineRuntime::activation_shape(int unit, int64_t batch) const {
  return {batch, model_.plans().at(unit).rows, model_.config().d_model};
}

namespace {

// A posted receive and the tensor it fills.
struct PendingRecv {
  Tensor buffer;
  comm::Request request;
};

const char* recv_what(Op op) {
  switch (op) {
    case Op::RecvActivation: return "recv activation";
    case Op::RecvSkip: return "recv skip";
    case Op::RecvGradient: return "recv gradient";
    default: return "recv skip gradient";
  }
}

}  // namespace

std::vector<double> PipelineRuntime::run(const StepContext& ctx,
                                         const std::vector<TokenBatch>& micro_batches,
                                         const std::vector<int>& granularities,
                                         const std::vector<std::vector<int>>& widths) {
  const int G = static_cast<int>(granularities.size());
  const int m = static_cast<int>(micro_batches.size()) * G;
  const int stage = grid_.stage();
  const MPI_Comm comm = grid_.pp_comm();
  PipelineLayout layout{grid_.pp(), m, skips_};
  auto lists = make_schedule(kind_, layout);
  const auto& list = lists.at(stage);

  model_.params().zero_grads();
  stats_ = PipelineStats{};
  const double t_start = MPI_Wtime();
  std::vector<double> loss_sums(G, 0.0);

  // Every receive of the step is posted now, keyed by its position in the list.
  std::map<size_t, PendingRecv> recvs;
  for (size_t i = 0; i < list.size(); ++i) {
    const Instruction& ins = list[i];
    if (ins.op != Op::RecvActivation && ins.op != Op::RecvSkip && ins.op != Op::RecvGradient &&
        ins.op != Op::RecvSkipGradient)
      continue;
    const int64_t batch = micro_batches.at(ins.micro_batch / G).sequences;
    Shape shape;
    if (ins.op == Op::RecvActivation) shape = activation_shape(first_[stage], batch);
    else if (ins.op == Op::RecvGradient) shape = activation_shape(first_[stage + 1], batch);
    else shape = {batch, skip_rows_.at(ins.skip_level), model_.config().d_model};
    PendingRecv& r = recvs[i];
    r.buffer.reset(shape);
    r.request = comm::irecv(r.buffer.data(), r.buffer.numel(), ins.peer_stage, message_tag(ins),
                            comm, recv_what(ins.op));
  }

  std::map<int, Slot> slots;                // micro-batch -> its slot, Forward to Backward
  std::map<int, Tensor> outputs, input_grads;  // kept until their sends complete
  std::vector<std::unique_ptr<Tensor>> sending;  // skips / skip gradients in flight
  std::vector<comm::Request> sends;
  auto send = [&](const Tensor& t, const Instruction& ins, const char* what) {
    sends.push_back(comm::isend(t.data(), t.numel(), ins.peer_stage, message_tag(ins), comm, what));
  };
  // Waits for the posted receives of micro-batch `mb` listed before the compute op at `end`.
  auto take_recvs = [&](size_t end, int mb, Slot& slot, Tensor& activation) {
    for (auto it = recvs.begin(); it != recvs.end() && it->first < end;) {
      const Instruction& ins = list[it->first];
      if (ins.micro_batch != mb) {
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
        case Op::RecvGradient: activation = std::move(buf); break;
        case Op::RecvSkip: slot.skips[ins.skip_level] = std::move(buf); break;
        default: slot.skip_grads[ins.skip_level] = std::move(buf); break;
      }
      it = recvs.erase(it);
    }
  };
  auto progress_sends = [&] {
    for (auto& r : sends) comm::test(r);
  };

  for (size_t i = 0; i < list.size(); ++i) {
    const Instruction& ins = list[i];
    const int mb = ins.micro_batch;
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
        Tensor in;
        take_recvs(i, mb, slot, in);
        const double t0 = trace_ ? trace_->now_us() : 0;
        const double c0 = MPI_Wtime();
        model_.forward(slot, in, outputs[mb]);
        stats_.compute_seconds += MPI_Wtime() - c0;
        if (trace_) trace_->record_since("F" + std::to_string(mb), TraceCategory::Forward, t0, mb);
        stats_.max_live = std::max(stats_.max_live, model_.live_slots());
        loss_sums[mb % G] += slot.loss_sum;
        progress_sends();
        break;
      }
      case Op::SendActivation: send(outputs.at(mb), ins, "send activation"); break;
      case Op::SendSkip: {
        Slot& slot = slots.at(mb);
        sending.push_back(std::make_unique<Tensor>(std::move(slot.skips.at(ins.skip_level))));
        slot.skips.erase(ins.skip_level);
        send(*sending.back(), ins, "send skip");
        break;
      }
      case Op::Backward: {
        Slot& slot = slots.at(mb);
        Tensor dout;
        take_recvs(i, mb, slot, dout);
        outputs.erase(mb);  // a completed send's buffer, or the last stage's empty output
        const double t0 = trace_ ? trace_->now_us() : 0;
        const double c0 = MPI_Wtime();
        model_.backward(slot, dout, input_grads[mb]);
        stats_.compute_seconds += MPI_Wtime() - c0;
        if (trace_) trace_->record_since("B" + std::to_string(mb), TraceCategory::Backward, t0, mb);
        progress_sends();
        break;
      }
      case Op::SendGradient: send(input_grads.at(mb), ins, "send gradient"); break;
      case Op::SendSkipGradient: {
        Slot& slot = slots.at(mb);
        sending.push_back(std::make_unique<Tensor>(std::move(slot.skip_grads.at(ins.skip_level))));
        slot.skip_grads.erase(ins.skip_level);
        send(*sending.back(), ins, "send skip gradient");
        break;
      }
      default: break;  // receives were posted up front and are taken by the compute ops
    }
  }
  const double w0 = MPI_Wtime();
  for (auto& r : sends) comm::wait(r);
  stats_.wait_seconds += MPI_Wtime() - w0;
  if (!recvs.empty()) throw std::logic_error("pipeline runtime: receives left unconsumed");
  stats_.step_seconds = MPI_Wtime() - t_start;
  return loss_sums;
}

}  // namespace hg
