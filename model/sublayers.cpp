#include "model/sublayers.h"

#include <vector>

#include "core/elementwise.h"
#include "layers/layernorm.h"

namespace hg {

namespace {

// Reshapes only on a shape change: every caller overwrites the whole buffer, so the zero-fill
// that Tensor::reset does would be wasted work in the steady state.
void ensure_shape(Tensor& t, const Shape& shape) {
  if (t.shape() != shape) t.reset(shape);
}

// Backward temporaries, per calling thread and shared by every sublayer it runs. They live only
// during one backward call, so here (not in the per-slot caches) they cost no memory per
// micro-batch in flight, and no allocation or zero-fill per call.
struct Workspace {
  Tensor dbranch;              // [rows, d] the branch gradient through dropout's mask
  Tensor dln;                  // [rows, d] gradient w.r.t. the LayerNorm output
  std::vector<float> dhidden;  // [rows, width] the FFN's hidden gradient
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

// dout through the branch's dropout mask: dout itself when dropout is off (the mask is then
// the identity).
const float* branch_gradient(const float* dout, const DropoutSite& drop, int64_t B,
                             int64_t per_sample, Tensor& buffer) {
  if (drop.p == 0.0f) return dout;
  ensure_shape(buffer, {B, per_sample});
  copy(buffer.data(), dout, B * per_sample);
  dropout_backward(buffer.data(), drop, B, per_sample);
  return buffer.data();
}

}  // namespace

NormParams add_norm(ParamStore& store, const std::string& prefix, int width) {
  return {&store.add(prefix + "/gain", {width}, ParamInit::One),
          &store.add(prefix + "/bias", {width}, ParamInit::Zero)};
}

void norm_forward(NormCache& cache, const float* x, const NormParams& p, int64_t rows, int d) {
  ensure_shape(cache.out, {rows, d});
  ensure_shape(cache.mean, {rows});
  ensure_shape(cache.rstd, {rows});
  layernorm_forward(cache.out.data(), cache.mean.data(), cache.rstd.data(), x, p.gain->value.data(),
                    p.bias->value.data(), rows, 1, d);
}

void norm_backward(float* dx, const float* dout, const NormCache& cache, const float* x,
                   const NormParams& p, int64_t rows, int d) {
  layernorm_backward(dx, p.gain->grad.data(), p.bias->grad.data(), dout, x, p.gain->value.data(),
                     cache.mean.data(), cache.rstd.data(), rows, 1, d);
}

FfnParams add_ffn(ParamStore& store, const std::string& prefix, int d, int F, float w2_std,
                  const std::vector<int>& granularities) {
  const TensorParallel& tp = store.tensor_parallel();
  FfnParams p;
  ParamSlice columns, rows;
  if (tp.active()) {
    columns = {1, ffn_units(tp, F, granularities)};
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
  return local_ffn_width(tp, ffn.canonical_F, ffn.granularities, width);
}

namespace {

// out[r, :] += bias for every row.
void add_row_bias(float* out, const float* bias, int64_t rows, int d) {
  for (int64_t r = 0; r < rows; ++r) add_into(out + r * d, bias, d);
}

}  // namespace

void ffn_sublayer_forward(float* out, FfnSublayerCache& c, const float* x, const NormParams& norm,
                          const FfnParams& p, int64_t B, int64_t n, int d, int width,
                          Activation act, const DropoutSite& drop, const TensorParallel& tp) {
  const int64_t rows = B * n;
  ensure_shape(c.x, {rows, d});
  copy(c.x.data(), x, rows * d);
  c.width = width;
  norm_forward(c.norm, c.x.data(), norm, rows, d);
  // Under tensor parallelism b2 is added once, after the partial outputs are summed.
  ffn_forward(out, c.ffn, c.norm.out.data(), p.w1->value.data(), p.b1->value.data(),
              p.w2->value.data(), tp.active() ? nullptr : p.b2->value.data(), rows, d, p.F, width,
              act);
  if (tp.active()) {
    tp_allreduce(tp, out, rows * d);
    add_row_bias(out, p.b2->value.data(), rows, d);
  }
  dropout_forward(out, drop, B, n * d);
  add_into(out, c.x.data(), rows * d);
}

void ffn_sublayer_backward(float* dx, const float* dout, FfnSublayerCache& c,
                           const NormParams& norm, const FfnParams& p, int64_t B, int64_t n, int d,
                           Activation act, const DropoutSite& drop, const TensorParallel& tp) {
  const int64_t rows = B * n;
  Workspace& ws = workspace();
  const float* dbranch = branch_gradient(dout, drop, B, n * d, ws.dbranch);
  ensure_shape(ws.dln, {rows, d});
  if (static_cast<int64_t>(ws.dhidden.size()) < rows * c.width) ws.dhidden.resize(rows * c.width);
  float* dln = ws.dln.data();
  ffn_backward(dln, p.w1->grad.data(), p.b1->grad.data(), p.w2->grad.data(), p.b2->grad.data(),
               dbranch, c.ffn, c.norm.out.data(), p.w1->value.data(), p.w2->value.data(), rows, d,
               p.F, c.width, act, ws.dhidden.data());
  tp_allreduce(tp, dln, rows * d);  // this rank's hidden units' share of dLN
  norm_backward(dx, dln, c.norm, c.x.data(), norm, rows, d);
  add_into(dx, dout, rows * d);
}

void attention_sublayer_forward(float* out, AttentionSublayerCache& c, const float* x,
                                const NormParams& norm, const AttentionParams& w,
                                const AttentionConfig& cfg, int64_t B, int64_t n,
                                const DropoutSite& drop, const TensorParallel& tp) {
  const int64_t rows = B * n;
  const int d = cfg.d;
  ensure_shape(c.x, {rows, d});
  copy(c.x.data(), x, rows * d);
  norm_forward(c.norm, c.x.data(), norm, rows, d);
  attention_forward(out, c.attn, c.norm.out.data(), w, cfg, B, n);
  tp_allreduce(tp, out, rows * d);  // this rank's heads' partial sum
  dropout_forward(out, drop, B, n * d);
  add_into(out, c.x.data(), rows * d);
}

void attention_sublayer_backward(float* dx, const float* dout, AttentionSublayerCache& c,
                                 const NormParams& norm, const AttentionParams& w,
                                 const AttentionParams& g, const AttentionConfig& cfg, int64_t B,
                                 int64_t n, const DropoutSite& drop, const TensorParallel& tp) {
  const int64_t rows = B * n;
  const int d = cfg.d;
  Workspace& ws = workspace();
  const float* dbranch = branch_gradient(dout, drop, B, n * d, ws.dbranch);
  ensure_shape(ws.dln, {rows, d});
  float* dln = ws.dln.data();
  attention_backward(dln, g, dbranch, c.attn, c.norm.out.data(), w, cfg, B, n);
  tp_allreduce(tp, dln, rows * d);
  norm_backward(dx, dln, c.norm, c.x.data(), norm, rows, d);
  add_into(dx, dout, rows * d);
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
