// down/i and up/i (§1.1, §1.4): shortening with the k-1 shift, pooling, upsampling, the hourglass
// residual `skip`, and the optional attention resampling blocks.
#include "model/sublayers.h"
#include "model/unit_factories.h"

namespace hg {

int level_factor(const ModelConfig& m, int level) {
  return m.stacks.at(level + 1).shortening / m.stacks.at(level).shortening;
}

namespace {

// Canonical shapes; the store keeps this rank's heads (split like block attention, §6).
MhaParams add_mha(ParamStore& store, const std::string& prefix, int d, int heads, int e,
                  MhaParams& grads) {
  const TensorParallel& tp = store.tensor_parallel();
  const int he = heads * e;
  ParamSlice columns, rows;
  if (tp.active()) {
    columns = {1, head_columns(tp, heads, e)};
    rows = {0, columns.index};
  }
  MhaParams w;
  auto bind = [&](const char* name, const Shape& shape, const ParamSlice& slice, float*& value,
                  float*& grad) {
    Param& p = store.add(prefix + "/" + name, shape, ParamInit::Normal, 0.02f, slice);
    value = p.value.data();
    grad = p.grad.data();
  };
  bind("wq", {d, he}, columns, w.wq, grads.wq);
  bind("wk", {d, he}, columns, w.wk, grads.wk);
  bind("wv", {d, he}, columns, w.wv, grads.wv);
  bind("wo", {he, d}, rows, w.wo, grads.wo);
  return w;
}

// What down/i and up/i share: the level's sizes, the resampling choice, the attention block.
class ResampleUnit : public Unit {
 protected:
  ResampleUnit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store, FunnelMask mask)
      : Unit(plan.name),
        level_(plan.stack),
        k_(level_factor(m, plan.stack)),
        d_(m.d_model),
        heads_(m.heads / store.tensor_parallel().size),
        e_(m.head_dim()),
        mask_(mask),
        act_(m.activation),
        attention_(m.resampling == Resampling::Attention),
        be_(store.backend()),
        tp_(store.tensor_parallel()) {
    if (attention_) {
      norm_a_ = add_norm(store, plan.name + "/norma", d_);
      norm_b_ = add_norm(store, plan.name + "/normb", d_);
      norm_c_ = add_norm(store, plan.name + "/normc", d_);
      mha_w_ = add_mha(store, plan.name + "/attn", d_, m.heads, e_, mha_g_);
      ffn_ = add_ffn(store, plan.name + "/ffn", d_, m.ffn, 0.02f);
    }
  }

  struct AttentionCache {
    NormCache norm_a;  // LNa(input side)
    NormCache norm_b;  // LNb(pooled / upsampled)
    Tensor pre_b;      // [B, nq, d] LNb's input
    Tensor q;          // [B, nq, d] queries (Up: includes the skip)
    MhaCache mha;
    Tensor a;  // [B, nq, d] q + MHA
    FfnSublayerCache ffn;
  };

  // a = q + Dropout(MHA(q, kv)); y = a + Dropout(FFN_F(LNc(a))). Returns y in `out`.
  void attention_tail_forward(AttentionCache& c, const Slot& slot, const float* kv, int64_t nq,
                              int64_t nk, Tensor& out) {
    const int64_t B = slot.batch;
    reset_on(be_, c.a, {B, nq, d_});
    be_.mha_forward(c.a.data(), c.mha, c.q.data(), kv, mha_w_, d_, heads_, e_, mask_, k_, B, nq,
                    nk);
    tp_allreduce(tp_, c.a.data(), B * nq * d_);  // this rank's heads' partial sum
    be_.dropout_forward(c.a.data(), site(slot, "attn"), B, nq * d_);
    be_.add_into(c.a.data(), c.q.data(), B * nq * d_);
    reset_on(be_, out, {B, nq, d_});
    ffn_sublayer_forward(be_, out.data(), c.ffn, c.a.data(), norm_c_, ffn_, B, nq, d_, ffn_.F, act_,
                         site(slot, "ffn"), tp_);
  }

