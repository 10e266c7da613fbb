// Block attention (layers/attention.h) and the resampling MHA (layers/mha.h) composed from device
// ops, with the CPU layers' contracts: the same projections, DConv, LayerNorms, RoPE, chunk
// compression and joint softmax, in the same order (layers/cpu/attention.cpp, mha.cpp).
//
// Written once over `Ops`, the device's op set: the CUDA backend itself (cuda_backend.cpp: its
// Backend ops plus cuBLAS and the .cu kernels) and, in tests/cuda_emulation, the same kernels
// under the CPU emulation with the CPU's gemm, so the composition itself is tested against the
// CPU backend. Ops provides:
//   device(), gemm (core/gemm.h's contract), linear_forward/backward, layernorm_forward/backward,
//   dconv_forward/backward, rope, chunk_softmax_*, chunk_compress_*, attention_core_*, add_into,
//   copy, zero, upload (host -> device floats).
//
// What survives from forward to backward lives in the cache's `device` tensors (its host vectors
// stay empty); transients live in a Workspace owned by the backend (one per stream).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/gemm.h"
#include "core/tensor.h"
#include "layers/attention.h"
#include "layers/cuda/attention_operands.h"
#include "layers/mha.h"

namespace hg::cuda {

// Device tensors indexed by slot, grown (never shrunk) on demand; contents undefined after a
// grow. A cache's saved values and a backend's workspace are both such sets.
inline float* slot(std::vector<Tensor>& slots, int i, int64_t n, Device device) {
  if (static_cast<int>(slots.size()) <= i) slots.resize(static_cast<size_t>(i) + 1);
  Tensor& t = slots[static_cast<size_t>(i)];
  if (t.numel() < n || t.device() != device) t = Tensor({n > 0 ? n : 1}, device);
  return t.data();
}
inline const float* saved(const std::vector<Tensor>& slots, int i) {
  return slots.at(static_cast<size_t>(i)).data();
}

// Slots of an attention cache's saved values (AttentionCache::device).
enum AttentionSaved : int {
  kSavedQLin,
  kSavedKLin,
  kSavedVLin,  // [B·n, H·e] projections (dconv only)
  kSavedQ,
  kSavedK,
  kSavedV,  // [B·n, H·e] after DConv
  kSavedQRot,
  kSavedKAtt,
  kSavedVAtt,  // window operands: RoPE(Q); RoPE(LNw(K)) or RoPE(K); LNw(V)
  kSavedWinMeanK,
  kSavedWinRstdK,
  kSavedWinMeanV,
  kSavedWinRstdV,    // [B·n·H] LNw statistics
  kSavedChunkProbs,  // [B·n, H·r]
  kSavedKCompRaw,
  kSavedVCompRaw,
  kSavedKComp,
  kSavedVComp,  // [B·(n/l)·r, H·e]
  kSavedCompMeanK,
  kSavedCompRstdK,
  kSavedCompMeanV,
  kSavedCompRstdV,  // [B·(n/l)·r·H]
  kSavedHeadsOut,
  kSavedLse,  // [B·n, H·e] concat_h(O_h); [B·H, n] log-sum-exp per row
  kSavedRopeCos,
  kSavedRopeSin,  // [n, e/2] the host RopeTable's device copy
};
// Slots of the backward's workspace.
enum AttentionWork : int {
  kWorkDheads,
  kWorkDq,
  kWorkDqWindow,
  kWorkDk,
  kWorkDv,
  kWorkDkWindow,
  kWorkDvWindow,
  kWorkDkComp,
  kWorkDvComp,
  kWorkDkCompRaw,
  kWorkDvCompRaw,
  kWorkDprobs,
  kWorkDqLin,
  kWorkDkLin,
  kWorkDvLin,
  kWorkDelta,
  kWorkUnused,  // kWorkUnused + i: gradients nobody asked for
};

// du (+=) dout · W[:, :out]ᵀ; dW[:, :out] (+=) inpᵀ · dout (row stride ldw): the input gradient
// of a second projection of the same input (K and V of u, the projection P), added to the first
// one's.
template <class Ops>
void linear_backward_add(Ops& ops, float* dinp, float* dweight, float* dbias, const float* dout,
                         const float* inp, const float* weight, int64_t rows, int64_t in_dim,
                         int64_t out_dim, int64_t ldw) {
  if (dinp != nullptr)
    ops.gemm(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, ldw, 1.0f, dinp,
             in_dim);
  ops.linear_backward(nullptr, dweight, dbias, dout, inp, weight, rows, in_dim, out_dim, ldw);
}

// A gradient pointer, or a workspace slot for one the caller did not ask for (kernels add into
// it, nobody reads it).
template <class Ops>
float* grad_or_unused(Ops& ops, std::vector<Tensor>& work, float* p, int which, int64_t n) {
  return p != nullptr ? p : slot(work, kWorkUnused + which, n, ops.device());
}

inline AttentionOperands attention_operands(const AttentionConfig& cfg, int64_t B, int64_t n) {
  AttentionOperands x;
  x.B = B;
  x.nq = n;
  x.nk = n;
  x.H = cfg.heads;
  x.e = cfg.head_dim;
  x.scale = 1.0f / std::sqrt(static_cast<float>(cfg.head_dim));
  x.bf16 = matmul_precision() == MatmulPrecision::Bf16;
  if (cfg.kind == AttentionKind::LongShort) {
    x.mask.window = cfg.window;
    x.mask.chunk = cfg.chunk;
    x.mask.rank = cfg.rank;
  } else {
    x.mask.window = n;  // causal: every earlier key
  }
  return x;
}

// The kernel's operands from the saved tensors (shared by forward and backward):
//   q_global = Q (unrotated; long_short's compressed keys), q_window = RoPE(Q) or Q,
//   k_window = RoPE(LNw(K)) / LNw(K) / RoPE(K) / K, v_window = LNw(V) or V.
inline AttentionOperands saved_operands(const AttentionCache& c, const AttentionConfig& cfg,
                                        int64_t B, int64_t n) {
  const bool ls = cfg.kind == AttentionKind::LongShort;
  AttentionOperands x = attention_operands(cfg, B, n);
  x.q_window = saved(c.device, cfg.rope ? kSavedQRot : kSavedQ);
  x.k_window = saved(c.device, ls || cfg.rope ? kSavedKAtt : kSavedK);
  x.v_window = saved(c.device, ls ? kSavedVAtt : kSavedV);
  if (ls) {
    x.q_global = saved(c.device, kSavedQ);
    x.k_global = saved(c.device, kSavedKComp);
    x.v_global = saved(c.device, kSavedVComp);
  }
  return x;
}

// Long-short's global keys and values: P = u Wp + bp, softmax within each chunk, weighted sums of
// the post-DConv pre-LN rows, then LNg (as layers/cpu/attention.cpp).
template <class Ops>
void compress_forward(Ops& ops, AttentionCache& c, const float* u, const AttentionParams& w,
                      const AttentionConfig& cfg, int64_t B, int64_t n) {
  const int H = cfg.heads, e = cfg.head_dim, l = cfg.chunk, r = cfg.rank, Hr = H * r;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n, comp = B * (n / l) * r;
  const Device dev = ops.device();
  float* probs = slot(c.device, kSavedChunkProbs, rows * Hr, dev);
  ops.linear_forward(probs, u, w.proj_weight, w.proj_bias, rows, cfg.d, Hr, proj_row_stride(cfg));
  ops.chunk_softmax_forward(probs, probs, B, n, l, Hr);
  const int raw[2] = {kSavedKCompRaw, kSavedVCompRaw}, out[2] = {kSavedKComp, kSavedVComp};
  const int mean[2] = {kSavedCompMeanK, kSavedCompMeanV},
            rstd[2] = {kSavedCompRstdK, kSavedCompRstdV};
  const int src[2] = {kSavedK, kSavedV};
  for (int i = 0; i < 2; ++i) {
    float* x = slot(c.device, raw[i], comp * HE, dev);
    ops.chunk_compress_forward(x, saved(c.device, src[i]), probs, B, n, l, H, r, e);
    ops.layernorm_forward(slot(c.device, out[i], comp * HE, dev),
                          slot(c.device, mean[i], comp * H, dev),
                          slot(c.device, rstd[i], comp * H, dev), x, w.norm_global_gain,
                          w.norm_global_bias, comp, H, e);
  }
}

// The window operands from the saved post-DConv Q, K, V (layers/cpu/attention.cpp's
// window_operands; saved here rather than recomputed by the backward).
template <class Ops>
void window_forward(Ops& ops, AttentionCache& c, const AttentionParams& w,
                    const AttentionConfig& cfg, int64_t B, int64_t n) {
  const int H = cfg.heads, e = cfg.head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  const Device dev = ops.device();
  const float *cs = nullptr, *sn = nullptr;
  if (cfg.rope) {
    if (c.rope.n < n || c.rope.e != e) {
      c.rope = make_rope_table(n, e);
      ops.upload(slot(c.device, kSavedRopeCos, int64_t(c.rope.cos.size()), dev), c.rope.cos.data(),
                 int64_t(c.rope.cos.size()));
      ops.upload(slot(c.device, kSavedRopeSin, int64_t(c.rope.sin.size()), dev), c.rope.sin.data(),
                 int64_t(c.rope.sin.size()));
    }
    cs = saved(c.device, kSavedRopeCos);
    sn = saved(c.device, kSavedRopeSin);
    float* q_rot = slot(c.device, kSavedQRot, rows * HE, dev);
    ops.copy(q_rot, saved(c.device, kSavedQ), rows * HE);
    ops.rope(q_rot, cs, sn, B, n, H, e, false);
  }
  if (cfg.kind == AttentionKind::LongShort) {
    // One LN instance for K and V, statistics per row and head; keys rotated after it.
    ops.layernorm_forward(slot(c.device, kSavedKAtt, rows * HE, dev),
                          slot(c.device, kSavedWinMeanK, rows * H, dev),
                          slot(c.device, kSavedWinRstdK, rows * H, dev), saved(c.device, kSavedK),
                          w.norm_window_gain, w.norm_window_bias, rows, H, e);
    ops.layernorm_forward(slot(c.device, kSavedVAtt, rows * HE, dev),
                          slot(c.device, kSavedWinMeanV, rows * H, dev),
                          slot(c.device, kSavedWinRstdV, rows * H, dev), saved(c.device, kSavedV),
                          w.norm_window_gain, w.norm_window_bias, rows, H, e);
  } else if (cfg.rope) {
    ops.copy(slot(c.device, kSavedKAtt, rows * HE, dev), saved(c.device, kSavedK), rows * HE);
  }
  if (cfg.rope) ops.rope(slot(c.device, kSavedKAtt, rows * HE, dev), cs, sn, B, n, H, e, false);
}

// u [B, n, d] -> out [B, n, d] (=), layers/attention.h's attention_forward.
template <class Ops>
void attention_forward(Ops& ops, float* out, AttentionCache& c, const float* u,
                       const AttentionParams& w, const AttentionConfig& cfg, int64_t B, int64_t n) {
  check_attention_config(cfg, n);
  const int64_t HE = static_cast<int64_t>(cfg.heads) * cfg.head_dim, rows = B * n;
  const int64_t ld_qkv = qkv_row_stride(cfg);  // S·e: the heads run are a column prefix
  const Device dev = ops.device();
  const float* weights[3] = {w.wq, w.wk, w.wv};
  const float* taps[3] = {w.dconv_q, w.dconv_k, w.dconv_v};
  for (int i = 0; i < 3; ++i) {  // Q, K, V = DConv(u W) (or u W without DConv)
    float* z = slot(c.device, kSavedQ + i, rows * HE, dev);
    float* lin = cfg.dconv ? slot(c.device, kSavedQLin + i, rows * HE, dev) : z;
    ops.linear_forward(lin, u, weights[i], nullptr, rows, cfg.d, HE, ld_qkv);
    if (cfg.dconv) ops.dconv_forward(z, lin, taps[i], B, n, static_cast<int>(HE), ld_qkv);
  }
  window_forward(ops, c, w, cfg, B, n);
  if (cfg.kind == AttentionKind::LongShort) compress_forward(ops, c, u, w, cfg, B, n);
  float* heads = slot(c.device, kSavedHeadsOut, rows * HE, dev);
  ops.attention_core_forward(heads, slot(c.device, kSavedLse, B * cfg.heads * n, dev),
                             saved_operands(c, cfg, B, n));
  ops.linear_forward(out, heads, w.wo, nullptr, rows, HE, cfg.d, cfg.d);
}

// Long-short's compression backward from the compressed keys' and values' gradients
// (kWorkDkComp, kWorkDvComp): dk, dv (+=), LNg's parameters (+=), and the gradient of the
// projection's logits left in kWorkDprobs for attention_inputs_backward.
template <class Ops>
void compress_backward(Ops& ops, std::vector<Tensor>& work, float* dk, float* dv,
                       const AttentionParams& g, const AttentionCache& c, const AttentionParams& w,
                       const AttentionConfig& cfg, int64_t B, int64_t n) {
  const int H = cfg.heads, e = cfg.head_dim, l = cfg.chunk, r = cfg.rank, Hr = H * r;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n, comp = B * (n / l) * r;
  const Device dev = ops.device();
  float* dprobs = slot(work, kWorkDprobs, rows * Hr, dev);
  ops.zero(dprobs, rows * Hr);
  const int dcomp[2] = {kWorkDkComp, kWorkDvComp}, draw[2] = {kWorkDkCompRaw, kWorkDvCompRaw};
  const int raw[2] = {kSavedKCompRaw, kSavedVCompRaw}, src[2] = {kSavedK, kSavedV};
  const int mean[2] = {kSavedCompMeanK, kSavedCompMeanV},
            rstd[2] = {kSavedCompRstdK, kSavedCompRstdV};
  float* dx[2] = {dk, dv};
  for (int i = 0; i < 2; ++i) {
    float* d_raw = slot(work, draw[i], comp * HE, dev);
    ops.layernorm_backward(d_raw, grad_or_unused(ops, work, g.norm_global_gain, 0, HE),
                           grad_or_unused(ops, work, g.norm_global_bias, 1, HE),
                           slot(work, dcomp[i], comp * HE, dev), saved(c.device, raw[i]),
                           w.norm_global_gain, saved(c.device, mean[i]), saved(c.device, rstd[i]),
                           comp, H, e);
    ops.chunk_compress_backward(dx[i], dprobs, d_raw, saved(c.device, src[i]),
                                saved(c.device, kSavedChunkProbs), B, n, l, H, r, e);
  }
  ops.chunk_softmax_backward(dprobs, dprobs, saved(c.device, kSavedChunkProbs), B, n, l, Hr);
}

// From the gradients of the post-DConv Q, K, V (dz) to du (=) and the projections' and DConv's
// parameters (+=, the columns of the heads run); long_short adds its projection P's share from
// kWorkDprobs.
template <class Ops>
void attention_inputs_backward(Ops& ops, std::vector<Tensor>& work, float* du,
                               float* const (&dz)[3], const AttentionParams& g,
                               const AttentionCache& c, const float* u, const AttentionParams& w,
                               const AttentionConfig& cfg, int64_t B, int64_t n) {
  const int d = cfg.d;
  const int64_t HE = static_cast<int64_t>(cfg.heads) * cfg.head_dim, rows = B * n;
  const int64_t ld_qkv = qkv_row_stride(cfg);  // S·e: the heads run are a column prefix
  float* const dweights[3] = {g.wq, g.wk, g.wv};
  const float* weights[3] = {w.wq, w.wk, w.wv};
  float* const dtaps[3] = {g.dconv_q, g.dconv_k, g.dconv_v};
  const float* taps[3] = {w.dconv_q, w.dconv_k, w.dconv_v};
  for (int i = 0; i < 3; ++i) {
    float* dlin = dz[i];
    if (cfg.dconv) {
      dlin = slot(work, kWorkDqLin + i, rows * HE, ops.device());
      ops.dconv_backward(dlin, grad_or_unused(ops, work, dtaps[i], 7 + i, 3 * ld_qkv), dz[i],
                         saved(c.device, kSavedQLin + i), taps[i], B, n, static_cast<int>(HE),
                         ld_qkv);
    }
    float* dweight = grad_or_unused(ops, work, dweights[i], 10 + i, d * ld_qkv);
    if (i == 0)  // du = dQ' Wqᵀ, then the others add
      ops.linear_backward(du, dweight, nullptr, dlin, u, weights[i], rows, d, HE, ld_qkv);
    else
      linear_backward_add(ops, du, dweight, nullptr, dlin, u, weights[i], rows, d, HE, ld_qkv);
  }
  if (cfg.kind == AttentionKind::LongShort) {
    const int64_t Hr = static_cast<int64_t>(cfg.heads) * cfg.rank, ld_proj = proj_row_stride(cfg);
    linear_backward_add(ops, du, grad_or_unused(ops, work, g.proj_weight, 2, d * ld_proj),
                        grad_or_unused(ops, work, g.proj_bias, 3, Hr), saved(work, kWorkDprobs), u,
                        w.proj_weight, rows, d, Hr, ld_proj);
  }
}

// du [B, n, d] (=); parameter gradients (+=) for every non-null pointer of g.
template <class Ops>
void attention_backward(Ops& ops, std::vector<Tensor>& work, float* du, const AttentionParams& g,
                        const float* dout, const AttentionCache& c, const float* u,
                        const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                        int64_t n) {
  check_attention_config(cfg, n);
  const bool ls = cfg.kind == AttentionKind::LongShort;
  const int H = cfg.heads, e = cfg.head_dim, d = cfg.d;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  const int64_t comp = ls ? B * (n / cfg.chunk) * cfg.rank : 0;
  const Device dev = ops.device();
  const float* heads = saved(c.device, kSavedHeadsOut);
  // dheads = dout Woᵀ; dWo += concat_h(O_h)ᵀ dout
  float* dheads = slot(work, kWorkDheads, rows * HE, dev);
  ops.gemm(false, true, rows, HE, d, 1.0f, dout, d, w.wo, d, 0.0f, dheads, HE);
  ops.linear_backward(nullptr, grad_or_unused(ops, work, g.wo, 4, HE * d), nullptr, dout, heads,
                      w.wo, rows, HE, d, d);

  AttentionGrads gr;
  gr.dq_window = slot(work, kWorkDqWindow, rows * HE, dev);
  gr.dq_global = ls ? slot(work, kWorkDq, rows * HE, dev) : nullptr;
  gr.dk_window = slot(work, kWorkDkWindow, rows * HE, dev);
  gr.dv_window = slot(work, kWorkDvWindow, rows * HE, dev);
  ops.zero(gr.dk_window, rows * HE);
  ops.zero(gr.dv_window, rows * HE);
  if (ls) {
    gr.dk_global = slot(work, kWorkDkComp, comp * HE, dev);
    gr.dv_global = slot(work, kWorkDvComp, comp * HE, dev);
    ops.zero(gr.dk_global, comp * HE);
    ops.zero(gr.dv_global, comp * HE);
  }
  ops.attention_core_backward(gr, slot(work, kWorkDelta, B * H * n, dev), dheads, heads,
                              saved(c.device, kSavedLse), saved_operands(c, cfg, B, n));
  if (cfg.rope) {  // the gradient of a rotation is the inverse rotation
    const float *cs = saved(c.device, kSavedRopeCos), *sn = saved(c.device, kSavedRopeSin);
    ops.rope(gr.dq_window, cs, sn, B, n, H, e, true);
    ops.rope(gr.dk_window, cs, sn, B, n, H, e, true);
  }
  // Gradients of the post-DConv Q, K, V.
  float* dq = gr.dq_window;
  if (ls) {
    dq = gr.dq_global;
    ops.add_into(dq, gr.dq_window, rows * HE);
  }
  float* dk = gr.dk_window;
  float* dv = gr.dv_window;
  if (ls) {  // through LNw (one instance for K and V: both add into its gain and bias)
    dk = slot(work, kWorkDk, rows * HE, dev);
    dv = slot(work, kWorkDv, rows * HE, dev);
    float* dgain = grad_or_unused(ops, work, g.norm_window_gain, 5, HE);
    float* dbias = grad_or_unused(ops, work, g.norm_window_bias, 6, HE);
    ops.layernorm_backward(dk, dgain, dbias, gr.dk_window, saved(c.device, kSavedK),
                           w.norm_window_gain, saved(c.device, kSavedWinMeanK),
                           saved(c.device, kSavedWinRstdK), rows, H, e);
    ops.layernorm_backward(dv, dgain, dbias, gr.dv_window, saved(c.device, kSavedV),
                           w.norm_window_gain, saved(c.device, kSavedWinMeanV),
                           saved(c.device, kSavedWinRstdV), rows, H, e);
  }
  if (ls) compress_backward(ops, work, dk, dv, g, c, w, cfg, B, n);
  float* const dz[3] = {dq, dk, dv};
  attention_inputs_backward(ops, work, du, dz, g, c, u, w, cfg, B, n);
}

// ---- the resampling MHA (layers/mha.h) ----

enum MhaSaved : int { kMhaQ, kMhaK, kMhaV, kMhaHeadsOut, kMhaLse };

// The resampling MHA's sizes, scale and funnel mask; the caller sets the operands' pointers.
inline AttentionOperands funnel_operands(int heads, int head_dim, FunnelMask mask, int k, int64_t B,
                                         int64_t nq, int64_t nk) {
  AttentionOperands x;
  x.B = B;
  x.nq = nq;
  x.nk = nk;
  x.H = heads;
  x.e = head_dim;
  x.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  x.bf16 = matmul_precision() == MatmulPrecision::Bf16;
  x.mask.kind = mask == FunnelMask::Down ? kFunnelDownMask : kFunnelUpMask;
  x.mask.factor = k;
  return x;
}

inline AttentionOperands mha_operands(const MhaCache& c, int heads, int head_dim, FunnelMask mask,
                                      int k, int64_t B, int64_t nq, int64_t nk) {
  AttentionOperands x = funnel_operands(heads, head_dim, mask, k, B, nq, nk);
  x.q_window = saved(c.device, kMhaQ);
  x.k_window = saved(c.device, kMhaK);
  x.v_window = saved(c.device, kMhaV);
  return x;
}

// q_in [B, nq, d], kv_in [B, nk, d] -> out [B, nq, d] (=).
template <class Ops>
void mha_forward(Ops& ops, float* out, MhaCache& c, const float* q_in, const float* kv_in,
                 const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                 int64_t B, int64_t nq, int64_t nk) {
  check_mha_sizes(d, heads, head_dim, mask, k, nq, nk);
  const int64_t HE = static_cast<int64_t>(heads) * head_dim;
  const Device dev = ops.device();
  ops.linear_forward(slot(c.device, kMhaQ, B * nq * HE, dev), q_in, w.wq, nullptr, B * nq, d, HE,
                     HE);
  ops.linear_forward(slot(c.device, kMhaK, B * nk * HE, dev), kv_in, w.wk, nullptr, B * nk, d, HE,
                     HE);
  ops.linear_forward(slot(c.device, kMhaV, B * nk * HE, dev), kv_in, w.wv, nullptr, B * nk, d, HE,
                     HE);
  float* heads_out = slot(c.device, kMhaHeadsOut, B * nq * HE, dev);
  ops.attention_core_forward(heads_out, slot(c.device, kMhaLse, B * heads * nq, dev),
                             mha_operands(c, heads, head_dim, mask, k, B, nq, nk));
  ops.linear_forward(out, heads_out, w.wo, nullptr, B * nq, HE, d, d);
}

// dq_in [B, nq, d] (=), dkv_in [B, nk, d] (=); weight gradients (+=) where g has them.
template <class Ops>
void mha_backward(Ops& ops, std::vector<Tensor>& work, float* dq_in, float* dkv_in,
                  const MhaParams& g, const float* dout, const MhaCache& c, const float* q_in,
                  const float* kv_in, const MhaParams& w, int d, int heads, int head_dim,
                  FunnelMask mask, int k, int64_t B, int64_t nq, int64_t nk) {
  check_mha_sizes(d, heads, head_dim, mask, k, nq, nk);
  const int64_t HE = static_cast<int64_t>(heads) * head_dim;
  const Device dev = ops.device();
  const float* heads_out = saved(c.device, kMhaHeadsOut);
  float* dheads = slot(work, kWorkDheads, B * nq * HE, dev);
  ops.gemm(false, true, B * nq, HE, d, 1.0f, dout, d, w.wo, d, 0.0f, dheads, HE);
  ops.linear_backward(nullptr, grad_or_unused(ops, work, g.wo, 4, HE * d), nullptr, dout, heads_out,
                      w.wo, B * nq, HE, d, d);
  AttentionGrads gr;
  gr.dq_window = slot(work, kWorkDq, B * nq * HE, dev);
  gr.dk_window = slot(work, kWorkDk, B * nk * HE, dev);
  gr.dv_window = slot(work, kWorkDv, B * nk * HE, dev);
  ops.zero(gr.dk_window, B * nk * HE);
  ops.zero(gr.dv_window, B * nk * HE);
  ops.attention_core_backward(gr, slot(work, kWorkDelta, B * heads * nq, dev), dheads, heads_out,
                              saved(c.device, kMhaLse),
                              mha_operands(c, heads, head_dim, mask, k, B, nq, nk));
  ops.linear_backward(dq_in, grad_or_unused(ops, work, g.wq, 10, d * HE), nullptr, gr.dq_window,
                      q_in, w.wq, B * nq, d, HE, HE);
  ops.linear_backward(dkv_in, grad_or_unused(ops, work, g.wk, 11, d * HE), nullptr, gr.dk_window,
                      kv_in, w.wk, B * nk, d, HE, HE);
  linear_backward_add(ops, dkv_in, grad_or_unused(ops, work, g.wv, 12, d * HE), nullptr,
                      gr.dv_window, kv_in, w.wv, B * nk, d, HE, HE);
}

}  // namespace hg::cuda
