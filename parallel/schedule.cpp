#include "parallel/schedule.h"

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include "core/enum_names.h"
#include "core/error.h"

namespace hg {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("PipelineLayout: " + what);
}

// What every list needs: stages, micro-batches, chunks (v > 1: at least 2 stages) and skip edges
// between existing virtual stages, at most one per level.
void validate_layout(const PipelineLayout& layout) {
  if (layout.stages < 1) fail("stages = " + std::to_string(layout.stages) + " < 1");
  if (layout.micro_batches < 1)
    fail("micro_batches = " + std::to_string(layout.micro_batches) + " < 1");
  const int v = layout.virtual_stages;
  if (v < 1 || v > kMaxVirtualStages)
    fail("virtual_stages = " + std::to_string(v) + " outside [1, " +
         std::to_string(kMaxVirtualStages) + "]");
  if (v > 1 && layout.stages < 2)
    fail("virtual_stages = " + std::to_string(v) + " needs at least 2 stages");
  const int virtual_count = layout.stages * v;
  std::set<int> levels;
  for (const SkipEdge& e : layout.skips) {
    const std::string edge = "skip level " + std::to_string(e.level) + " (stage " +
                             std::to_string(e.producer_stage) + " -> " +
                             std::to_string(e.consumer_stage) + ")";
    if (e.level < 0 || e.level > 30) fail(edge + ": level outside [0, 30]");
    if (!levels.insert(e.level).second) fail(edge + ": level appears twice");
    if (e.producer_stage < 0 || e.consumer_stage >= virtual_count ||
        e.producer_stage > e.consumer_stage)
      fail(edge + ": needs 0 <= producer <= consumer < stages x virtual_stages = " +
           std::to_string(virtual_count));
  }
}

// ... and what the training schedules add.
void validate(ScheduleKind kind, const PipelineLayout& layout) {
  validate_layout(layout);
  const int v = layout.virtual_stages;
  if (kind != ScheduleKind::Interleaved && v != 1)
    fail("virtual_stages = " + std::to_string(v) + " needs the interleaved schedule");
  if (kind == ScheduleKind::Interleaved && layout.micro_batches % layout.stages != 0)
    fail("interleaved: micro_batches = " + std::to_string(layout.micro_batches) +
         " is not a multiple of stages = " + std::to_string(layout.stages));
}

std::vector<SkipEdge> by_level(std::vector<SkipEdge> skips) {
  std::sort(skips.begin(), skips.end(),
            [](const SkipEdge& a, const SkipEdge& b) { return a.level < b.level; });
  return skips;
}

// The ops of virtual stage k (rank k mod S, chunk k / S; k = rank when v = 1). A message to
// virtual stage j goes to rank j mod S; an edge within one rank needs none.
struct Virtual {
  int S;
  int rank(int k) const { return k % S; }
  int chunk(int k) const { return k / S; }
};

void append_forward(std::vector<Instruction>& list, int k, int mb, const PipelineLayout& layout,
                    const std::vector<SkipEdge>& skips) {
  const Virtual at{layout.stages};
  const int last = layout.stages * layout.virtual_stages - 1, c = at.chunk(k);
  auto message = [&](Op op, int peer, int level) {
    list.push_back({op, mb, at.rank(peer), level, c, at.chunk(peer)});
  };
  if (k > 0) message(Op::RecvActivation, k - 1, -1);
  for (const SkipEdge& e : skips)
    if (e.consumer_stage == k && at.rank(e.producer_stage) != at.rank(k))
      message(Op::RecvSkip, e.producer_stage, e.level);
  list.push_back({Op::Forward, mb, -1, -1, c, 0});
  if (k < last) message(Op::SendActivation, k + 1, -1);
  for (const SkipEdge& e : skips)
    if (e.producer_stage == k && at.rank(e.consumer_stage) != at.rank(k))
      message(Op::SendSkip, e.consumer_stage, e.level);
}

