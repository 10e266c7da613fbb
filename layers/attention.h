// Self-attention inside blocks (§1.3): Q/K/V projections (no bias), optional Primer DConv,
// then either `full` causal attention with RoPE or Zhu et al.'s `long_short` attention (sliding
// window over LNw-normalised, rotated keys + chunk-compressed LNg-normalised keys, one joint
// softmax), then the output projection Wo.
//
// `heads` is the number of heads this rank holds: under tensor parallelism wq/wk/wv are the
// rank's column slices [d, heads·e], wo its row slice [heads·e, d], dconv/proj/norm_* its head
// slices, all stored contiguously; `out` is then this rank's partial sum (all-reduced by the
// caller). With tp = 1 they are the canonical tensors.
//
// MatFormer heads (ARCHITECTURE.md §9.6): with stored_heads S > heads H the parameter tensors
// hold S heads and the layer runs their first H: columns [0, H·e) of wq/wk/wv [d, S·e] and of
// each row of dconv_* [3, S·e], columns [0, H·r) of proj_weight [d, S·r], the first H·r entries
// of proj_bias and H·e of norm_* [S·e], rows [0, H·e) of wo [S·e, d]. Gradients accumulate into
// exactly those columns, rows and entries; the rest of every gradient tensor is left untouched.
// Activations and caches are those of H heads. S = 0 or S = H is the layer of old, bit for bit.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "layers/attention_core.h"
#include "layers/rope.h"