  // From dy: dq (=) and dkv (=, MHA's part only).
  void attention_tail_backward(AttentionCache& c, const Slot& slot, const float* dy,
                               const float* kv, int64_t nq, int64_t nk, Tensor& dq, Tensor& dkv) {
    const int64_t B = slot.batch;
    Tensor da({B, nq, d_}, be_.device());
    ffn_sublayer_backward(be_, da.data(), dy, c.ffn, norm_c_, ffn_, B, nq, d_, act_,
                          site(slot, "ffn"), tp_);
    Tensor dmha = da;
    be_.dropout_backward(dmha.data(), site(slot, "attn"), B, nq * d_);
    reset_on(be_, dq, {B, nq, d_});
    reset_on(be_, dkv, {B, nk, d_});
    be_.mha_backward(dq.data(), dkv.data(), mha_g_, dmha.data(), c.mha, c.q.data(), kv, mha_w_, d_,
                     heads_, e_, mask_, k_, B, nq, nk);
    // Partial input gradients of this rank's heads, summed before they join replicated paths.
    tp_allreduce(tp_, dq.data(), B * nq * d_);
    tp_allreduce(tp_, dkv.data(), B * nk * d_);
    be_.add_into(dq.data(), da.data(), B * nq * d_);
  }

  DropoutSite site(const Slot& s, const char* what) const {
    return make_dropout_site(s.ctx->seed, s.ctx->step, s.first_sample, s.ctx->dropout,
                             name() + "/" + what);
  }

  int level_, k_, d_, heads_, e_;  // heads_: held by this rank
  FunnelMask mask_;
  Activation act_;
  bool attention_;
  Backend& be_;
  TensorParallel tp_;
  NormParams norm_a_, norm_b_, norm_c_;
  MhaParams mha_w_, mha_g_;
  FfnParams ffn_;
};

class DownUnit : public ResampleUnit {
 public:
  DownUnit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store)
      : ResampleUnit(m, plan, store, FunnelMask::Down),
        n_(plan.rows),
        linear_(m.downsample == Downsample::Linear) {
    if (linear_) {
      pool_w_ = &store.add(plan.name + "/pool/weight", {k_ * d_, d_}, ParamInit::Normal, 0.02f);
      pool_b_ = &store.add(plan.name + "/pool/bias", {d_}, ParamInit::Zero);
    }
  }

  void forward(Slot& slot, const Tensor& in, Tensor& out) override {
    auto& c = caches_.acquire(slot.id);
    const int64_t B = slot.batch, m = n_ / k_;
    slot.skips[level_] = in;
    reset_on(be_, c.z, {B, n_, d_});
    be_.shift_right_forward(c.z.data(), in.data(), B, n_, d_, k_ - 1);
    const float* pool_in = c.z.data();
    if (attention_) {
      norm_forward(be_, c.attn.norm_a, c.z.data(), norm_a_, B * n_, d_);
      pool_in = c.attn.norm_a.out.data();
    }
    Tensor& pooled = attention_ ? c.attn.pre_b : out;
    pool(pooled, pool_in, B);
    if (!attention_) return;
    norm_forward(be_, c.attn.norm_b, c.attn.pre_b.data(), norm_b_, B * m, d_);
    c.attn.q = c.attn.norm_b.out;
    attention_tail_forward(c.attn, slot, c.attn.norm_a.out.data(), m, n_, out);
  }

