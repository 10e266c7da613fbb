// Blocked masked softmax attention for one (sequence, head); see attention_core.h.
#include "layers/attention_core.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/cpu/attention_core_bf16.h"
#include "layers/cpu/attention_rows.h"

namespace hg {

using namespace attention_rows;

// ---------------------------------------------------------------------------------------------
// Plans: which keys every query sees.

void finalize_attention_plan(AttentionPlan& plan, int64_t block_rows) {
  const int64_t nq = plan.nq;
  block_rows = std::max<int64_t>(1, block_rows);
  plan.blocks.clear();
  plan.probs_size = 0;
  for (int64_t t0 = 0; t0 < nq; t0 += block_rows) {
    AttentionPlan::Block b;
    b.t0 = t0;
    b.rows = std::min(block_rows, nq - t0);
    b.wlo = std::numeric_limits<int64_t>::max();
    for (int64_t t = t0; t < t0 + b.rows; ++t) {
      b.global = std::max(b.global, plan.global_len[t]);
      b.wlo = std::min(b.wlo, plan.window_lo[t]);
      b.whi = std::max(b.whi, plan.window_hi[t]);
    }
    if (b.whi <= b.wlo) b.wlo = b.whi = 0;
    b.offset = plan.probs_size;
    const int64_t size = b.rows * (b.global + b.whi - b.wlo);
    plan.probs_size += size;
    plan.blocks.push_back(b);
  }
}

namespace {
AttentionPlan empty_plan(int64_t nq) {
  AttentionPlan plan;
  plan.nq = nq;
  plan.global_len.assign(nq, 0);
  plan.window_lo.assign(nq, 0);
  plan.window_hi.assign(nq, 0);
  return plan;
}
}  // namespace

AttentionPlan plan_long_short(int64_t n, int64_t window, int64_t chunk, int64_t rank,
                              int64_t block_rows) {
  AttentionPlan plan = empty_plan(n);
  for (int64_t t = 0; t < n; ++t) {
    plan.global_len[t] = (t / chunk) * rank;  // chunks c < floor(t/l), r keys each
    plan.window_lo[t] = std::max<int64_t>(0, t - window + 1);
    plan.window_hi[t] = t + 1;
  }
  finalize_attention_plan(plan, block_rows);
  return plan;
}

AttentionPlan plan_causal(int64_t n, int64_t block_rows) {
  AttentionPlan plan = empty_plan(n);
  for (int64_t t = 0; t < n; ++t) plan.window_hi[t] = t + 1;
  finalize_attention_plan(plan, block_rows);
  return plan;
}

AttentionPlan plan_funnel_down(int64_t nq, int64_t nk, int64_t k, int64_t block_rows) {
  AttentionPlan plan = empty_plan(nq);
  for (int64_t i = 0; i < nq; ++i) plan.window_hi[i] = std::min(nk, (i + 1) * k);
  finalize_attention_plan(plan, block_rows);
  return plan;
}

AttentionPlan plan_funnel_up(int64_t nq, int64_t nk, int64_t k, int64_t block_rows) {
  AttentionPlan plan = empty_plan(nq);
  for (int64_t t = 0; t < nq; ++t) plan.window_hi[t] = std::min(nk, t / k + 1);
  finalize_attention_plan(plan, block_rows);
  return plan;
}

// ---------------------------------------------------------------------------------------------
// The blocks' operands.

namespace {

// The keys and values of every slice as the per-block products read them (their B operands):
// the ones the scores read (keys in the forward, values in the backward) transposed, `data`
// [slices, e, nk + ng], the window keys in columns [0, nk), the global keys in [nk, nk + ng):
// score products with them then run as plain (NN) gemms, which the BLAS does ~1.6x faster on
// these small blocks than the transposed (NT) form on strided key rows; the other tensor is read
// in place. (bf16 has its own operands: attention_core_bf16.cpp.)
struct KeyOperands {
  const float* data = nullptr;
  int64_t nk = 0, ng = 0, ld = 0;  // ld = nk + ng
  int e = 0;
  const float* window(int64_t slice) const { return data + slice * e * ld; }
  const float* global(int64_t slice) const { return window(slice) + nk; }
};

// The buffers belong to the calling thread and live until its next call.
template <class Slice>
KeyOperands key_operands(int64_t slices, const Slice& slice, bool values_transposed,
                         const AttentionPlan& plan, int e) {
  KeyOperands t;
  for (const AttentionPlan::Block& b : plan.blocks) {
    t.nk = std::max(t.nk, b.whi);
    t.ng = std::max(t.ng, b.global);
  }
  t.ld = t.nk + t.ng;
  t.e = e;
  const int64_t per_slice = e * t.ld;
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < slices * per_slice) buffer.resize(slices * per_slice);
  float* const data = buffer.data();
  t.data = data;
  parallel_for(slices, [&](int64_t s) {
    const AttentionHead x = slice(s).x;
    const auto [window, global] =
        values_transposed ? std::pair(x.v_window, x.v_global) : std::pair(x.k_window, x.k_global);
    float* xt = data + s * per_slice;
    transpose(xt, t.ld, window, x.ldw, t.nk, e);
    if (t.ng > 0) transpose(xt + t.nk, t.ld, global, x.ldg, t.ng, e);
  });
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Forward: S = scale·[Q_g K_gᵀ | Q_w K_wᵀ] (block rows), P = masked softmax(S), O = P [V_g; V_w].

namespace {

// keys: the slice's keys (key_operands).
void forward_block(const AttentionForwardSlice& s, const KeyOperands& keys, int64_t slice,
                   const AttentionPlan& plan, int64_t block, float scale, int e) {
  const AttentionHead& x = s.x;
  const AttentionPlan::Block& b = plan.blocks[block];
  const int64_t G = b.global, W = b.whi - b.wlo, ld = G + W;
  float* P = s.probs + b.offset;  // [rows, G + W]
  const float* q_global = x.q_global + b.t0 * x.ldq;
  const float* q_window = x.q_window + b.t0 * x.ldq;
  if (G > 0)
    gemm(false, false, b.rows, G, e, scale, q_global, x.ldq, keys.global(slice), keys.ld, 0.0f, P,
         ld);
  if (W > 0)
    gemm(false, false, b.rows, W, e, scale, q_window, x.ldq, keys.window(slice) + b.wlo, keys.ld,
         0.0f, P + G, ld);
  for (int64_t i = 0; i < b.rows; ++i) {
    const int64_t t = b.t0 + i;
    const int64_t lo = plan.window_lo[t] - b.wlo, hi = plan.window_hi[t] - b.wlo;
    masked_softmax_row(P + i * ld, G, plan.global_len[t], W, lo, hi);
  }
  // O [rows, e] = P_g V_g + P_w V_w
  float* o = s.out + b.t0 * s.ldo;
  if (G > 0) gemm(false, false, b.rows, e, G, 1.0f, P, ld, x.v_global, x.ldg, 0.0f, o, s.ldo);
  if (W > 0)
    gemm(false, false, b.rows, e, W, 1.0f, P + G, ld, x.v_window + b.wlo * x.ldw, x.ldw,
         G > 0 ? 1.0f : 0.0f, o, s.ldo);
  if (G == 0 && W == 0)
    for (int64_t i = 0; i < b.rows; ++i) zero(o + i * s.ldo, e);
}

// Backward, phase 1, per block: dP = dO [V_g; V_w]ᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)),
// dQ_g = scale·dS_g K_g (=), dQ_w = scale·dS_w K_w (=).
// values: the slice's values (key_operands, transposed).
void backward_block_scores(const AttentionBackwardSlice& s, const KeyOperands& values,
                           int64_t slice, const AttentionPlan& plan, int64_t block, float scale,
                           int e) {
  const AttentionHead& x = s.x;
  const AttentionHeadGrad& g = s.g;
  const AttentionPlan::Block& b = plan.blocks[block];
  const int64_t G = b.global, W = b.whi - b.wlo, ld = G + W;
  const float* P = s.probs + b.offset;  // [rows, G + W]
  float* dS = s.dscores + b.offset;     // [rows, G + W]
  const float* dO = s.dout + b.t0 * s.ldo;
  if (G > 0)
    gemm(false, false, b.rows, G, e, 1.0f, dO, s.ldo, values.global(slice), values.ld, 0.0f, dS,
         ld);
  if (W > 0)
    gemm(false, false, b.rows, W, e, 1.0f, dO, s.ldo, values.window(slice) + b.wlo, values.ld, 0.0f,
         dS + G, ld);
  for (int64_t i = 0; i < b.rows; ++i) {
    const float* p = P + i * ld;
    float* ds = dS + i * ld;
    // Masked entries have p = 0 and so get ds = 0 whatever dP holds there.
    const float pd = lane_dot(p, ds, ld);
    for (int64_t j = 0; j < ld; ++j) ds[j] = p[j] * (ds[j] - pd);
  }
  auto dq = [&](int64_t keys, const float* dS_part, const float* k, int64_t ldk, float* out) {
    if (keys == 0) {
      for (int64_t i = 0; i < b.rows; ++i) zero(out + i * g.ldq, e);
    } else {
      gemm(false, false, b.rows, e, keys, scale, dS_part, ld, k, ldk, 0.0f, out, g.ldq);
    }
  };
  if (g.dq_global != nullptr) dq(G, dS, x.k_global, x.ldg, g.dq_global + b.t0 * g.ldq);
  dq(W, dS + G, x.k_window + b.wlo * x.ldw, x.ldw, g.dq_window + b.t0 * g.ldq);
}

// Backward, phase 2: one key tensor of one slice, blocks in order (overlapping windows add
// into the same key rows):
//   dK_w += scale·dS_wᵀ Q_w,  dV_w += P_wᵀ dO,  dK_g += scale·dS_gᵀ Q_g,  dV_g += P_gᵀ dO
enum class KeyGrad { WindowK, WindowV, GlobalK, GlobalV };

void backward_block_keys(const AttentionBackwardSlice& s, const AttentionPlan::Block& b,
                         KeyGrad which, float scale, int e) {
  const AttentionHead& x = s.x;
  const AttentionHeadGrad& g = s.g;
  const int64_t G = b.global, W = b.whi - b.wlo, ld = G + W;
  const float* P = s.probs + b.offset;
  const float* dS = s.dscores + b.offset;
  const float* dO = s.dout + b.t0 * s.ldo;
  switch (which) {
    case KeyGrad::WindowK:
      if (W > 0)
        gemm(true, false, W, e, b.rows, scale, dS + G, ld, x.q_window + b.t0 * x.ldq, x.ldq, 1.0f,
             g.dk_window + b.wlo * g.ldw, g.ldw);
      break;
    case KeyGrad::WindowV:
      if (W > 0)
        gemm(true, false, W, e, b.rows, 1.0f, P + G, ld, dO, s.ldo, 1.0f,
             g.dv_window + b.wlo * g.ldw, g.ldw);
      break;
    case KeyGrad::GlobalK:
      if (G > 0)
        gemm(true, false, G, e, b.rows, scale, dS, ld, x.q_global + b.t0 * x.ldq, x.ldq, 1.0f,
             g.dk_global, g.ldg);
      break;
    case KeyGrad::GlobalV:
      if (G > 0) gemm(true, false, G, e, b.rows, 1.0f, P, ld, dO, s.ldo, 1.0f, g.dv_global, g.ldg);
      break;
  }
}

constexpr KeyGrad kKeyGrads[4] = {KeyGrad::WindowK, KeyGrad::WindowV, KeyGrad::GlobalK,
                                  KeyGrad::GlobalV};

}  // namespace

void attention_core_forward(int64_t slices,
                            const std::function<AttentionForwardSlice(int64_t)>& slice,
                            const AttentionPlan& plan, float scale, int e,
                            AttentionCopies16* keep) {
  if (matmul_precision() == MatmulPrecision::Bf16)
    return attention_core_forward_bf16(slices, slice, plan, scale, e, keep);
  const int64_t blocks = static_cast<int64_t>(plan.blocks.size());
  const KeyOperands keys = key_operands(slices, slice, false, plan, e);
  parallel_for_dynamic(slices * blocks, [&](int64_t i) {
    const int64_t s = i / blocks;
    const AttentionForwardSlice x = slice(s);
    forward_block(x, keys, s, plan, i % blocks, scale, e);
  });
}

void attention_core_backward(int64_t slices,
                             const std::function<AttentionBackwardSlice(int64_t)>& slice,
                             const AttentionPlan& plan, float scale, int e,
                             const AttentionCopies16* kept) {
  if (matmul_precision() == MatmulPrecision::Bf16)
    return attention_core_backward_bf16(slices, slice, plan, scale, e, kept);
  const int64_t blocks = static_cast<int64_t>(plan.blocks.size());
  const KeyOperands values = key_operands(slices, slice, true, plan, e);
  if (slices >= 2 * num_threads()) {
    // Enough slices to keep every thread busy: one task per slice, its blocks in order, each
    // block's key gradients right after its scores, while dS and P are still in cache. The
    // key gradients add the blocks in the same order as below: the same result bit for bit.
    parallel_for_dynamic(slices, [&](int64_t s) {
      const AttentionBackwardSlice x = slice(s);
      for (int64_t block = 0; block < blocks; ++block) {
        backward_block_scores(x, values, s, plan, block, scale, e);
        for (KeyGrad which : kKeyGrads) backward_block_keys(x, plan.blocks[block], which, scale, e);
      }
    });
    return;
  }
  parallel_for_dynamic(slices * blocks, [&](int64_t i) {
    const int64_t s = i / blocks;
    backward_block_scores(slice(s), values, s, plan, i % blocks, scale, e);
  });
  // The window tasks first: they carry most of the work (dynamic scheduling balances the rest).
  const bool global = std::any_of(plan.blocks.begin(), plan.blocks.end(),
                                  [](const AttentionPlan::Block& b) { return b.global > 0; });
  parallel_for_dynamic(slices * (global ? 4 : 2), [&](int64_t i) {
    const AttentionBackwardSlice x = slice(i % slices);
    for (const AttentionPlan::Block& b : plan.blocks)
      backward_block_keys(x, b, kKeyGrads[i / slices], scale, e);
  });
}

namespace {
// multihead_attention_forward into float32 heads_out or, at bf16, bfloat16 heads_out16.
void multihead_forward(float* heads_out, uint16_t* heads_out16, float* probs, int64_t B, int H,
                       int e, const AttentionPlan& plan,
                       const std::function<AttentionHead(int64_t b, int h)>& head,
                       AttentionCopies16* keep) {
  const int64_t HE = static_cast<int64_t>(H) * e;
  attention_core_forward(
      B * H,
      [&](int64_t bh) {
        const int64_t b = bh / H;
        const int h = static_cast<int>(bh % H);
        const int64_t at = b * plan.nq * HE + static_cast<int64_t>(h) * e;
        AttentionForwardSlice s;
        s.x = head(b, h);
        if (heads_out16 != nullptr)
          s.out16 = heads_out16 + at;
        else
          s.out = heads_out + at;
        s.ldo = HE;
        s.probs = probs + bh * plan.probs_size;
        return s;
      },
      plan, 1.0f / std::sqrt(static_cast<float>(e)), e, keep);
}
}  // namespace

void multihead_attention_forward(float* heads_out, float* probs, int64_t B, int H, int e,
                                 const AttentionPlan& plan,
                                 const std::function<AttentionHead(int64_t b, int h)>& head) {
  multihead_forward(heads_out, nullptr, probs, B, H, e, plan, head, nullptr);
}

void multihead_attention_forward_bf16(uint16_t* heads_out16, float* probs, int64_t B, int H, int e,
                                      const AttentionPlan& plan,
                                      const std::function<AttentionHead(int64_t b, int h)>& head,
                                      AttentionCopies16* keep) {
  require(matmul_precision() == MatmulPrecision::Bf16,
          "multihead_attention_forward_bf16 is for train.precision bf16");
  multihead_forward(nullptr, heads_out16, probs, B, H, e, plan, head, keep);
}

void multihead_attention_backward(const float* dheads, const float* probs, float* dscores,
                                  int64_t B, int H, int e, const AttentionPlan& plan,
                                  const std::function<AttentionHead(int64_t b, int h)>& head,
                                  const std::function<AttentionHeadGrad(int64_t b, int h)>& grads,
                                  const AttentionCopies16* kept) {
  const int64_t HE = static_cast<int64_t>(H) * e;
  attention_core_backward(
      B * H,
      [&](int64_t bh) {
        const int64_t b = bh / H;
        const int h = static_cast<int>(bh % H);
        AttentionBackwardSlice s;
        s.x = head(b, h);
        s.g = grads(b, h);
        s.dout = dheads + b * plan.nq * HE + static_cast<int64_t>(h) * e;
        s.ldo = HE;
        s.probs = probs + bh * plan.probs_size;
        s.dscores = dscores != nullptr ? dscores + bh * plan.probs_size : nullptr;  // bf16: unused
        return s;
      },
      plan, 1.0f / std::sqrt(static_cast<float>(e)), e, kept);
}

}  // namespace hg