namespace hg {

enum class AttentionKind { LongShort, Full };
inline std::span<const char* const> enum_names(AttentionKind) {  // core/enum_names.h
  static constexpr const char* names[] = {"long_short", "full"};
  return names;
}

struct AttentionConfig {
  AttentionKind kind = AttentionKind::LongShort;
  int d = 0;             // model width (rows of wq)
  int heads = 0;         // heads held here
  int head_dim = 0;      // e
  int window = 0;        // w (long_short)
  int chunk = 0;         // l (long_short)
  int rank = 0;          // r (long_short)
  bool rope = true;      // model.positions = rope
  bool dconv = true;     // model.dconv
  int stored_heads = 0;  // heads the parameter tensors hold (0 = heads): the layer runs their first
                         // `heads`
};

// S, the heads the parameter tensors hold.
inline int stored_heads(const AttentionConfig& cfg) {
  return cfg.stored_heads != 0 ? cfg.stored_heads : cfg.heads;
}
// Row strides of the parameters a head prefix is a column slice of: wq/wk/wv and dconv_* (S·e),
// proj_weight (S·r).
inline int64_t qkv_row_stride(const AttentionConfig& cfg) {
  return static_cast<int64_t>(stored_heads(cfg)) * cfg.head_dim;
}
inline int64_t proj_row_stride(const AttentionConfig& cfg) {
  return static_cast<int64_t>(stored_heads(cfg)) * cfg.rank;
}

// Throws UsageError unless the parameter tensors hold at least the heads the layer runs.
inline void check_stored_heads(const AttentionConfig& cfg, const std::string& where) {
  require(cfg.stored_heads == 0 || cfg.stored_heads >= cfg.heads,
          where + ": stored_heads=" + std::to_string(cfg.stored_heads) +
              " is fewer than heads=" + std::to_string(cfg.heads) +
              ": the parameter tensors must hold at least the heads the layer runs (0 = heads)");
}

// Throws UsageError naming the sizes unless cfg suits n rows (every backend checks; inline:
// hg_cuda links nothing of hg_layers).
inline void check_attention_config(const AttentionConfig& cfg, int64_t n) {
  const std::string where =
      "attention (d=" + std::to_string(cfg.d) + ", heads=" + std::to_string(cfg.heads) +
      ", e=" + std::to_string(cfg.head_dim) + ", n=" + std::to_string(n) + ")";
  require(cfg.d > 0 && cfg.heads > 0 && cfg.head_dim > 0 && n > 0,
          where + ": sizes must be positive");
  require(!cfg.rope || cfg.head_dim % 2 == 0, where + ": RoPE needs an even head width");
  check_stored_heads(cfg, where);
  if (cfg.kind == AttentionKind::LongShort) {
    require(cfg.chunk > 0 && cfg.rank > 0 && cfg.window >= cfg.chunk,
            where + ": long_short needs chunk > 0, rank > 0 and window >= chunk (window=" +
                std::to_string(cfg.window) + ", chunk=" + std::to_string(cfg.chunk) +
                ", rank=" + std::to_string(cfg.rank) + ")");
    require(n % cfg.chunk == 0, where + ": sequence length must be a multiple of the chunk " +
                                    std::to_string(cfg.chunk));
  }
}

// Parameter (or gradient) pointers; the ones a configuration does not use are null. S is
// stored_heads(cfg) (= H unless the layer runs a prefix of the heads).
struct AttentionParams {
  float* wq = nullptr;       // [d, S·e]
  float* wk = nullptr;       // [d, S·e]
  float* wv = nullptr;       // [d, S·e]
  float* wo = nullptr;       // [S·e, d]
  float* dconv_q = nullptr;  // [3, S·e]
  float* dconv_k = nullptr;
  float* dconv_v = nullptr;
  float* proj_weight = nullptr;       // [d, S·r]
  float* proj_bias = nullptr;         // [S·r]
  float* norm_window_gain = nullptr;  // [S·e]
  float* norm_window_bias = nullptr;
  float* norm_global_gain = nullptr;  // [S·e]
  float* norm_global_bias = nullptr;
};

// Everything the backward needs, owned; reused across calls (buffers grow, never shrink).
// Opaque to callers. Memory is O(B·H·n·(w + l + (n/l)·r)) for long_short, never B·H·n².
struct AttentionCache {
  std::vector<float> q_lin, k_lin, v_lin;  // [B, n, H·e] projections before DConv (dconv only)
  std::vector<float> q, k, v;              // [B, n, H·e] after DConv: pre-LN, unrotated
                                           // (RoPE(Q), RoPE(LNw(K)), LNw(V) are recomputed by
                                           // the backward, in a per-thread workspace)
  std::vector<float> chunk_probs;          // [B, n, H·r] softmax of the projection in each chunk
  std::vector<float> k_comp_raw, v_comp_raw;  // [B, n/l, r, H·e] compressed, before LNg
  std::vector<float> k_comp, v_comp;          // [B, n/l, r, H·e] after LNg
  std::vector<float> comp_mean_k, comp_rstd_k, comp_mean_v, comp_rstd_v;  // [B·(n/l)·r·H]
  std::vector<float> probs;      // [B, H, plan.probs_size] joint softmax, packed per query block
  std::vector<float> heads_out;  // [B, n, H·e] concat_h(O_h), input of Wo (fp32)
  std::vector<uint16_t> heads_out16;  // the same as bfloat16 at bf16, kept instead of heads_out
  // bf16 only: the kernel's bfloat16 queries, keys and values and LNw's statistics [B·n·H], kept
  // for the backward, which then neither recomputes the window operands nor rounds them again.
  AttentionCopies16 copies16;
  std::vector<float> win_mean_k, win_rstd_k, win_mean_v, win_rstd_v;
  AttentionPlan plan;  // which keys each query sees (rebuilt when n or cfg change)
  RopeTable rope;
  AttentionConfig plan_cfg;  // configuration, n and query rows per block the plan was built for
  int64_t plan_n = -1;
  int64_t plan_block_rows = -1;  // long_short: 32 at fp32, 64 at bf16 (layers/cpu/attention.cpp)
  std::vector<Tensor> device;    // the CUDA backend's saved values (layers/cuda/attention_layers.h)
};

// Both calls use a workspace private to the calling thread and shared by all attention layers
// it runs (transient buffers only; the cache holds everything that must survive between the
// forward and the backward). The backward recomputes RoPE/LNw of the cached Q, K, V, so `w` must
// be the parameters the forward used.
// u [B, n, d] (the block's LN1 output) -> out [B, n, d] (=).
void attention_forward(float* out, AttentionCache& cache, const float* u, const AttentionParams& w,
                       const AttentionConfig& cfg, int64_t B, int64_t n);
// du [B, n, d] (=); grads (+=) for every non-null pointer of `g`.
void attention_backward(float* du, const AttentionParams& g, const float* dout,
                        const AttentionCache& cache, const float* u, const AttentionParams& w,
                        const AttentionConfig& cfg, int64_t B, int64_t n);

// ---- Incremental decoding (issue 17) ----
// What one block keeps between decoding calls for `batch` sequences that advance together: every
// row's window keys and values (the block attends to at most the last w of them; keeping all of
// them up to `capacity` keeps one contiguous key range for the kernel), the compressed keys and
// values of completed chunks, the running chunk's projection logits and post-DConv K, V, and the
// last two pre-DConv rows of Q', K', V' (DConv's taps). Position p of a row is its index since
// reset(), as the training forward numbers the rows of a window.
struct AttentionDecodeCache {
  int64_t batch = 0;
  int64_t rows = 0;      // rows appended since reset(): the next row's position
  int64_t capacity = 0;  // rows it can hold before the next reset()
  std::vector<float> q_tail, k_tail, v_tail;  // [B, 2, H·e] pre-DConv rows p-2, p-1 (0 before 0)
  std::vector<float> k_window, v_window;      // [B, capacity, H·e] the window operands: long_short
                                              // RoPE(LNw(K)), LNw(V); full RoPE(K) (or K), V
  std::vector<float> chunk_logits;            // [B, l, H·r] the running chunk's u Wp + bp
  std::vector<float> chunk_k, chunk_v;        // [B, l, H·e] its post-DConv, pre-LN K and V
  std::vector<float> k_comp, v_comp;  // [B, capacity/l·r, H·e] completed chunks, after LNg
  RopeTable rope;                     // positions [0, capacity)
  std::vector<Tensor> device;  // the CUDA backend's state instead (layers/cuda/decode_layers.h)
  // Empties the cache for `batch` sequences of at most `capacity` rows.
  void reset(int64_t batch, int64_t capacity);
};

// Throws UsageError unless n new rows of B sequences fit the cache and cfg suits decoding (every
// backend checks; inline: hg_cuda links nothing of hg_layers).
inline void check_attention_decode(const AttentionDecodeCache& c, const AttentionConfig& cfg,
                                   int64_t B, int64_t n) {
  require(B == c.batch && n > 0 && c.rows + n <= c.capacity,
          "attention_decode: " + std::to_string(n) + " rows for " + std::to_string(B) +
              " sequences after " + std::to_string(c.rows) + " do not fit a cache of " +
              std::to_string(c.capacity) + " rows for " + std::to_string(c.batch) +
              " sequences: reset it first");
  require(!cfg.rope || cfg.head_dim % 2 == 0, "attention_decode: RoPE needs an even head width");
  check_stored_heads(cfg, "attention_decode");
  require(cfg.kind != AttentionKind::LongShort || c.capacity % cfg.chunk == 0,
          "attention_decode: the capacity must be a multiple of the chunk");
}

// u [B, n, d]: the LN1 outputs of the next n rows of every sequence (positions cache.rows ...
// cache.rows + n - 1, at most capacity) -> out [B, n, d] (=): what attention_forward gives for
// those rows of a sequence that holds every row appended since reset(). Appends them to the cache.
// Prefill (n = the prompt) and decoding (n = 1) are the same call.
void attention_decode(float* out, AttentionDecodeCache& cache, const float* u,
                      const AttentionParams& w, const AttentionConfig& cfg, int64_t B, int64_t n);

}  // namespace hg