  void backward(Slot& slot, const Tensor& dout, Tensor& din) override {
    auto& c = caches_.at(slot.id);
    const int64_t B = slot.batch, m = n_ / k_;
    Tensor dz({B, n_, d_}, be_.device());
    if (!attention_) {
      pool_backward(dz.data(), dout.data(), c.z.data(), B);
    } else {
      Tensor dq, dzn;
      attention_tail_backward(c.attn, slot, dout.data(), c.attn.norm_a.out.data(), m, n_, dq, dzn);
      Tensor dpooled({B, m, d_}, be_.device());
      norm_backward(be_, dpooled.data(), dq.data(), c.attn.norm_b, c.attn.pre_b.data(), norm_b_,
                    B * m, d_);
      Tensor dzn_pool({B, n_, d_}, be_.device());
      pool_backward(dzn_pool.data(), dpooled.data(), c.attn.norm_a.out.data(), B);
      be_.add_into(dzn.data(), dzn_pool.data(), B * n_ * d_);
      norm_backward(be_, dz.data(), dzn.data(), c.attn.norm_a, c.z.data(), norm_a_, B * n_, d_);
    }
    reset_on(be_, din, {B, n_, d_});
    be_.shift_right_backward(din.data(), dz.data(), B, n_, d_, k_ - 1);
    // The skip's gradient arrives from up/level, whose backward ran before this one.
    auto skip_grad = slot.skip_grads.find(level_);
    be_.add_into(din.data(), skip_grad->second.data(), B * n_ * d_);
    slot.skip_grads.erase(skip_grad);
    caches_.release(slot.id);
  }

  void release(int64_t id) override { caches_.release(id); }
  int64_t live_slots() const override { return caches_.live(); }

 private:
  struct Cache {
    Tensor z;  // [B, n, d] ShiftRight(input, k-1)
    AttentionCache attn;
  };
  void pool(Tensor& out, const float* z, int64_t B) {
    reset_on(be_, out, {B, n_ / k_, d_});
    if (linear_)
      be_.pool_linear_forward(out.data(), z, pool_w_->value.data(), pool_b_->value.data(), B, n_,
                              d_, k_);
    else
      be_.pool_avg_forward(out.data(), z, B, n_, d_, k_);
  }
  void pool_backward(float* dz, const float* dout, const float* z, int64_t B) {
    if (linear_)
      be_.pool_linear_backward(dz, pool_w_->grad.data(), pool_b_->grad.data(), dout, z,
                               pool_w_->value.data(), B, n_, d_, k_);
    else
      be_.pool_avg_backward(dz, dout, B, n_, d_, k_);
  }
  int64_t n_;  // input rows per sample
  bool linear_;
  Param* pool_w_ = nullptr;
  Param* pool_b_ = nullptr;
  SlotCaches<Cache> caches_;
};