void append_backward(std::vector<Instruction>& list, int k, int mb, const PipelineLayout& layout,
                     const std::vector<SkipEdge>& skips) {
  const Virtual at{layout.stages};
  const int last = layout.stages * layout.virtual_stages - 1, c = at.chunk(k);
  auto message = [&](Op op, int peer, int level) {
    list.push_back({op, mb, at.rank(peer), level, c, at.chunk(peer)});
  };
  if (k < last) message(Op::RecvGradient, k + 1, -1);
  for (const SkipEdge& e : skips)
    if (e.producer_stage == k && at.rank(e.consumer_stage) != at.rank(k))
      message(Op::RecvSkipGradient, e.consumer_stage, e.level);
  list.push_back({Op::Backward, mb, -1, -1, c, 0});
  if (k > 0) message(Op::SendGradient, k - 1, -1);
  for (const SkipEdge& e : skips)
    if (e.consumer_stage == k && at.rank(e.producer_stage) != at.rank(k))
      message(Op::SendSkipGradient, e.producer_stage, e.level);
}

// ZB-H1 on stage s (make_schedule): 1F1B's order of forwards and B's, each B from the (s+1)-th
// on followed by the oldest pending W, the s W's left at the end.
void append_zero_bubble_h1(std::vector<Instruction>& list, int s, const PipelineLayout& layout,
                           const std::vector<SkipEdge>& skips) {
  const int m = layout.micro_batches, warmup = std::min(layout.stages - s - 1, m);
  int forwards = 0, backwards = 0, weights = 0;
  auto weight = [&] { list.push_back({Op::BackwardWeight, weights++, -1, -1, 0, 0}); };
  auto backward = [&] {
    append_backward(list, s, backwards, layout, skips);
    if (backwards++ >= s) weight();
  };
  for (; forwards < warmup; ++forwards) append_forward(list, s, forwards, layout, skips);
  while (forwards < m) {
    append_forward(list, s, forwards++, layout, skips);
    backward();
  }
  while (backwards < m) backward();
  while (weights < m) weight();
}

// Message kinds: a send and its receive share one.
enum MessageKind { kActivation = 0, kSkip = 1, kGradient = 2, kSkipGradient = 3, kNone = -1 };

MessageKind message_kind(Op op) {
  switch (op) {
    case Op::RecvActivation:
    case Op::SendActivation:
      return kActivation;
    case Op::RecvSkip:
    case Op::SendSkip:
      return kSkip;
    case Op::RecvGradient:
    case Op::SendGradient:
      return kGradient;
    case Op::RecvSkipGradient:
    case Op::SendSkipGradient:
      return kSkipGradient;
    case Op::Forward:
    case Op::Backward:
    case Op::BackwardWeight:
      return kNone;
  }
  return kNone;
}

bool is_send(Op op) {
  return op == Op::SendActivation || op == Op::SendSkip || op == Op::SendGradient ||
         op == Op::SendSkipGradient;
}
bool is_recv(Op op) {
  return op == Op::RecvActivation || op == Op::RecvSkip || op == Op::RecvGradient ||
         op == Op::RecvSkipGradient;
}

}  // namespace

const char* schedule_name(ScheduleKind kind) { return enum_name(kind); }

std::vector<std::vector<Instruction>> make_forward_schedule(const PipelineLayout& layout) {
  validate_layout(layout);
  const int S = layout.stages, V = S * layout.virtual_stages;
  const std::vector<SkipEdge> skips = by_level(layout.skips);
  std::vector<std::vector<Instruction>> lists(S);
  for (int mb = 0; mb < layout.micro_batches; ++mb)
    for (int k = 0; k < V; ++k) append_forward(lists[k % S], k, mb, layout, skips);
  return lists;
}

