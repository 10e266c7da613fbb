// The plain multi-head attention of attention resampling (§1.4): Q = q Wq, K = z Wk, V = z Wv
// (no bias, no DConv, no RoPE), per-head softmax of Q·K/sqrt(e) over the visible keys,
// concat_h(O_h) Wo. Two funnel masks, with k the level's shortening factor:
//   Down: nq = nk / k queries; key j visible to query i iff floor(j/k) <= i
//   Up:   nq = nk · k queries; key j visible to query t iff j <= floor(t/k)
// Both are causal in original positions. As in attention.h, `heads` is the count held here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "layers/attention_core.h"

namespace hg {

enum class FunnelMask { Down, Up };

struct MhaParams {
  float* wq = nullptr;  // [d, H·e]
  float* wk = nullptr;
  float* wv = nullptr;
  float* wo = nullptr;  // [H·e, d]
};

// Opaque to callers; buffers grow, never shrink. The funnel masks are prefixes of the keys, so
// probabilities are stored per query block up to the block's last visible key (about half of
// nq·nk), not as a dense masked matrix.
struct MhaCache {
  std::vector<float> q, k, v;    // [B, nq|nk, H·e]
  std::vector<float> probs;      // [B, H, plan.probs_size]
  std::vector<float> heads_out;  // [B, nq, H·e]
  AttentionPlan plan;
  FunnelMask plan_mask = FunnelMask::Down;
  int64_t plan_nq = -1, plan_nk = -1, plan_k = -1;
  std::vector<Tensor> device;  // the CUDA backend's saved values (layers/cuda/attention_layers.h)
};

// Throws UsageError naming the sizes unless they fit the mask (every backend checks; inline:
// hg_cuda links nothing of hg_layers).
inline void check_mha_sizes(int d, int heads, int head_dim, FunnelMask mask, int k, int64_t nq,
                            int64_t nk) {
  const std::string where = "attention resampling (d=" + std::to_string(d) +
                            ", heads=" + std::to_string(heads) + ", e=" + std::to_string(head_dim) +
                            ", k=" + std::to_string(k) + ", nq=" + std::to_string(nq) +
                            ", nk=" + std::to_string(nk) + ")";
  require(d > 0 && heads > 0 && head_dim > 0 && k > 0 && nq > 0 && nk > 0,
          where + ": sizes must be positive");
  if (mask == FunnelMask::Down)
    require(nq * k == nk, where + ": the down mask needs nq = nk / k");
  else
    require(nq == nk * k, where + ": the up mask needs nq = nk * k");
}

// q_in [B, nq, d], kv_in [B, nk, d] -> out [B, nq, d] (=).
void mha_forward(float* out, MhaCache& cache, const float* q_in, const float* kv_in,
                 const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                 int64_t B, int64_t nq, int64_t nk);
// dq_in [B, nq, d] (=), dkv_in [B, nk, d] (=); weight grads (+=).
void mha_backward(float* dq_in, float* dkv_in, const MhaParams& g, const float* dout,
                  const MhaCache& cache, const float* q_in, const float* kv_in, const MhaParams& w,
                  int d, int heads, int head_dim, FunnelMask mask, int k, int64_t B, int64_t nq,
                  int64_t nk);

// ---- Incremental decoding (issue 17) ----
// The keys and values of attention resampling appended so far, for `batch` sequences that advance
// together. Both funnel masks are prefixes of the keys, so a query only needs the keys appended
// before it and the cache never drops one.
struct MhaDecodeCache {
  int64_t batch = 0;
  int64_t keys = 0;            // key rows appended since reset()
  int64_t capacity = 0;        // key rows it can hold
  std::vector<float> k, v;     // [B, capacity, H·e] kv_in Wk, kv_in Wv
  std::vector<Tensor> device;  // the CUDA backend's keys instead (layers/cuda/decode_layers.h)
  void reset(int64_t batch, int64_t capacity);
};

// Throws UsageError unless nk_new more keys fit the cache and include every key the queries
// q0 .. q0 + nq - 1 see (every backend checks; inline: hg_cuda links nothing of hg_layers).
inline void check_mha_decode(const MhaDecodeCache& c, FunnelMask mask, int k, int64_t B, int64_t q0,
                             int64_t nq, int64_t nk_new) {
  const int64_t keys = c.keys + nk_new;
  // The last query sees the most keys (both masks are monotone).
  const int64_t needed = mask == FunnelMask::Down ? (q0 + nq) * k : (q0 + nq - 1) / k + 1;
  require(B == c.batch && keys <= c.capacity && (nq == 0 || needed <= keys),
          "mha_decode: " + std::to_string(nq) + " queries from " + std::to_string(q0) + " need " +
              std::to_string(needed) + " keys; " + std::to_string(keys) + " are in a cache of " +
              std::to_string(c.capacity) + " for " + std::to_string(c.batch) + " sequences");
}

// Appends kv_in [B, nk_new, d] as keys (may be 0 rows), then attends the queries q_in [B, nq, d],
// query indices q0 .. q0 + nq - 1, to the keys `mask` lets them see (Down: keys < (i+1)·k; Up:
// keys <= floor(t/k); all of them must be in) -> out [B, nq, d] (=), as mha_forward gives those
// rows.
void mha_decode(float* out, MhaDecodeCache& cache, const float* q_in, const float* kv_in,
                const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                int64_t B, int64_t q0, int64_t nq, int64_t nk_new);

}  // namespace hg
