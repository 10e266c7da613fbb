// Long-short attention's dynamic projection (Zhu et al. 2021; ARCHITECTURE.md §1.3): every chunk
// of l rows is compressed into r rows per head, each a softmax-weighted sum of the chunk's rows.
//   p_c,ρ = softmax over the l rows of chunk c of the logits column h·r+ρ
//   comp[c, ρ, h] = Σ_i p_c,ρ[i] · x[c·l+i, h]          (x: post-DConv, pre-LN keys or values)
// Compressed rows are stored [B, n/l, r, H·e]: a row (c, ρ) holds all heads, so the per-head
// LNg is a grouped LayerNorm over rows of width H·e.
#pragma once
#include <cstdint>

namespace hg {

// logits, probs [B, n, cols] (may alias): softmax over the rows of each chunk, per column.
void chunk_softmax_forward(float* probs, const float* logits, int64_t B, int64_t n, int l,
                           int cols);
// dlogits (=) from dprobs (may alias).
void chunk_softmax_backward(float* dlogits, const float* dprobs, const float* probs, int64_t B,
                            int64_t n, int l, int cols);

// x [B, n, H·e], probs [B, n, H·r] -> comp [B, n/l, r, H·e] (=).
void chunk_compress_forward(float* comp, const float* x, const float* probs, int64_t B, int64_t n,
                            int l, int H, int r, int e);
// dx [B, n, H·e] (+=), dprobs [B, n, H·r] (+=): K and V share the probabilities, so both of
// their backward passes add into the same dprobs.
void chunk_compress_backward(float* dx, float* dprobs, const float* dcomp, const float* x,
                             const float* probs, int64_t B, int64_t n, int l, int H, int r, int e);

}  // namespace hg
