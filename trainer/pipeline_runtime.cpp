#include "trainer/pipeline_runtime.h"

#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <stdexcept>
#include <utility>

#include "layers/weight_gradients.h"

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

PipelineRuntime::PipelineRuntime(StageModel& model, const ProcessGrid& grid,
                                 const GridCommunicators& comms, ScheduleKind kind,
                                 std::vector<int> stage_first, TraceRecorder* trace,
                                 int64_t grad_bucket_bytes)
    : model_(model),
      device_(model.params().backend().device()),
      grid_(grid),
      pp_comm_(*comms.pp),
      kind_(kind),
      first_(std::move(stage_first)),
      trace_(trace) {
  if (comms.pp->size() != grid.pp() || comms.dp->size() != grid.dp())
    throw std::logic_error("pipeline runtime: communicators of " +
                           std::to_string(comms.pp->size()) + " stages and " +
                           std::to_string(comms.dp->size()) + " replicas for a grid of pp " +
                           std::to_string(grid.pp()) + ", dp " + std::to_string(grid.dp()));
  if (comms.pp->memory() != device_ || comms.dp->memory() != device_)
    throw std::logic_error(std::string("pipeline runtime: communicators over ") +
                           device_name(comms.pp->memory()) + " memory for a model on " +
                           device_name(device_));
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
    grad_buckets_ = std::make_unique<GradientBuckets>(model.unit_gradients(), *comms.dp,
                                                      grad_bucket_bytes,
                                                      model.params().shard_count() > 1);
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

// A posted receive and the tensor it fills, on the model's device: the pp communicator takes
// device buffers (a host-staged one on run.device cuda, staged_communicator.h).
struct PendingRecv {
  Tensor buffer;
  Pending pending;
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

// Sends own their buffers (the activation, the input gradient, a skip or its gradient moved out
// of the compute's result) until MPI reports them complete: tested after every compute op, all
// waited at the end of the step (schedule.h: waiting right after a send would be a blocking send,
// which the deadlock proof does not cover).
struct PendingSend {
  std::unique_ptr<Tensor> buffer;
  Pending pending;
};

// Moves a computed result out of its map, for a send.
template <class Key>
Tensor take_result(std::map<Key, Tensor>& results, const Key& key) {
  Tensor t = std::move(results.at(key));
  results.erase(key);
  return t;
}

// "3" for micro-batch 3, "3.1" for its chunk 1 under interleaving.
std::string trace_label(int mb, int chunk, int chunks) {
  return std::to_string(mb) + (chunks > 1 ? "." + std::to_string(chunk) : "");
}

}  // namespace

struct PipelineRuntime::Step {
  Step(const StepContext& ctx, const std::vector<TokenBatch>& micro_batches,
       const std::vector<int>& granularities, const std::vector<SubmodelWidths>& widths,
       bool evaluating = false)
      : ctx(ctx),
        micro_batches(micro_batches),
        granularities(granularities),
        widths(widths),
        G(static_cast<int>(granularities.size())),
        evaluating(evaluating) {}
  const StepContext& ctx;
  const std::vector<TokenBatch>& micro_batches;
  const std::vector<int>& granularities;
  const std::vector<SubmodelWidths>& widths;
  const int G;                     // granularity entries: each micro-batch runs once per entry
  const bool evaluating;           // forward only: caches dropped after each forward
  bool split_backward = false;     // zbh1: B records the weight-gradient products, W runs them
  std::vector<Instruction> list;   // this rank's schedule
  std::vector<double> loss_sums;   // per granularity entry
  std::vector<size_t> compute_at;  // positions of the compute ops in `list`
  // Per chunk, the op after which the gradients of the chunk's units are complete.
  std::vector<size_t> final_backward;
  size_t computes_done = 0;
  std::map<size_t, PendingRecv> recvs;  // posted, keyed by their position in `list`
  size_t posted = 0;                    // every receive in list[0, posted) is posted
  // A pp communicator that matches messages in send order (NCCL): per sender, the positions of
  // its receives in the sender's order, those not yet posted (schedule.h), and which positions
  // have been posted (some ahead of `posted`).
  std::vector<std::deque<size_t>> sender_order;
  std::vector<char> recv_posted;
  std::vector<PendingSend> sends;
  // micro-batch -> its slot: shared by the rank's chunks, so a skip between two chunks of this
  // rank stays in it (schedule.h)
  std::map<int, Slot> slots;
  // (micro-batch, chunk) -> computed, not yet handed to a send
  std::map<std::pair<int, int>, Tensor> outputs, input_grads;
  // (micro-batch, chunk) -> the weight-gradient products its B recorded, until its W (zbh1)
  std::map<std::pair<int, int>, DeferredWeightGradients> deferred;
};

template <class Compute>
void PipelineRuntime::timed_compute(const std::string& name, TraceCategory category, int mb,
                                    double& cpu_seconds, Compute&& compute) {
  const double t0 = trace_ ? trace_->now_us() : 0;
  const double c0 = MPI_Wtime(), cpu0 = process_cpu_seconds();
  compute();
  stats_.compute_seconds += MPI_Wtime() - c0;
  cpu_seconds += process_cpu_seconds() - cpu0;
  if (trace_) trace_->record_since(name, category, t0, mb);
}

template <class Wait>
void PipelineRuntime::timed_wait(const char* name, TraceCategory category, int mb, Wait&& wait) {
  const double t0 = trace_ ? trace_->now_us() : 0;
  const double w0 = MPI_Wtime();
  wait();
  stats_.wait_seconds += MPI_Wtime() - w0;
  if (trace_) trace_->record_since(name, category, t0, mb);
}

std::vector<double> PipelineRuntime::run(const StepContext& ctx,
                                         const std::vector<TokenBatch>& micro_batches,
                                         const std::vector<int>& granularities,
                                         const std::vector<SubmodelWidths>& widths) {
  Step step(ctx, micro_batches, granularities, widths);
  const int m = static_cast<int>(micro_batches.size()) * step.G;
  PipelineLayout layout{grid_.pp(), m, skips_, virtual_stages_};
  set_list(step, make_schedule(kind_, layout));
  step.split_backward = kind_ == ScheduleKind::ZeroBubbleH1;

  model_.params().zero_grads();
  stats_ = PipelineStats{};
  const double t_start = MPI_Wtime();
  if (grad_buckets_) grad_buckets_->begin_step();
  execute_all(step);
  stats_.step_seconds = MPI_Wtime() - t_start;
  finish_gradient_sync();
  return std::move(step.loss_sums);
}

std::vector<double> PipelineRuntime::evaluate(const std::vector<TokenBatch>& micro_batches,
                                              const std::vector<int>& granularities,
                                              const std::vector<SubmodelWidths>& widths) {
  const StepContext no_dropout;
  Step step(no_dropout, micro_batches, granularities, widths, /*evaluating=*/true);
  const int m = static_cast<int>(micro_batches.size()) * step.G;
  set_list(step, make_forward_schedule({grid_.pp(), m, skips_, virtual_stages_}));
  const PipelineStats training = stats_;
  execute_all(step);
  stats_ = training;
  return std::move(step.loss_sums);
}

// This rank's list of `lists`; for a pp communicator without tags (NCCL), the order in which
// each sender sends, which the receives are then posted in.
void PipelineRuntime::set_list(Step& step, std::vector<std::vector<Instruction>>&& lists) const {
  if (pp_comm_.matches_in_order()) {
    for (const std::vector<size_t>& order : receives_in_sender_order(lists, grid_.stage()))
      step.sender_order.emplace_back(order.begin(), order.end());
  }
  step.list = std::move(lists.at(grid_.stage()));
  step.recv_posted.assign(step.list.size(), 0);
}

void PipelineRuntime::execute_all(Step& step) {
  step.loss_sums.assign(step.G, 0.0);
  index_compute_ops(step);
  for (size_t i = 0; i < step.list.size(); ++i) execute(step, i);
  complete_sends(step);
  if (!step.recvs.empty() || step.posted < step.list.size() || !step.outputs.empty() ||
      !step.input_grads.empty() || !step.deferred.empty())
    throw std::logic_error("pipeline runtime: the schedule left receives or results unconsumed");
}

// Where the compute ops sit (the receive window counts them) and each chunk's final backward
// (where its gradient buckets start; under zbh1 its final W, which completes the weights).
void PipelineRuntime::index_compute_ops(Step& step) const {
  const std::vector<Instruction>& list = step.list;
  const Op completes = step.split_backward ? Op::BackwardWeight : Op::Backward;
  step.final_backward.assign(virtual_stages_, list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const Op op = list[i].op;
    if (op == Op::Forward || op == Op::Backward || op == Op::BackwardWeight)
      step.compute_at.push_back(i);
    if (op == completes) step.final_backward.at(list[i].chunk) = i;
  }
  // The buckets expect the units done in descending stage-local order over the whole step, so
  // the last chunk's final backward must come first (true of every schedule here).
  for (int c = 0; c + 1 < virtual_stages_; ++c)
    if (step.final_backward[c] < step.final_backward[c + 1])
      throw std::logic_error("pipeline runtime: chunk " + std::to_string(c) +
                             "'s final backward precedes chunk " + std::to_string(c + 1) + "'s");
}

// One instruction of the schedule. Receives are not executed where they are listed: they are
// posted ahead by the compute ops and taken by the compute op of their micro-batch.
void PipelineRuntime::execute(Step& step, size_t i) {
  const Instruction& ins = step.list[i];
  const std::pair<int, int> result{ins.micro_batch, ins.chunk};
  switch (ins.op) {
    case Op::Forward:
      post_recvs_ahead(step);
      run_forward(step, i);
      break;
    case Op::Backward:
      post_recvs_ahead(step);
      run_backward(step, i);
      break;
    case Op::BackwardWeight:
      post_recvs_ahead(step);
      run_weight_gradients(step, i);
      break;
    case Op::SendActivation:
      send(step, take_result(step.outputs, result), ins, "send activation");
      break;
    case Op::SendGradient:
      send(step, take_result(step.input_grads, result), ins, "send gradient");
      break;
    case Op::SendSkip:
      send(step, take_result(step.slots.at(ins.micro_batch).skips, ins.skip_level), ins,
           "send skip");
      break;
    case Op::SendSkipGradient:
      send(step, take_result(step.slots.at(ins.micro_batch).skip_grads, ins.skip_level), ins,
           "send skip gradient");
      break;
    default:
      break;  // receives are posted ahead and taken by the compute ops
  }
}

// Receives are posted a window ahead, keyed by their position in the list: before compute op k
// runs, every receive listed before compute op k + kLookahead is posted. A message that arrives
// earlier waits in MPI's unexpected queue (its first bytes; a large one's body is read by this
// rank when the receive matches), so posting further ahead gains nothing, and a bounded window
// keeps the receive buffers to a few micro-batches, as 1F1B's activation bound intends.
void PipelineRuntime::post_recvs_ahead(Step& step) {
  constexpr size_t kLookahead = 2;
  const size_t ahead = step.computes_done + kLookahead;
  post_recvs_before(step,
                    ahead < step.compute_at.size() ? step.compute_at[ahead] : step.list.size());
  ++step.computes_done;
}

void PipelineRuntime::post_recvs_before(Step& step, size_t end) {
  for (; step.posted < end; ++step.posted) {
    const Instruction& ins = step.list[step.posted];
    if (ins.op != Op::RecvActivation && ins.op != Op::RecvSkip && ins.op != Op::RecvGradient &&
        ins.op != Op::RecvSkipGradient)
      continue;
    if (step.sender_order.empty()) {
      post_recv(step, step.posted);
      continue;
    }
    // In the sender's order: first whatever it sends before this message.
    std::deque<size_t>& order = step.sender_order.at(ins.peer_stage);
    while (!step.recv_posted[step.posted]) {
      if (order.empty()) throw std::logic_error("pipeline runtime: a receive outside its order");
      post_recv(step, order.front());
      order.pop_front();
    }
  }
}

// Posts the receive at list[i] into a new buffer on the model's device.
void PipelineRuntime::post_recv(Step& step, size_t i) {
  const Instruction& ins = step.list[i];
  step.recv_posted[i] = 1;
  const int64_t batch = step.micro_batches.at(ins.micro_batch / step.G).sequences;
  Shape shape;
  if (ins.op == Op::RecvActivation)
    shape = activation_shape(first_[virtual_stage(ins)], batch);
  else if (ins.op == Op::RecvGradient)
    shape = activation_shape(first_[virtual_stage(ins) + 1], batch);
  else
    shape = {batch, skip_rows_.at(ins.skip_level), model_.config().d_model};
  PendingRecv& r = step.recvs[i];
  r.buffer = Tensor(shape, device_);
  r.pending = pp_comm_.irecv(r.buffer.data(), r.buffer.numel(), ins.peer_stage, message_tag(ins),
                             recv_what(ins.op));
}

// Waits for the posted receives of micro-batch `mb`, chunk `chunk` listed before the compute op
// at `end`: the activation (or its gradient) into `activation`, skips into the slot.
void PipelineRuntime::take_recvs(Step& step, size_t end, int mb, int chunk, Slot& slot,
                                 Tensor& activation) {
  for (auto it = step.recvs.begin(); it != step.recvs.end() && it->first < end;) {
    const Instruction& ins = step.list[it->first];
    if (ins.micro_batch != mb || ins.chunk != chunk) {
      ++it;
      continue;
    }
    timed_wait(recv_what(ins.op), TraceCategory::Recv, mb,
               [&] { pp_comm_.wait(it->second.pending); });
    Tensor buf = std::move(it->second.buffer);
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
    it = step.recvs.erase(it);
  }
}

void PipelineRuntime::run_forward(Step& step, size_t i) {
  const Instruction& ins = step.list[i];
  const int mb = ins.micro_batch, chunk = ins.chunk;
  const TokenBatch& tb = step.micro_batches.at(mb / step.G);
  Slot& slot = step.slots[mb];
  slot.id = mb;
  slot.ctx = &step.ctx;
  slot.tokens = tb.tokens;
  slot.batch = tb.sequences;
  slot.first_sample = tb.first_sample;
  const int g = step.granularities[mb % step.G];
  slot.widths = g < 0 ? nullptr : &step.widths[g];
  Tensor in, out;
  take_recvs(step, i, mb, chunk, slot, in);
  timed_compute((step.evaluating ? "eval F" : "F") + trace_label(mb, chunk, virtual_stages_),
                TraceCategory::Forward, mb, stats_.forward_cpu_seconds,
                [&] { model_.forward(slot, in, out, chunk); });
  stats_.max_live = std::max(stats_.max_live, model_.live_slots());
  if (step.evaluating) model_.release(mb);
  // The last virtual stage's forward ends in the head: a loss, no output to send.
  if (virtual_stage(ins) == grid_.pp() * virtual_stages_ - 1)
    step.loss_sums[mb % step.G] += slot.loss_sum;
  else
    step.outputs[{mb, chunk}] = std::move(out);
  progress_sends(step);
}

void PipelineRuntime::run_backward(Step& step, size_t i) {
  const Instruction& ins = step.list[i];
  const int mb = ins.micro_batch, chunk = ins.chunk;
  Slot& slot = step.slots.at(mb);
  Tensor dout, din;
  take_recvs(step, i, mb, chunk, slot, dout);
  // During the chunk's final backward each unit's gradients are complete as soon as its backward
  // returns: their data-parallel sum starts then, overlapping the remaining units.
  StageModel::UnitDone start_buckets;
  if (grad_buckets_ && i == step.final_backward[chunk])
    start_buckets = [this](int unit) { grad_buckets_->unit_done(unit); };
  timed_compute("B" + trace_label(mb, chunk, virtual_stages_), TraceCategory::Backward, mb,
                stats_.backward_cpu_seconds, [&] {
                  if (!step.split_backward) {
                    model_.backward(slot, dout, din, start_buckets, chunk);
                    return;
                  }
                  // zbh1: the weight-gradient products wait for W, each unit's marked so that
                  // the final W can start its buckets unit by unit.
                  DeferredWeightGradients& products = step.deferred[{mb, chunk}];
                  DeferWeightGradients defer(products);
                  model_.backward(slot, dout, din, [&](int unit) { products.mark(unit); }, chunk);
                });
  // Virtual stage 0 starts at the embedding: no input gradient to send.
  if (virtual_stage(ins) > 0) step.input_grads[{mb, chunk}] = std::move(din);
  progress_sends(step);
}

// zbh1's W: the weight-gradient products micro-batch `mb`'s B recorded; the chunk's final W
// starts the data-parallel buckets unit by unit, as the final backward does otherwise.
void PipelineRuntime::run_weight_gradients(Step& step, size_t i) {
  const Instruction& ins = step.list[i];
  const std::pair<int, int> key{ins.micro_batch, ins.chunk};
  std::function<void(int)> start_buckets;
  if (grad_buckets_ && i == step.final_backward[ins.chunk])
    start_buckets = [this](int unit) { grad_buckets_->unit_done(unit); };
  timed_compute("W" + trace_label(ins.micro_batch, ins.chunk, virtual_stages_),
                TraceCategory::Backward, ins.micro_batch, stats_.weight_cpu_seconds,
                [&] { step.deferred.at(key).run(start_buckets); });
  step.deferred.erase(key);
  progress_sends(step);
}

void PipelineRuntime::send(Step& step, Tensor&& t, const Instruction& ins, const char* what) {
  auto buffer = std::make_unique<Tensor>(std::move(t));
  Pending pending =
      pp_comm_.isend(buffer->data(), buffer->numel(), ins.peer_stage, message_tag(ins), what);
  step.sends.push_back({std::move(buffer), pending});
}

void PipelineRuntime::progress_sends(Step& step) {
  std::erase_if(step.sends, [this](PendingSend& s) { return pp_comm_.test(s.pending); });
  if (grad_buckets_ && !step.evaluating) grad_buckets_->progress();
}

void PipelineRuntime::complete_sends(Step& step) {
  timed_wait("send completion", TraceCategory::Send, -1, [&] {
    for (PendingSend& s : step.sends) pp_comm_.wait(s.pending);
    step.sends.clear();
  });
}

// After the schedule's time (the bubble is the schedule's): the rest of the replicas' sum.
void PipelineRuntime::finish_gradient_sync() {
  if (!grad_buckets_) return;
  const double g0 = trace_ ? trace_->now_us() : 0;
  grad_buckets_->finish();
  stats_.grad_sync = grad_buckets_->stats();
  if (trace_) trace_->record_since("gradient all-reduce", TraceCategory::Send, g0);
}

void PipelineRuntime::allgather_params() {
  if (!grad_buckets_ || !grad_buckets_->sharded()) return;
  const double g0 = trace_ ? trace_->now_us() : 0;
  grad_buckets_->allgather_values();
  if (trace_) trace_->record_since("parameter all-gather", TraceCategory::Send, g0);
}

}  // namespace hg