std::vector<std::vector<Instruction>> make_schedule(ScheduleKind kind,
                                                    const PipelineLayout& layout) {
  validate(kind, layout);
  const int S = layout.stages, m = layout.micro_batches;
  const std::vector<SkipEdge> skips = by_level(layout.skips);
  std::vector<std::vector<Instruction>> lists(S);
  for (int s = 0; s < S; ++s) {
    auto& list = lists[s];
    if (kind == ScheduleKind::Interleaved) {
      // Megatron-LM's order (schedules.py, forward_backward_pipelining_with_interleaving): groups
      // of S micro-batches walk up the chunks in the forward and down them in the backward; the
      // warm-up fills the S − r − 1 ranks below twice (their forward and the returning gradient)
      // plus the v − 1 further chunks of the first group.
      const int v = layout.virtual_stages, total = m * v;
      auto micro_batch = [&](int j) { return (j / (S * v)) * S + j % S; };
      auto forward_chunk = [&](int j) { return (j / S) % v; };
      auto forward = [&](int j) {
        append_forward(list, forward_chunk(j) * S + s, micro_batch(j), layout, skips);
      };
      auto backward = [&](int j) {
        append_backward(list, (v - 1 - forward_chunk(j)) * S + s, micro_batch(j), layout, skips);
      };
      const int warmup = std::min(2 * (S - s - 1) + (v - 1) * S, total);
      for (int j = 0; j < warmup; ++j) forward(j);
      for (int j = 0; j + warmup < total; ++j) {
        forward(j + warmup);
        backward(j);
      }
      for (int j = total - warmup; j < total; ++j) backward(j);
      continue;
    }
    if (kind == ScheduleKind::ZeroBubbleH1) {
      append_zero_bubble_h1(list, s, layout, skips);
      continue;
    }
    if (kind == ScheduleKind::GPipe) {
      for (int mb = 0; mb < m; ++mb) append_forward(list, s, mb, layout, skips);
      for (int mb = 0; mb < m; ++mb) append_backward(list, s, mb, layout, skips);
      continue;
    }
    const int warmup = std::min(S - s - 1, m);
    int next_forward = 0, next_backward = 0;
    for (; next_forward < warmup; ++next_forward)
      append_forward(list, s, next_forward, layout, skips);
    while (next_forward < m) {
      append_forward(list, s, next_forward++, layout, skips);
      append_backward(list, s, next_backward++, layout, skips);
    }
    while (next_backward < m) append_backward(list, s, next_backward++, layout, skips);
  }
  return lists;
}

int message_tag(const Instruction& instruction) {
  const int kind = message_kind(instruction.op);
  if (kind == kNone) return -1;
  const int sender_chunk = is_send(instruction.op) ? instruction.chunk : instruction.peer_chunk;
  return (((instruction.micro_batch % 32) * 4 + kind) * kMaxVirtualStages + sender_chunk) * 32 +
         (instruction.skip_level + 1);
}

std::vector<std::vector<size_t>> receives_in_sender_order(
    const std::vector<std::vector<Instruction>>& lists, int stage) {
  // A message is (its tag, its micro-batch): the tag alone wraps every 32 micro-batches.
  using Message = std::pair<int, int>;
  std::vector<std::map<Message, size_t>> receives(lists.size());  // by sender
  const std::vector<Instruction>& mine = lists.at(static_cast<size_t>(stage));
  for (size_t i = 0; i < mine.size(); ++i)
    if (message_kind(mine[i].op) != kNone && !is_send(mine[i].op))
      receives.at(static_cast<size_t>(mine[i].peer_stage))
          .emplace(Message{message_tag(mine[i]), mine[i].micro_batch}, i);
  std::vector<std::vector<size_t>> order(lists.size());
  for (size_t p = 0; p < lists.size(); ++p) {
    for (const Instruction& ins : lists[p]) {
      if (!is_send(ins.op) || ins.peer_stage != stage) continue;
      auto it = receives[p].find(Message{message_tag(ins), ins.micro_batch});
      if (it == receives[p].end())
        throw std::logic_error("schedule: stage " + std::to_string(p) + "'s " + op_name(ins.op) +
                               " of micro-batch " + std::to_string(ins.micro_batch) +
                               " has no receive on stage " + std::to_string(stage));
      order[p].push_back(it->second);
      receives[p].erase(it);
    }
    if (!receives[p].empty())
      throw std::logic_error("schedule: stage " + std::to_string(stage) + " receives " +
                             std::to_string(receives[p].size()) + " message(s) stage " +
                             std::to_string(p) + " never sends");
  }
  return order;
}

const char* op_name(Op op) {
  switch (op) {
    case Op::RecvActivation:
      return "RecvActivation";
    case Op::RecvSkip:
      return "RecvSkip";
    case Op::Forward:
      return "Forward";
    case Op::SendActivation:
      return "SendActivation";
    case Op::SendSkip:
      return "SendSkip";
    case Op::RecvGradient:
      return "RecvGradient";
    case Op::RecvSkipGradient:
      return "RecvSkipGradient";
    case Op::Backward:
      return "Backward";
    case Op::SendGradient:
      return "SendGradient";
    case Op::SendSkipGradient:
      return "SendSkipGradient";
    case Op::BackwardWeight:
      return "BackwardWeight";
  }
  return "?";
}

