#include "model/sublayers.h"

#include <vector>

namespace hg {

namespace {

// dout through the branch's dropout mask: dout itself when dropout is off (the mask is then
// the identity). Backward temporaries live in the backend's workspace: they cost no memory per
// micro-batch in flight and no allocation per call.
const float* branch_gradient(Backend& be, const float* dout, const DropoutSite& drop, int64_t B,
                             int64_t per_sample) {
  if (drop.p == 0.0f) return dout;
  float* buffer = be.scratch(kBranchGradientSlot, B * per_sample);
  be.copy(buffer, dout, B * per_sample);
  be.dropout_backward(buffer, drop, B, per_sample);
  return buffer;
}

}  // namespace

void ensure_shape(Backend& be, Tensor& t, const Shape& shape) {
  if (t.device() != be.device())
    t = Tensor(shape, be.device());
  else if (t.shape() != shape)
    t.reset(shape);
}

void reset_on(Backend& be, Tensor& t, const Shape& shape) {
  if (t.device() != be.device())
    t = Tensor(shape, be.device());
  else
    t.reset(shape);
}

NormParams add_norm(ParamStore& store, const std::string& prefix, int width) {
  return {&store.add(prefix + "/gain", {width}, ParamInit::One),
          &store.add(prefix + "/bias", {width}, ParamInit::Zero)};
}

void norm_forward(Backend& be, NormCache& cache, const float* x, const NormParams& p, int64_t rows,
                  int d) {
  ensure_shape(be, cache.out, {rows, d});
  ensure_shape(be, cache.mean, {rows});
  ensure_shape(be, cache.rstd, {rows});
  be.layernorm_forward(cache.out.data(), cache.mean.data(), cache.rstd.data(), x,
                       p.gain->value.data(), p.bias->value.data(), rows, 1, d);
}

void norm_backward(Backend& be, float* dx, const float* dout, const NormCache& cache,
                   const float* x, const NormParams& p, int64_t rows, int d) {
  be.layernorm_backward(dx, p.gain->grad.data(), p.bias->grad.data(), dout, x, p.gain->value.data(),
                        cache.mean.data(), cache.rstd.data(), rows, 1, d);
}

FfnParams add_ffn(ParamStore& store, const std::string& prefix, int d, int F, float w2_std,
                  const std::vector<int>& granularities) {
  const TensorParallel& tp = store.tensor_parallel();
  FfnParams p;
  ParamSlice columns, rows;
  if (tp.active()) {
    columns = {1, nested_units(tp, F, granularities)};
    rows = {0, columns.index};
  }
  p.w1 = &store.add(prefix + "/w1", {d, F}, ParamInit::Normal, 0.02f, columns);
  p.b1 = &store.add(prefix + "/b1", {F}, ParamInit::Zero, 0.0f, rows);
  p.w2 = &store.add(prefix + "/w2", {F, d}, ParamInit::Normal, w2_std, rows);
  p.b2 = &store.add(prefix + "/b2", {d}, ParamInit::Zero);
  p.F = static_cast<int>(p.w1->value.dim(1));
  p.canonical_F = F;
  p.granularities = granularities;
  return p;
}

int local_width(const FfnParams& ffn, const TensorParallel& tp, int width) {
  return local_nested_width(tp, ffn.canonical_F, ffn.granularities, width);
}

void ffn_sublayer_forward(Backend& be, float* out, FfnSublayerCache& c, const float* x,
                          const NormParams& norm, const FfnParams& p, int64_t B, int64_t n, int d,
                          int width, Activation act, const DropoutSite& drop,
                          const TensorParallel& tp) {
  const int64_t rows = B * n;
  c.x = x;
  c.width = width;
  norm_forward(be, c.norm, x, norm, rows, d);
  // Under tensor parallelism b2 is added once, after the partial outputs are summed.
  be.ffn_forward(out, c.ffn, c.norm.out.data(), p.w1->value.data(), p.b1->value.data(),
                 p.w2->value.data(), tp.active() ? nullptr : p.b2->value.data(), rows, d, p.F,
                 width, act);
  if (tp.active()) {
    tp_allreduce(tp, out, rows * d);
    be.add_row_bias(out, p.b2->value.data(), rows, d);
  }
  be.dropout_forward(out, drop, B, n * d);
  be.add_into(out, x, rows * d);
}

void ffn_sublayer_backward(Backend& be, float* dx, const float* dout, FfnSublayerCache& c,
                           const NormParams& norm, const FfnParams& p, int64_t B, int64_t n, int d,
                           Activation act, const DropoutSite& drop, const TensorParallel& tp) {
  const int64_t rows = B * n;
  const float* dbranch = branch_gradient(be, dout, drop, B, n * d);
  float* dln = be.scratch(kNormGradientSlot, rows * d);
  be.ffn_backward(dln, p.w1->grad.data(), p.b1->grad.data(), p.w2->grad.data(), p.b2->grad.data(),
                  dbranch, c.ffn, c.norm.out.data(), p.w1->value.data(), p.w2->value.data(), rows,
                  d, p.F, c.width, act);
  tp_allreduce(tp, dln, rows * d);  // this rank's hidden units' share of dLN
  norm_backward(be, dx, dln, c.norm, c.x, norm, rows, d);
  be.add_into(dx, dout, rows * d);
}

void attention_sublayer_forward(Backend& be, float* out, AttentionSublayerCache& c, const float* x,
                                const NormParams& norm, const AttentionParams& w,
                                const AttentionConfig& cfg, int64_t B, int64_t n,
                                const DropoutSite& drop, const TensorParallel& tp) {
  const int64_t rows = B * n;
  const int d = cfg.d;
  ensure_shape(be, c.x, {rows, d});
  be.copy(c.x.data(), x, rows * d);
  norm_forward(be, c.norm, c.x.data(), norm, rows, d);
  be.attention_forward(out, c.attn, c.norm.out.data(), w, cfg, B, n);
  tp_allreduce(tp, out, rows * d);  // this rank's heads' partial sum
  be.dropout_forward(out, drop, B, n * d);
  be.add_into(out, c.x.data(), rows * d);
}

void attention_sublayer_backward(Backend& be, float* dx, const float* dout,
                                 AttentionSublayerCache& c, const NormParams& norm,
                                 const AttentionParams& w, const AttentionParams& g,
                                 const AttentionConfig& cfg, int64_t B, int64_t n,
                                 const DropoutSite& drop, const TensorParallel& tp) {
  const int64_t rows = B * n;
  const int d = cfg.d;
  const float* dbranch = branch_gradient(be, dout, drop, B, n * d);
  float* dln = be.scratch(kNormGradientSlot, rows * d);
  be.attention_backward(dln, g, dbranch, c.attn, c.norm.out.data(), w, cfg, B, n);
  tp_allreduce(tp, dln, rows * d);
  norm_backward(be, dx, dln, c.norm, c.x.data(), norm, rows, d);
  be.add_into(dx, dout, rows * d);
}

DropoutSite make_dropout_site(uint64_t seed, int64_t step, int64_t first_sample, float p,
                              const std::string& canonical_site) {
  DropoutSite s;
  s.seed = seed;
  s.step = step;
  s.first_sample = first_sample;
  s.site = dropout_site_id(canonical_site);
  s.p = p;
  return s;
}

}  // namespace hg
