// The blocked attention at bf16 (attention_core_bf16.h). Every product of a query block takes
// both operands as bfloat16 copies (gemm_bf16_given) and writes a dense result:
//   - queries, keys, values and (backward) the output gradient are rounded once per call, per
//     slice, into dense rows (SliceCopies);
//   - the probabilities' and score gradients' copies are written by the row loop that makes
//     them (the softmax; dS = P ∘ (dP − rowsum(P ∘ dP))), not rounded again per product;
//   - scores, dP and the block's output land in dense scratch rows, and the key gradients in
//     dense per-slice accumulators, so no product writes into strided rows (oneDNN 2.6 sends
//     those to its slow gemm-based matmul, and joining a dense result into them is another pass).
// The float32 probabilities are still stored for the backward, whose dS and row sums stay
// float32 (ARCHITECTURE.md §9.1: only the products' operands are rounded). Bits are this path's
// own, deterministic and independent of the thread count, like the fp32 path's.
#include "layers/cpu/attention_core_bf16.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/cpu/attention_rows.h"

namespace hg {

using namespace attention_rows;

namespace {

template <class T>
T* grown(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// Rounds every slice's queries, keys and values into `buffer`; the window ones only if
// `window` (else its caller wrote them there: AttentionCopies16::window_given).
template <class Slice>
SliceCopies slice_copies(int64_t slices, const Slice& slice, const AttentionPlan& plan, int e,
                         std::vector<uint16_t>& buffer, bool window = true) {
  SliceCopies c = copies_layout(plan, e);
  c.base = grown(buffer, slices * c.per_slice);
  parallel_for(slices, [&](int64_t s) {
    const AttentionHead h = slice(s).x;
    auto round = [](float f) { return bf16_bits(f); };
    if (window) {
      copy_converted(c.k(s), h.k_window, h.ldw, c.nk, e, round);
      copy_converted(c.v(s), h.v_window, h.ldw, c.nk, e, round);
      copy_converted(c.q_window(s), h.q_window, h.ldq, c.nq, e, round);
    }
    if (c.ng > 0) {
      copy_converted(c.k_global(s), h.k_global, h.ldg, c.ng, e, round);
      copy_converted(c.v_global(s), h.v_global, h.ldg, c.ng, e, round);
      copy_converted(c.q_global(s), h.q_global, h.ldq, c.nq, e, round);
    }
  });
  return c;
}

// Rounds every slice's output gradient into `buffer` (c.dout).
void dout_copies(SliceCopies& c, int64_t slices,
                 const std::function<AttentionBackwardSlice(int64_t)>& slice,
                 std::vector<uint16_t>& buffer) {
  c.dout_base = grown(buffer, slices * c.nq * c.e);
  parallel_for(slices, [&](int64_t s) {
    const AttentionBackwardSlice x = slice(s);
    copy_converted(c.dout(s), x.dout, x.ldo, c.nq, c.e, [](float f) { return bf16_bits(f); });
  });
}

// A worker's scratch for one block at a time: float rows (scores, dP, the block's output) and
// bfloat16 rows (the forward's probabilities).
struct BlockScratch {
  std::vector<float> rows;
  std::vector<uint16_t> bits;
};
BlockScratch& block_scratch() {
  thread_local BlockScratch scratch;  // the running thread's own
  return scratch;
}

// out[i, 0:G) = row i of a [rows, G] part, out[i, G:G+W) = row i of a [rows, W] part.
struct SplitRows {
  int64_t rows, G, W;
  int64_t global(int64_t i) const { return i * G; }
  int64_t window(int64_t i) const { return rows * G + i * W; }
};

// ---------------------------------------------------------------------------------------------
// Forward: S = scale·[Q_g K_gᵀ | Q_w K_wᵀ], P = masked softmax(S) (stored, float32), O = P V.

void forward_block(const AttentionForwardSlice& s, const SliceCopies& c, int64_t slice,
                   const AttentionPlan& plan, int64_t block, float scale, int e) {
  const AttentionPlan::Block& b = plan.blocks[block];
  const int64_t G = b.global, W = b.whi - b.wlo, ld = G + W, rows = b.rows;
  const SplitRows split{rows, G, W};
  float* const P = s.probs + b.offset;  // [rows, G + W]
  if (ld == 0) {
    for (int64_t i = 0; i < rows; ++i) {
      if (s.out16 != nullptr)
        std::fill(s.out16 + (b.t0 + i) * s.ldo, s.out16 + (b.t0 + i) * s.ldo + e, uint16_t{0});
      else
        zero(s.out + (b.t0 + i) * s.ldo, e);
    }
    return;
  }
  BlockScratch& scratch = block_scratch();
  float* const S = grown(scratch.rows, rows * ld + rows * e);  // [rows, G], [rows, W]
  float* const O = S + rows * ld;                              // [rows, e]
  uint16_t* const P16 = grown(scratch.bits, rows * ld);        // [rows, G], [rows, W]
  if (G > 0)
    gemm_bf16_given(false, true, rows, G, e, scale, c.q_global(slice) + b.t0 * e, c.k_global(slice),
                    0.0f, S, G);
  if (W > 0)
    gemm_bf16_given(false, true, rows, W, e, scale, c.q_window(slice) + b.t0 * e,
                    c.k(slice) + b.wlo * e, 0.0f, S + split.window(0), W);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = b.t0 + i;
    float* p = P + i * ld;
    std::copy(S + split.global(i), S + split.global(i) + G, p);
    std::copy(S + split.window(i), S + split.window(i) + W, p + G);
    masked_softmax_row(p, G, plan.global_len[t], W, plan.window_lo[t] - b.wlo,
                       plan.window_hi[t] - b.wlo);
    for (int64_t j = 0; j < G; ++j) P16[split.global(i) + j] = bf16_bits(p[j]);
    for (int64_t j = 0; j < W; ++j) P16[split.window(i) + j] = bf16_bits(p[G + j]);
  }
  if (G > 0) gemm_bf16_given(false, false, rows, e, G, 1.0f, P16, c.v_global(slice), 0.0f, O, e);
  if (W > 0)
    gemm_bf16_given(false, false, rows, e, W, 1.0f, P16 + split.window(0), c.v(slice) + b.wlo * e,
                    G > 0 ? 1.0f : 0.0f, O, e);
  for (int64_t i = 0; i < rows; ++i) {
    const float* from = O + i * e;
    if (s.out16 != nullptr) {
      uint16_t* o16 = s.out16 + (b.t0 + i) * s.ldo;
      for (int j = 0; j < e; ++j) o16[j] = bf16_bits(from[j]);
    } else {
      std::copy(from, from + e, s.out + (b.t0 + i) * s.ldo);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward. Per block: dP = dO [V_g; V_w]ᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale·dS K.
// Per key tensor, blocks in order: dK_w += scale·dS_wᵀ Q_w, dV_w += P_wᵀ dO, and the same for the
// global keys.

// A block's bfloat16 operands of the key-gradient products, written by its dS row loop: dS and
// P, each as [rows, G] and [rows, W] (SplitRows). Per slice, 2·plan.probs_size of them.
struct BlockBits {
  uint16_t* ds;
  uint16_t* p;
};
BlockBits block_bits(uint16_t* slice_bits, const AttentionPlan::Block& b) {
  const int64_t size = b.rows * (b.global + b.whi - b.wlo);
  return {slice_bits + 2 * b.offset, slice_bits + 2 * b.offset + size};
}

void backward_block_scores(const AttentionBackwardSlice& s, const SliceCopies& c, int64_t slice,
                           const AttentionPlan::Block& b, BlockBits bits, float scale, int e) {
  const int64_t G = b.global, W = b.whi - b.wlo, ld = G + W, rows = b.rows;
  const SplitRows split{rows, G, W};
  const AttentionHeadGrad& g = s.g;
  const float* const P = s.probs + b.offset;  // [rows, G + W]
  float* const dP = grown(block_scratch().rows, rows * ld);
  const uint16_t* dO = c.dout(slice) + b.t0 * e;
  if (G > 0) gemm_bf16_given(false, true, rows, G, e, 1.0f, dO, c.v_global(slice), 0.0f, dP, G);
  if (W > 0)
    gemm_bf16_given(false, true, rows, W, e, 1.0f, dO, c.v(slice) + b.wlo * e, 0.0f,
                    dP + split.window(0), W);
  for (int64_t i = 0; i < rows; ++i) {
    const float* p = P + i * ld;
    const float* dp_g = dP + split.global(i);
    const float* dp_w = dP + split.window(i);
    // Masked entries have p = 0 and so get ds = 0 whatever dP holds there.
    float acc[kLanes] = {};
    lane_dot_accumulate(p, dp_g, G, acc);
    lane_dot_accumulate(p + G, dp_w, W, acc);
    const float pd = lane_total(acc);
    for (int64_t j = 0; j < G; ++j) {
      bits.ds[split.global(i) + j] = bf16_bits(p[j] * (dp_g[j] - pd));
      bits.p[split.global(i) + j] = bf16_bits(p[j]);
    }
    for (int64_t j = 0; j < W; ++j) {
      bits.ds[split.window(i) + j] = bf16_bits(p[G + j] * (dp_w[j] - pd));
      bits.p[split.window(i) + j] = bf16_bits(p[G + j]);
    }
  }
  auto dq = [&](int64_t keys, const uint16_t* ds, const uint16_t* k, float* out) {
    if (keys > 0)
      gemm_bf16_given(false, false, rows, e, keys, scale, ds, k, 0.0f, out, g.ldq);
    else
      for (int64_t i = 0; i < rows; ++i) zero(out + i * g.ldq, e);
  };
  if (g.dq_global != nullptr) dq(G, bits.ds, c.k_global(slice), g.dq_global + b.t0 * g.ldq);
  dq(W, bits.ds + split.window(0), c.k(slice) + b.wlo * e, g.dq_window + b.t0 * g.ldq);
}

enum class KeyGrad { WindowK, WindowV, GlobalK, GlobalV };
constexpr KeyGrad kKeyGrads[4] = {KeyGrad::WindowK, KeyGrad::WindowV, KeyGrad::GlobalK,
                                  KeyGrad::GlobalV};

// One block's contribution to one key gradient of its slice, added into acc [keys, e] (dense).
void add_block_keys(const SliceCopies& c, int64_t slice, const AttentionPlan::Block& b,
                    BlockBits bits, KeyGrad which, float scale, int e, float* acc) {
  const int64_t G = b.global, W = b.whi - b.wlo;
  const SplitRows split{b.rows, G, W};
  const uint16_t* dO = c.dout(slice) + b.t0 * e;
  switch (which) {
    case KeyGrad::WindowK:
      if (W > 0)
        gemm_bf16_given(true, false, W, e, b.rows, scale, bits.ds + split.window(0),
                        c.q_window(slice) + b.t0 * e, 1.0f, acc + b.wlo * e, e);
      break;
    case KeyGrad::WindowV:
      if (W > 0)
        gemm_bf16_given(true, false, W, e, b.rows, 1.0f, bits.p + split.window(0), dO, 1.0f,
                        acc + b.wlo * e, e);
      break;
    case KeyGrad::GlobalK:
      if (G > 0)
        gemm_bf16_given(true, false, G, e, b.rows, scale, bits.ds, c.q_global(slice) + b.t0 * e,
                        1.0f, acc, e);
      break;
    case KeyGrad::GlobalV:
      if (G > 0) gemm_bf16_given(true, false, G, e, b.rows, 1.0f, bits.p, dO, 1.0f, acc, e);
      break;
  }
}

// The rows of one key gradient of a slice, and how many the accumulator spans.
struct KeyRows {
  float* rows;
  int64_t ld, count;
};
KeyRows key_rows(const AttentionHeadGrad& g, const SliceCopies& c, KeyGrad which) {
  switch (which) {
    case KeyGrad::WindowK:
      return {g.dk_window, g.ldw, c.nk};
    case KeyGrad::WindowV:
      return {g.dv_window, g.ldw, c.nk};
    case KeyGrad::GlobalK:
      return {g.dk_global, g.ldg, c.ng};
    case KeyGrad::GlobalV:
      return {g.dv_global, g.ldg, c.ng};
  }
  return {nullptr, 0, 0};
}

// The gradient rows += the accumulator [count, e].
void add_into_rows(const KeyRows& k, const float* acc, int e) {
  for (int64_t r = 0; r < k.count; ++r)
    for (int j = 0; j < e; ++j) k.rows[r * k.ld + j] += acc[r * e + j];
}

}  // namespace

void attention_core_forward_bf16(int64_t slices,
                                 const std::function<AttentionForwardSlice(int64_t)>& slice,
                                 const AttentionPlan& plan, float scale, int e,
                                 AttentionCopies16* keep) {
  thread_local std::vector<uint16_t> copies;  // the calling thread's
  const bool window_given = keep != nullptr && keep->window_given;
  if (window_given)
    require(static_cast<int64_t>(keep->bits.size()) >= slices * copies_layout(plan, e).per_slice,
            "attention_core_forward: the given window copies are not this call's");
  const SliceCopies c =
      slice_copies(slices, slice, plan, e, keep ? keep->bits : copies, !window_given);
  if (keep != nullptr) keep->window_given = false;  // for this call only
  const int64_t blocks = static_cast<int64_t>(plan.blocks.size());
  parallel_for_dynamic(slices * blocks, [&](int64_t i) {
    const int64_t s = i / blocks;
    forward_block(slice(s), c, s, plan, i % blocks, scale, e);
  });
}

SliceCopies copies_layout(const AttentionPlan& plan, int e) {
  SliceCopies c;
  for (const AttentionPlan::Block& b : plan.blocks) {
    c.nk = std::max(c.nk, b.whi);
    c.ng = std::max(c.ng, b.global);
  }
  c.nq = plan.nq;
  c.e = e;
  c.per_slice = 2 * (c.nk + c.ng) * e + 2 * c.nq * e;
  return c;
}

void attention_core_backward_bf16(int64_t slices,
                                  const std::function<AttentionBackwardSlice(int64_t)>& slice,
                                  const AttentionPlan& plan, float scale, int e,
                                  const AttentionCopies16* kept) {
  thread_local std::vector<uint16_t> copies, dout_buffer, block_bits_buffer;  // the caller's
  SliceCopies c;
  if (kept != nullptr) {
    c = copies_layout(plan, e);
    require(static_cast<int64_t>(kept->bits.size()) >= slices * c.per_slice,
            "attention_core_backward: the kept bf16 copies are not this call's");
    c.base = const_cast<uint16_t*>(kept->bits.data());  // read only
  } else {
    c = slice_copies(slices, slice, plan, e, copies);
  }
  dout_copies(c, slices, slice, dout_buffer);
  uint16_t* const all_bits = grown(block_bits_buffer, slices * 2 * plan.probs_size);
  auto bits_of = [&](int64_t s, const AttentionPlan::Block& b) {
    return block_bits(all_bits + s * 2 * plan.probs_size, b);
  };
  const int64_t blocks = static_cast<int64_t>(plan.blocks.size());
  // Each key gradient is summed over the blocks in order into a zeroed dense accumulator, then
  // added into the slice's rows: the same arithmetic in both task layouts below.
  auto accumulator = [&](KeyGrad which, int slot) {
    const int64_t n = (which == KeyGrad::WindowK || which == KeyGrad::WindowV ? c.nk : c.ng) * e;
    thread_local std::vector<float> acc[4];  // the running thread's own
    float* a = grown(acc[slot], n);
    std::fill(a, a + n, 0.0f);
    return a;
  };
  const bool global = c.ng > 0;
  if (slices >= 2 * num_threads()) {
    // One task per slice, each block's key products right after its scores (still in cache).
    parallel_for_dynamic(slices, [&](int64_t s) {
      const AttentionBackwardSlice x = slice(s);
      float* acc[4];
      for (int k = 0; k < 4; ++k) acc[k] = accumulator(kKeyGrads[k], k);
      for (int64_t block = 0; block < blocks; ++block) {
        const AttentionPlan::Block& b = plan.blocks[block];
        backward_block_scores(x, c, s, b, bits_of(s, b), scale, e);
        for (int k = 0; k < (global ? 4 : 2); ++k)
          add_block_keys(c, s, b, bits_of(s, b), kKeyGrads[k], scale, e, acc[k]);
      }
      for (int k = 0; k < (global ? 4 : 2); ++k)
        add_into_rows(key_rows(x.g, c, kKeyGrads[k]), acc[k], e);
    });
    return;
  }
  parallel_for_dynamic(slices * blocks, [&](int64_t i) {
    const int64_t s = i / blocks;
    const AttentionPlan::Block& b = plan.blocks[i % blocks];
    backward_block_scores(slice(s), c, s, b, bits_of(s, b), scale, e);
  });
  // The window tasks first: they carry most of the work (dynamic scheduling balances the rest).
  parallel_for_dynamic(slices * (global ? 4 : 2), [&](int64_t i) {
    const int64_t s = i % slices;
    const KeyGrad which = kKeyGrads[i / slices];
    float* acc = accumulator(which, 0);
    for (const AttentionPlan::Block& b : plan.blocks)
      add_block_keys(c, s, b, bits_of(s, b), which, scale, e, acc);
    add_into_rows(key_rows(slice(s).g, c, which), acc, e);
  });
}

}  // namespace hg