class UpUnit : public ResampleUnit {
 public:
  UpUnit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store)
      : ResampleUnit(m, plan, store, FunnelMask::Up),
        m_(plan.rows),
        linear_(m.upsample == Upsample::Linear) {
    if (linear_) {
      up_w_ = &store.add(plan.name + "/linear/weight", {d_, k_ * d_}, ParamInit::Normal, 0.02f);
      up_b_ = &store.add(plan.name + "/linear/bias", {k_ * d_}, ParamInit::Zero);
    }
    norm_out_ = add_norm(store, plan.name + "/norm_out", d_);
  }

  void forward(Slot& slot, const Tensor& in, Tensor& out) override {
    auto& c = caches_.acquire(slot.id);
    const int64_t B = slot.batch, n = m_ * k_;
    auto skip = slot.skips.find(level_);
    const float* up_in = in.data();
    if (attention_) {
      norm_forward(be_, c.attn.norm_a, in.data(), norm_a_, B * m_, d_);
      up_in = c.attn.norm_a.out.data();
      c.s = c.attn.norm_a.out;  // upsampling's input (needed by the linear weight's gradient)
    } else {
      c.s = in;
    }
    c.x = in;
    reset_on(be_, c.up, {B, n, d_});
    upsample(c.up.data(), up_in, B);
    const float* y = c.up.data();
    if (attention_) {
      norm_forward(be_, c.attn.norm_b, c.up.data(), norm_b_, B * n, d_);
      reset_on(be_, c.attn.q, {B, n, d_});
      be_.add(c.attn.q.data(), c.attn.norm_b.out.data(), skip->second.data(), B * n * d_);
      attention_tail_forward(c.attn, slot, up_in, n, m_, c.y);
      y = c.y.data();
    }
    c.y_in = Tensor({B, n, d_}, be_.device());
    be_.copy(c.y_in.data(), y, B * n * d_);
    norm_forward(be_, c.norm_out, c.y_in.data(), norm_out_, B * n, d_);
    reset_on(be_, out, {B, n, d_});
    be_.add(out.data(), c.norm_out.out.data(), skip->second.data(), B * n * d_);
    slot.skips.erase(skip);  // consumed: up/level is the skip's only reader
  }

  void backward(Slot& slot, const Tensor& dout, Tensor& din) override {
    auto& c = caches_.at(slot.id);
    const int64_t B = slot.batch, n = m_ * k_;
    Tensor dskip = dout;  // `+ skip` at the end
    Tensor dy({B, n, d_}, be_.device());
    norm_backward(be_, dy.data(), dout.data(), c.norm_out, c.y_in.data(), norm_out_, B * n, d_);
    Tensor dup_in({B, m_, d_}, be_.device());  // gradient w.r.t. the upsampling's input
    if (!attention_) {
      upsample_backward(dup_in.data(), dy.data(), c.s.data(), B);
      din = std::move(dup_in);
    } else {
      Tensor dq, dz;
      attention_tail_backward(c.attn, slot, dy.data(), c.s.data(), n, m_, dq, dz);
      be_.add_into(dskip.data(), dq.data(),
                   B * n * d_);  // q = LNb(...) + skip: the second skip add
      Tensor dup({B, n, d_}, be_.device());
      norm_backward(be_, dup.data(), dq.data(), c.attn.norm_b, c.up.data(), norm_b_, B * n, d_);
      upsample_backward(dup_in.data(), dup.data(), c.s.data(), B);
      be_.add_into(dz.data(), dup_in.data(), B * m_ * d_);
      reset_on(be_, din, {B, m_, d_});
      norm_backward(be_, din.data(), dz.data(), c.attn.norm_a, c.x.data(), norm_a_, B * m_, d_);
    }
    slot.skip_grads[level_] = std::move(dskip);
    caches_.release(slot.id);
  }

  void release(int64_t id) override { caches_.release(id); }
  int64_t live_slots() const override { return caches_.live(); }

 private:
  struct Cache {
    Tensor x;     // [B, m, d] input
    Tensor s;     // [B, m, d] upsampling input (x, or LNa(x))
    Tensor up;    // [B, n, d] Upsample(s)
    Tensor y;     // [B, n, d] attention block output
    Tensor y_in;  // [B, n, d] LN_out's input
    NormCache norm_out;
    AttentionCache attn;
  };
  void upsample(float* out, const float* s, int64_t B) {
    if (linear_)
      be_.upsample_linear_forward(out, s, up_w_->value.data(), up_b_->value.data(), B, m_, d_, k_);
    else
      be_.upsample_repeat_forward(out, s, B, m_, d_, k_);
  }
  void upsample_backward(float* ds, const float* dout, const float* s, int64_t B) {
    if (linear_)
      be_.upsample_linear_backward(ds, up_w_->grad.data(), up_b_->grad.data(), dout, s,
                                   up_w_->value.data(), B, m_, d_, k_);
    else
      be_.upsample_repeat_backward(ds, dout, B, m_, d_, k_);
  }
  int64_t m_;  // input rows per sample (shortened)
  bool linear_;
  Param* up_w_ = nullptr;
  Param* up_b_ = nullptr;
  NormParams norm_out_;
  SlotCaches<Cache> caches_;
};

}  // namespace

std::unique_ptr<Unit> make_down_unit(const ModelConfig& m, const UnitPlan& plan,
                                     ParamStore& store) {
  return std::make_unique<DownUnit>(m, plan, store);
}
std::unique_ptr<Unit> make_up_unit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store) {
  return std::make_unique<UpUnit>(m, plan, store);
}

}  // namespace hg
