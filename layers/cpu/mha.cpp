// Attention-resampling MHA (§1.4), forward and backward side by side. The funnel masks are
// prefixes of the keys, so the blocked kernel of attention_core does the work.
#include "layers/mha.h"

#include <string>

#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/cpu/grow_buffer.h"
#include "layers/linear.h"
#include "layers/cpu/qkv_projection.h"

namespace hg {

namespace {

constexpr int64_t kMhaBlockRows = 64;

// Backward temporaries, per calling thread (see attention.cpp for why not in the cache).
struct Workspace {
  std::vector<float> dheads, dq, dk, dv;
  std::vector<float> dscores;  // [B, H, plan.probs_size] gradients of the attention scores
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

AttentionHead head_view(const MhaCache& c, int heads, int e, int64_t nq, int64_t nk, int64_t b,
                        int h) {
  const int64_t HE = static_cast<int64_t>(heads) * e;
  AttentionHead x;
  x.q_window = c.q.data() + b * nq * HE + static_cast<int64_t>(h) * e;
  x.ldq = HE;
  x.k_window = c.k.data() + b * nk * HE + static_cast<int64_t>(h) * e;
  x.v_window = c.v.data() + b * nk * HE + static_cast<int64_t>(h) * e;
  x.ldw = HE;
  return x;
}

}  // namespace

void mha_forward(float* out, MhaCache& c, const float* q_in, const float* kv_in, const MhaParams& w,
                 int d, int heads, int head_dim, FunnelMask mask, int k, int64_t B, int64_t nq,
                 int64_t nk) {
  check_mha_sizes(d, heads, head_dim, mask, k, nq, nk);
  if (c.plan_nq != nq || c.plan_nk != nk || c.plan_k != k || c.plan_mask != mask) {
    c.plan = mask == FunnelMask::Down ? plan_funnel_down(nq, nk, k, kMhaBlockRows)
                                      : plan_funnel_up(nq, nk, k, kMhaBlockRows);
    c.plan_nq = nq;
    c.plan_nk = nk;
    c.plan_k = k;
    c.plan_mask = mask;
  }
  const int H = heads, e = head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e;

  // Q [B·nq, H·e] = q_in Wq;  K, V [B·nk, H·e] = kv_in Wk, kv_in Wv
  qkv_projection_forward(grow(c.q, B * nq * HE), grow(c.k, B * nk * HE), grow(c.v, B * nk * HE),
                         q_in, kv_in, {w.wq, w.wk, w.wv}, d, HE, HE, B * nq, B * nk);

  float* heads_out = grow(c.heads_out, B * nq * HE);
  multihead_attention_forward(heads_out, grow(c.probs, B * H * c.plan.probs_size), B, H, e, c.plan,
                              [&](int64_t b, int h) { return head_view(c, H, e, nq, nk, b, h); });

  // out [B·nq, d] = concat_h(O_h) Wo
  linear_forward(out, heads_out, w.wo, nullptr, B * nq, HE, d, d);
}

void mha_backward(float* dq_in, float* dkv_in, const MhaParams& g, const float* dout,
                  const MhaCache& c, const float* q_in, const float* kv_in, const MhaParams& w,
                  int d, int heads, int head_dim, FunnelMask mask, int k, int64_t B, int64_t nq,
                  int64_t nk) {
  check_mha_sizes(d, heads, head_dim, mask, k, nq, nk);
  require(c.plan_nq == nq && c.plan_nk == nk && c.plan_k == k && c.plan_mask == mask,
          "mha_backward: the cache was filled by a forward with other sizes or mask");
  const int H = heads, e = head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e;
  Workspace& ws = workspace();

  // dheads [B·nq, H·e] = dout Woᵀ;  dWo += concat_h(O_h)ᵀ dout
  float* dheads = grow(ws.dheads, B * nq * HE);
  gemm(false, true, B * nq, HE, d, 1.0f, dout, d, w.wo, d, 0.0f, dheads, HE);
  if (g.wo != nullptr)
    linear_backward(nullptr, g.wo, nullptr, dout, c.heads_out.data(), w.wo, B * nq, HE, d, d);

  float* dq = grow(ws.dq, B * nq * HE);
  float* dk = grow_zero(ws.dk, B * nk * HE);
  float* dv = grow_zero(ws.dv, B * nk * HE);
  multihead_attention_backward(
      dheads, c.probs.data(), grow(ws.dscores, B * H * c.plan.probs_size), B, H, e, c.plan,
      [&](int64_t b, int h) { return head_view(c, H, e, nq, nk, b, h); },
      [&](int64_t b, int h) {
        AttentionHeadGrad g;
        g.dq_window = dq + b * nq * HE + static_cast<int64_t>(h) * e;
        g.ldq = HE;
        g.dk_window = dk + b * nk * HE + static_cast<int64_t>(h) * e;
        g.dv_window = dv + b * nk * HE + static_cast<int64_t>(h) * e;
        g.ldw = HE;
        return g;
      });

  // dq_in = dQ Wqᵀ;  dkv_in = dK Wkᵀ + dV Wvᵀ;  weight grads += inputᵀ · dprojection
  qkv_projection_backward(dq_in, dkv_in, {g.wq, g.wk, g.wv}, dq, dk, dv, q_in, kv_in,
                          {w.wq, w.wk, w.wv}, d, HE, HE, B * nq, B * nk);
}

}  // namespace hg