std::string to_string(const Instruction& in) {
  std::string text = std::string(op_name(in.op)) + " mb " + std::to_string(in.micro_batch);
  if (in.chunk > 0) text += " chunk " + std::to_string(in.chunk);
  if (in.skip_level >= 0) text += " level " + std::to_string(in.skip_level);
  const std::string peer_chunk =
      in.peer_chunk > 0 ? " chunk " + std::to_string(in.peer_chunk) : std::string();
  if (is_send(in.op)) text += " to stage " + std::to_string(in.peer_stage) + peer_chunk;
  if (is_recv(in.op)) text += " from stage " + std::to_string(in.peer_stage) + peer_chunk;
  return text;
}

double theoretical_bubble(int stages, int micro_batches, int virtual_stages) {
  return double(stages - 1) / double(virtual_stages * micro_batches + stages - 1);
}

double theoretical_bubble(ScheduleKind kind, int stages, int micro_batches, int virtual_stages) {
  if (kind == ScheduleKind::ZeroBubbleH1)
    return double(stages - 1) / double(3 * micro_batches + stages - 1);
  return theoretical_bubble(stages, micro_batches, virtual_stages);
}

namespace {

// A message is (kind, micro-batch, skip level, from stage, from chunk, to stage, to chunk): a send
// and the receive that matches it give the same one.
using Message = std::tuple<int, int, int, int, int, int, int>;
using SendSites = std::map<Message, std::pair<int, size_t>>;  // message -> (stage, pc) sending it

std::string where(int s, size_t pc, const Instruction& in) {
  return "stage " + std::to_string(s) + " instruction " + std::to_string(pc) + " (" +
         to_string(in) + ")";
}

Message message_of(int s, const Instruction& in) {
  const int kind = message_kind(in.op);
  return is_send(in.op) ? Message{kind,     in.micro_batch, in.skip_level, s,
                                  in.chunk, in.peer_stage,  in.peer_chunk}
                        : Message{kind, in.micro_batch, in.skip_level, in.peer_stage, in.peer_chunk,
                                  s,    in.chunk};
}

// Every send in any list, up front, so that a receive without one reads as unmatched rather than
// as a deadlock. Returns what is wrong with the lists' peers or sends, or "".
std::string find_sends(const std::vector<std::vector<Instruction>>& lists, SendSites& sends) {
  const int S = static_cast<int>(lists.size());
  for (int s = 0; s < S; ++s)
    for (size_t pc = 0; pc < lists[s].size(); ++pc) {
      const Instruction& in = lists[s][pc];
      if (is_send(in.op) || is_recv(in.op)) {
        if (in.peer_stage < 0 || in.peer_stage >= S || in.peer_stage == s)
          return where(s, pc, in) + ": peer is not another stage of " + std::to_string(S);
      }
      if (is_send(in.op) && !sends.emplace(message_of(s, in), std::make_pair(s, pc)).second)
        return where(s, pc, in) + ": the same message is sent twice";
    }
  return "";
}

// Seconds a message takes on its link: activations and their gradients by the lower virtual stage
// of the boundary they cross (chunk · S + stage; the stage itself without interleaving), skips and
// their gradients by level.
double message_seconds(const SimulationCosts& costs, int S, int s, const Instruction& in) {
  const MessageKind kind = message_kind(in.op);
  if (kind == kSkip || kind == kSkipGradient)
    return in.skip_level < static_cast<int>(costs.skip_message.size())
               ? costs.skip_message[in.skip_level]
               : 0.0;
  const int link = std::min(in.chunk * S + s, in.peer_chunk * S + in.peer_stage);
  return link < static_cast<int>(costs.activation_message.size()) ? costs.activation_message[link]
                                                                  : 0.0;
}

// The pipeline while it runs: each stage's clock and next instruction, the messages in flight,
// the (micro-batch, chunk) pairs each stage holds activations for. Compute time and the peak of
// held pairs go straight into `result`, so that a failed run still reports how far it got.
struct SimulatedPipeline {
  const std::vector<std::vector<Instruction>>& lists;
  const SimulationCosts& costs;
  const SendSites& sends;
  SimulationResult& result;
  int S = static_cast<int>(lists.size());
  std::map<Message, double> arrival = {};           // issued send -> time it is receivable
  std::map<std::pair<int, int>, double> link = {};  // (from, to) -> last arrival on it
  std::set<Message> received = {};
  std::vector<size_t> pc = std::vector<size_t>(S, 0);
  std::vector<double> clock = std::vector<double>(S, 0.0);
  std::vector<int> alive = std::vector<int>(S, 0);
  using Held = std::vector<std::set<std::pair<int, int>>>;  // per stage: (mb, chunk) pairs
  Held forwarded = Held(S), backwarded = Held(S), weighted = Held(S);
  bool evaluation = false;  // forward-only lists: a Forward frees its activations at once
  // Per stage: whether its list splits the backward into B and W (zbh1); then W frees the
  // activations, not B.
  std::vector<bool> split = splits_backward(lists);

