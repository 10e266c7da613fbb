// Stack blocks (pre-LN: h += Attn(LN1(h)); h += FFN(LN2(h))) and each stack's final LayerNorm.
#include <cmath>

#include "model/sublayers.h"
#include "model/unit_factories.h"

namespace hg {

AttentionConfig block_attention_config(const ModelConfig& m, const TensorParallel& tp,
                                       int global_block) {
  AttentionConfig cfg;
  cfg.kind = m.attention;
  cfg.d = m.d_model;
  cfg.heads = m.block_heads(global_block) / tp.size;
  cfg.stored_heads = cfg.heads;
  cfg.head_dim = m.head_dim();
  cfg.window = m.window;
  cfg.chunk = m.chunk;
  cfg.rank = m.rank;
  cfg.rope = m.positions == Positions::Rope;
  cfg.dconv = m.dconv;
  return cfg;
}

namespace {

// Registers the attention parameters of `prefix` (§2) for H stored heads and returns value and
// gradient views. Shapes are canonical (all H heads); the store keeps this rank's heads, in
// nested bands (tensor_parallel.h).
void add_attention_params(ParamStore& store, const std::string& prefix, const ModelConfig& m, int H,
                          float wo_std, AttentionParams& w, AttentionParams& g) {
  const TensorParallel& tp = store.tensor_parallel();
  const int d = m.d_model, e = m.head_dim(), he = H * e;
  ParamSlice by_channel, by_channel_row, by_rank_column, by_rank;
  if (tp.active()) {
    by_channel = {1, head_columns(tp, H, e, tp.nested.heads)};  // columns of [·, H·e]
    by_channel_row = {0, by_channel.index};                     // rows of wo, elements of [H·e]
    by_rank_column = {1, head_columns(tp, H, m.rank, tp.nested.heads)};
    by_rank = {0, by_rank_column.index};
  }
  auto bind = [&](const std::string& name, const Shape& shape, ParamInit init, float std,
                  const ParamSlice& slice, float*& value, float*& grad) {
    Param& p = store.add(prefix + "/" + name, shape, init, std, slice);
    value = p.value.data();
    grad = p.grad.data();
  };
  bind("wq", {d, he}, ParamInit::Normal, 0.02f, by_channel, w.wq, g.wq);
  bind("wk", {d, he}, ParamInit::Normal, 0.02f, by_channel, w.wk, g.wk);
  bind("wv", {d, he}, ParamInit::Normal, 0.02f, by_channel, w.wv, g.wv);
  bind("wo", {he, d}, ParamInit::Normal, wo_std, by_channel_row, w.wo, g.wo);
  if (m.dconv) {
    bind("dconv_q", {3, he}, ParamInit::DConvTaps, 0, by_channel, w.dconv_q, g.dconv_q);
    bind("dconv_k", {3, he}, ParamInit::DConvTaps, 0, by_channel, w.dconv_k, g.dconv_k);
    bind("dconv_v", {3, he}, ParamInit::DConvTaps, 0, by_channel, w.dconv_v, g.dconv_v);
  }
  if (m.attention == AttentionKind::LongShort) {
    const int hr = H * m.rank;
    bind("proj/weight", {d, hr}, ParamInit::Normal, 0.02f, by_rank_column, w.proj_weight,
         g.proj_weight);
    bind("proj/bias", {hr}, ParamInit::Zero, 0, by_rank, w.proj_bias, g.proj_bias);
    bind("norm_window/gain", {he}, ParamInit::One, 0, by_channel_row, w.norm_window_gain,
         g.norm_window_gain);
    bind("norm_window/bias", {he}, ParamInit::Zero, 0, by_channel_row, w.norm_window_bias,
         g.norm_window_bias);
    bind("norm_global/gain", {he}, ParamInit::One, 0, by_channel_row, w.norm_global_gain,
         g.norm_global_gain);
    bind("norm_global/bias", {he}, ParamInit::Zero, 0, by_channel_row, w.norm_global_bias,
         g.norm_global_bias);
  }
}

class BlockUnit : public Unit {
 public:
  BlockUnit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store)
      : Unit(plan.name),
        d_(m.d_model),
        n_(plan.rows),
        global_block_(plan.global_block),
        act_(m.activation),
        be_(store.backend()),
        tp_(store.tensor_parallel()),
        cfg_(block_attention_config(m, tp_, plan.global_block)),
        stored_heads_(m.block_heads(plan.global_block)) {
    // §1.6: output projections of stack blocks start smaller, by the total stack depth.
    const float out_std = 0.02f / std::sqrt(2.0f * static_cast<float>(m.total_stack_blocks()));
    norm1_ = add_norm(store, plan.name + "/norm1", d_);
    add_attention_params(store, plan.name + "/attn", m, stored_heads_, out_std, attn_w_, attn_g_);
    norm2_ = add_norm(store, plan.name + "/norm2", d_);
    ffn_ = add_ffn(store, plan.name + "/ffn", d_, m.block_ffn(plan.global_block), out_std,
                   tp_.nested.ffn);
  }

