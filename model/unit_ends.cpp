// The two ends of the model: token embedding (+ dropout) and the untied head + cross-entropy.
// Token ids stay host int32 (the data loader's); a device backend stages them with the op.
#include <vector>

#include "model/sublayers.h"
#include "model/unit_factories.h"

namespace hg {
namespace {

// Inputs x[0..L-1] and targets x[1..L] of a [B, L+1] token window.
void split_window(const int32_t* tokens, int64_t B, int64_t L, std::vector<int32_t>& inputs,
                  std::vector<int32_t>& targets) {
  inputs.resize(B * L);
  targets.resize(B * L);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t) {
      inputs[b * L + t] = tokens[b * (L + 1) + t];
      targets[b * L + t] = tokens[b * (L + 1) + t + 1];
    }
}

class EmbedUnit : public Unit {
 public:
  EmbedUnit(const ModelConfig& m, int seq_len, ParamStore& store)
      : Unit("embed"),
        d_(m.d_model),
        L_(seq_len),
        be_(store.backend()),
        weight_(&store.add("embed/weight", {m.vocab_size, m.d_model}, ParamInit::Normal, 0.02f)) {}

  void forward(Slot& slot, const Tensor&, Tensor& out) override {
    auto& c = caches_.acquire(slot.id);
    std::vector<int32_t> targets;
    split_window(slot.tokens, slot.batch, L_, c.inputs, targets);
    ensure_shape(be_, out, {slot.batch, L_, d_});
    be_.embedding_forward(out.data(), c.inputs.data(), weight_->value.data(), slot.batch * L_, d_);
    be_.dropout_forward(out.data(), site(slot), slot.batch, L_ * d_);
  }

  void backward(Slot& slot, const Tensor& dout, Tensor& din) override {
    auto& c = caches_.at(slot.id);
    Tensor d = dout;
    be_.dropout_backward(d.data(), site(slot), slot.batch, L_ * d_);
    be_.embedding_backward(weight_->grad.data(), d.data(), c.inputs.data(), slot.batch * L_, d_);
    din = Tensor();
    caches_.release(slot.id);
  }

  void release(int64_t id) override { caches_.release(id); }
  int64_t live_slots() const override { return caches_.live(); }

 private:
  struct Cache {
    std::vector<int32_t> inputs;  // [B·L]
  };
  DropoutSite site(const Slot& s) const {
    return make_dropout_site(s.ctx->seed, s.ctx->step, s.first_sample, s.ctx->dropout, "embed");
  }
  int d_;
  int64_t L_;
  Backend& be_;
  Param* weight_;
  SlotCaches<Cache> caches_;
};

class HeadUnit : public Unit {
 public:
  HeadUnit(const ModelConfig& m, int seq_len, ParamStore& store)
      : Unit("head"),
        d_(m.d_model),
        V_(m.vocab_size),
        L_(seq_len),
        be_(store.backend()),
        weight_(&store.add("head/weight", {m.d_model, m.vocab_size}, ParamInit::Normal, 0.02f)),
        bias_(&store.add("head/bias", {m.vocab_size}, ParamInit::Zero)) {}

  void forward(Slot& slot, const Tensor& in, Tensor& out) override {
    auto& c = caches_.acquire(slot.id);
    const int64_t rows = slot.batch * L_;
    std::vector<int32_t> inputs;
    split_window(slot.tokens, slot.batch, L_, inputs, c.targets);
    c.h = in;
    ensure_shape(be_, c.logits, {rows, V_});
    be_.linear_forward(c.logits.data(), c.h.data(), weight_->value.data(), bias_->value.data(),
                       rows, d_, V_, V_);
    float* losses = be_.scratch(kTokenLossSlot, rows);
    be_.cross_entropy_forward(losses, c.logits.data(), c.targets.data(), rows, V_);
    slot.loss_sum += be_.sum(losses, rows);
    if (slot.logits) *slot.logits = c.logits;
    out = Tensor();
  }

  void backward(Slot& slot, const Tensor&, Tensor& din) override {
    auto& c = caches_.at(slot.id);
    const int64_t rows = slot.batch * L_;
    // The logits buffer becomes its own gradient: it is not needed after this.
    be_.cross_entropy_backward(c.logits.data(), c.logits.data(), c.targets.data(),
                               slot.ctx->loss_scale, rows, V_);
    ensure_shape(be_, din, {slot.batch, L_, d_});
    be_.linear_backward(din.data(), weight_->grad.data(), bias_->grad.data(), c.logits.data(),
                        c.h.data(), weight_->value.data(), rows, d_, V_, V_);
    caches_.release(slot.id);
  }

  void release(int64_t id) override { caches_.release(id); }
  int64_t live_slots() const override { return caches_.live(); }

 private:
  struct Cache {
    Tensor h;       // [B·L, d] head input
    Tensor logits;  // [B·L, V]
    std::vector<int32_t> targets;
  };
  int d_, V_;
  int64_t L_;
  Backend& be_;
  Param* weight_;
  Param* bias_;
  SlotCaches<Cache> caches_;
};

}  // namespace

std::unique_ptr<Unit> make_embed_unit(const ModelConfig& m, int seq_len, ParamStore& store) {
  return std::make_unique<EmbedUnit>(m, seq_len, store);
}
std::unique_ptr<Unit> make_head_unit(const ModelConfig& m, int seq_len, ParamStore& store) {
  return std::make_unique<HeadUnit>(m, seq_len, store);
}

}  // namespace hg