  static std::vector<bool> splits_backward(const std::vector<std::vector<Instruction>>& lists) {
    std::vector<bool> out;
    for (const auto& list : lists)
      out.push_back(std::any_of(list.begin(), list.end(), [](const Instruction& in) {
        return in.op == Op::BackwardWeight;
      }));
    return out;
  }

  // What must have run before `in` on stage s, and where it is recorded.
  std::string check_order(int s, const Instruction& in) {
    const std::pair<int, int> pair{in.micro_batch, in.chunk};
    const bool forward = in.op == Op::Forward, weight = in.op == Op::BackwardWeight;
    if (!forward && !forwarded[s].count(pair))
      return where(s, pc[s], in) + ": " + op_name(in.op) + " before its Forward";
    if (weight && !backwarded[s].count(pair))
      return where(s, pc[s], in) + ": BackwardWeight before its Backward";
    Held& done = forward ? forwarded : weight ? weighted : backwarded;
    if (!done[s].insert(pair).second)
      return where(s, pc[s], in) + ": second " + op_name(in.op) + " of this micro-batch";
    return "";
  }

  // A Forward, Backward or BackwardWeight of stage s: each (micro-batch, chunk) once, in that
  // order; the stage's clock advances by its cost, and a Forward holds its activations until the
  // Backward (with W's: until the BackwardWeight).
  std::string compute(int s, const Instruction& in) {
    if (const std::string error = check_order(s, in); !error.empty()) return error;
    const bool forward = in.op == Op::Forward, weight = in.op == Op::BackwardWeight;
    // Without per-op costs: the stage's own, else the classic forward 1, backward 2 (split:
    // B 1, W 1).
    const std::vector<double>& per_stage =
        forward ? costs.forward : weight ? costs.weight : costs.backward;
    const double fallback = forward || weight || split[s] ? 1.0 : 2.0;
    const double cost = costs.compute       ? costs.compute(s, in)
                        : per_stage.empty() ? fallback
                                            : per_stage[s];
    clock[s] += cost;
    result.busy[s] += cost;
    if (forward) result.max_alive[s] = std::max(result.max_alive[s], ++alive[s]);
    const bool frees = evaluation ? forward : split[s] ? weight : !forward;
    if (frees) --alive[s];
    return "";
  }

  // Stage s runs on until it must wait for a message that is not sent yet, or its list ends.
  // Returns what is wrong with the list, or "".
  std::string advance(int s, bool& progress) {
    const auto& list = lists[s];
    while (pc[s] < list.size()) {
      const Instruction& in = list[pc[s]];
      if (in.op == Op::Forward || in.op == Op::Backward || in.op == Op::BackwardWeight) {
        if (const std::string error = compute(s, in); !error.empty()) return error;
      } else if (is_send(in.op)) {
        // A link carries one message at a time: this one leaves when the last has arrived.
        double& free = link[{s, in.peer_stage}];
        free = std::max(clock[s], free) + message_seconds(costs, S, s, in);
        arrival[message_of(s, in)] = free;
      } else {
        const Message message = message_of(s, in);
        if (!sends.count(message))
          return where(s, pc[s], in) + ": no stage ever sends this message";
        auto it = arrival.find(message);
        if (it == arrival.end()) break;  // blocked until the sender gets there
        if (!received.insert(message).second)
          return where(s, pc[s], in) + ": this message is received twice";
        clock[s] = std::max(clock[s], it->second);
      }
      ++pc[s];
      progress = true;
    }
    return "";
  }