  void forward(Slot& slot, const Tensor& in, Tensor& out) override {
    auto& c = caches_.acquire(slot.id);
    const int64_t B = slot.batch;
    ensure_shape(be_, c.h, {B, n_, d_});
    c.attn_cfg = cfg_;
    c.attn_cfg.heads = heads(slot);
    attention_sublayer_forward(be_, c.h.data(), c.attn, in.data(), norm1_, attn_w_, c.attn_cfg, B,
                               n_, site(slot, "attn"), tp_);
    ensure_shape(be_, out, {B, n_, d_});
    ffn_sublayer_forward(be_, out.data(), c.ffn, c.h.data(), norm2_, ffn_, B, n_, d_, width(slot),
                         act_, site(slot, "ffn"), tp_);
  }

  void backward(Slot& slot, const Tensor& dout, Tensor& din) override {
    auto& c = caches_.at(slot.id);
    const int64_t B = slot.batch;
    // dh between the two sublayers: per thread, shared by every block it runs.
    float* dh = be_.scratch(kBlockGradientSlot, B * n_ * d_);
    ffn_sublayer_backward(be_, dh, dout.data(), c.ffn, norm2_, ffn_, B, n_, d_, act_,
                          site(slot, "ffn"), tp_);
    ensure_shape(be_, din, {B, n_, d_});
    attention_sublayer_backward(be_, din.data(), dh, c.attn, norm1_, attn_w_, attn_g_, c.attn_cfg,
                                B, n_, site(slot, "attn"), tp_);
    caches_.release(slot.id);
  }

  void release(int64_t id) override { caches_.release(id); }
  int64_t live_slots() const override { return caches_.live(); }
  bool share_released_caches_with(Unit& other) override {
    auto* block = dynamic_cast<BlockUnit*>(&other);
    if (!block) return false;
    caches_.share_released_with(block->caches_);
    return true;
  }

 private:
  struct Cache {
    AttentionSublayerCache attn;
    AttentionConfig attn_cfg;  // cfg_ at the slot's active heads
    Tensor h;  // [B, n, d] between the two sublayers
    FfnSublayerCache ffn;
  };
  // The local active FFN width and head count: slot widths are canonical.
  int width(const Slot& slot) const {
    return slot.widths ? local_width(ffn_, tp_, slot.widths->ffn.at(global_block_)) : ffn_.F;
  }
  int heads(const Slot& slot) const {
    if (!slot.widths) return cfg_.stored_heads;
    return local_nested_width(tp_, stored_heads_, tp_.nested.heads,
                              slot.widths->heads.at(global_block_));
  }
  DropoutSite site(const Slot& s, const char* what) const {
    return make_dropout_site(s.ctx->seed, s.ctx->step, s.first_sample, s.ctx->dropout,
                             name() + "/" + what);
  }
  int d_;
  int64_t n_;
  int global_block_;
  Activation act_;
  Backend& be_;
  TensorParallel tp_;
  AttentionConfig cfg_;  // at every stored head of this rank
  int stored_heads_;     // canonical
  NormParams norm1_, norm2_;
  AttentionParams attn_w_, attn_g_;
  FfnParams ffn_;
  SlotCaches<Cache> caches_;
};

class StackNormUnit : public Unit {
 public:
  StackNormUnit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store)
      : Unit(plan.name),
        d_(m.d_model),
        n_(plan.rows),
        be_(store.backend()),
        norm_(add_norm(store, plan.name, d_)) {}

  void forward(Slot& slot, const Tensor& in, Tensor& out) override {
    auto& c = caches_.acquire(slot.id);
    c.x = in;
    norm_forward(be_, c.norm, c.x.data(), norm_, slot.batch * n_, d_);
    out = c.norm.out;
  }

  void backward(Slot& slot, const Tensor& dout, Tensor& din) override {
    auto& c = caches_.at(slot.id);
    ensure_shape(be_, din, {slot.batch, n_, d_});
    norm_backward(be_, din.data(), dout.data(), c.norm, c.x.data(), norm_, slot.batch * n_, d_);
    caches_.release(slot.id);
  }

  void release(int64_t id) override { caches_.release(id); }
  int64_t live_slots() const override { return caches_.live(); }

 private:
  struct Cache {
    Tensor x;
    NormCache norm;
  };
  int d_;
  int64_t n_;
  Backend& be_;
  NormParams norm_;
  SlotCaches<Cache> caches_;
};

}  // namespace

std::unique_ptr<Unit> make_block_unit(const ModelConfig& m, const UnitPlan& plan,
                                      ParamStore& store) {
  return std::make_unique<BlockUnit>(m, plan, store);
}
std::unique_ptr<Unit> make_stack_norm_unit(const ModelConfig& m, const UnitPlan& plan,
                                           ParamStore& store) {
  return std::make_unique<StackNormUnit>(m, plan, store);
}

}  // namespace hg