  // After no stage can move: each stage still waiting, and the send it waits for; "" if none.
  std::string blocked() const {
    std::string text;
    for (int s = 0; s < S; ++s)
      if (pc[s] < lists[s].size()) {
        const Instruction& in = lists[s][pc[s]];
        const auto [sender, sender_pc] = sends.at(message_of(s, in));
        text += (text.empty() ? "" : "; ") + where(s, pc[s], in) + " waits for stage " +
                std::to_string(sender) + " instruction " + std::to_string(sender_pc) +
                ", which stage " + std::to_string(sender) + " has not reached";
      }
    return text;
  }

  // After every list ran to its end: a send nobody received, or activations never freed; "".
  std::string unmatched() const {
    for (const auto& [message, origin] : sends)
      if (!received.count(message))
        return where(origin.first, origin.second, lists[origin.first][origin.second]) +
               ": sent but never received";
    for (int s = 0; s < S && !evaluation; ++s) {
      if (forwarded[s].size() != backwarded[s].size())
        return "stage " + std::to_string(s) + ": " + std::to_string(forwarded[s].size()) +
               " micro-batches forwarded but " + std::to_string(backwarded[s].size()) +
               " backwarded (activations never freed)";
      if (split[s] && weighted[s].size() != backwarded[s].size())
        return "stage " + std::to_string(s) + ": " + std::to_string(backwarded[s].size()) +
               " micro-batches backwarded but " + std::to_string(weighted[s].size()) +
               " weight gradients computed";
    }
    return "";
  }
};

}  // namespace

SimulationResult simulate(const std::vector<std::vector<Instruction>>& lists,
                          const SimulationCosts& costs, bool evaluation) {
  const int S = static_cast<int>(lists.size());
  SimulationResult result;
  result.max_alive.assign(S, 0);
  result.busy.assign(S, 0.0);
  result.finish.assign(S, 0.0);
  auto fail = [&](const std::string& error) {
    result.ok = false;
    result.error = error;
    return result;
  };
  if (!costs.forward.empty() && static_cast<int>(costs.forward.size()) != S)
    return fail("SimulationCosts.forward has " + std::to_string(costs.forward.size()) +
                " entries for " + std::to_string(S) + " stages");
  if (!costs.weight.empty() && static_cast<int>(costs.weight.size()) != S)
    return fail("SimulationCosts.weight has " + std::to_string(costs.weight.size()) +
                " entries for " + std::to_string(S) + " stages");
  if (!costs.backward.empty() && static_cast<int>(costs.backward.size()) != S)
    return fail("SimulationCosts.backward has " + std::to_string(costs.backward.size()) +
                " entries for " + std::to_string(S) + " stages");
  SendSites sends;
  if (const std::string error = find_sends(lists, sends); !error.empty()) return fail(error);

  // Round-robin over the stages until none can move: the order in which stages run does not
  // change the times, since each waits only for what it receives.
  SimulatedPipeline pipeline{lists, costs, sends, result};
  pipeline.evaluation = evaluation;
  bool progress = true;
  while (progress) {
    progress = false;
    for (int s = 0; s < S; ++s)
      if (const std::string error = pipeline.advance(s, progress); !error.empty())
        return fail(error);
  }
  if (const std::string blocked = pipeline.blocked(); !blocked.empty()) {
    result.deadlock = true;
    return fail("deadlock: " + blocked);
  }
  if (const std::string error = pipeline.unmatched(); !error.empty()) return fail(error);

  result.ok = true;
  result.finish = pipeline.clock;
  result.makespan = S ? *std::max_element(result.finish.begin(), result.finish.end()) : 0.0;
  double busy = 0;
  for (double b : result.busy) busy += b;
  result.bubble = result.makespan > 0 ? 1.0 - busy / (S * result.makespan) : 0.0;
  return result;
}

}  // namespace hg
