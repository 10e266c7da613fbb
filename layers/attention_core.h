// The softmax-attention kernel shared by block self-attention (full and long_short, §1.3) and
// attention resampling (§1.4), for one (sequence, head) at a time.
//
// Every query row t sees keys from at most two segments, scored against possibly different
// query tensors (long_short scores its compressed keys with unrotated Q, its window with
// rotated Q):
//   global segment: keys [0, global_len[t])              (a prefix; long_short's chunks)
//   window segment: keys [window_lo[t], window_hi[t])    (a range; the causal / sliding window)
// and ONE softmax runs over the union. Queries are processed in blocks of consecutive rows; a
// block scores against the union of its rows' keys with two small gemms, the keys a row may not
// see are masked to probability 0. Probabilities are stored per block, [rows, G + W] with G the
// block's global keys and W its window range, so memory is O(nq·(keys seen per block)), never
// nq·nk unless the mask is dense.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace hg {

struct AttentionPlan {
  struct Block {
    int64_t t0 = 0, rows = 0;  // query rows [t0, t0 + rows)
    int64_t global = 0;        // global keys [0, global) scored by this block
    int64_t wlo = 0, whi = 0;  // window keys [wlo, whi) scored by this block
    int64_t offset = 0;        // start of its probabilities, [rows, global + whi - wlo]
  };
  int64_t nq = 0;
  std::vector<int64_t> global_len;            // [nq]
  std::vector<int64_t> window_lo, window_hi;  // [nq]
  std::vector<Block> blocks;
  int64_t probs_size = 0;  // floats of probabilities per (sequence, head)
};

// Fills blocks / probs_size once global_len, window_lo and window_hi hold nq entries.
void finalize_attention_plan(AttentionPlan& plan, int64_t block_rows);

// long_short (§1.3): window [max(0, t-w+1), t], chunks c < floor(t/l) with r keys each.
AttentionPlan plan_long_short(int64_t n, int64_t window, int64_t chunk, int64_t rank,
                              int64_t block_rows);
// Causal attention: window [0, t].
AttentionPlan plan_causal(int64_t n, int64_t block_rows);
// Funnel masks of attention resampling (§1.4), both prefixes of the keys:
//   down (nq = nk/k): key j visible to query i iff floor(j/k) <= i, i.e. j < (i+1)·k
//   up   (nq = nk·k): key j visible to query t iff j <= floor(t/k)
AttentionPlan plan_funnel_down(int64_t nq, int64_t nk, int64_t k, int64_t block_rows);
AttentionPlan plan_funnel_up(int64_t nq, int64_t nk, int64_t k, int64_t block_rows);

// One (sequence, head): matrices are row-major with the given row strides (a head is a column
// slice of a [rows, H·e] tensor). Unused segments may be null (a plan without global keys).
struct AttentionHead {
  const float* q_global = nullptr;  // [nq, e] queries that score the global keys
  const float* q_window = nullptr;  // [nq, e] queries that score the window keys
  int64_t ldq = 0;
  const float* k_global = nullptr;  // [G, e]
  const float* v_global = nullptr;
  int64_t ldg = 0;
  const float* k_window = nullptr;  // [nk, e]
  const float* v_window = nullptr;
  int64_t ldw = 0;
};

struct AttentionHeadGrad {
  float* dq_global = nullptr;  // [nq, e] (=), may be null when the plan has no global keys
  float* dq_window = nullptr;  // [nq, e] (=)
  int64_t ldq = 0;
  float* dk_global = nullptr;  // [G, e] (+=)
  float* dv_global = nullptr;
  int64_t ldg = 0;
  float* dk_window = nullptr;  // [nk, e] (+=)
  float* dv_window = nullptr;
  int64_t ldw = 0;
};

// What the forward needs for one (sequence, head).
struct AttentionForwardSlice {
  AttentionHead x;
  float* out = nullptr;  // [nq, e] (row stride ldo, =)
  int64_t ldo = 0;
  // bf16 only: where given, the output is written as bfloat16 here (row stride ldo) instead of
  // float32 to `out` (its only readers are products: Wo's forward and dW).
  uint16_t* out16 = nullptr;
  float* probs = nullptr;  // [plan.probs_size] saved for the backward
};

// What the backward needs for one (sequence, head).
struct AttentionBackwardSlice {
  AttentionHead x;
  AttentionHeadGrad g;
  const float* dout = nullptr;  // [nq, e] (row stride ldo)
  int64_t ldo = 0;
  const float* probs = nullptr;  // [plan.probs_size] from the forward
  float* dscores = nullptr;      // [plan.probs_size] workspace: gradients of the scores
};

// `slices` (sequences × heads of them) maps an index to its slice. The forward runs one task
// per (slice, query block). The backward runs one task per (slice, query block) for dS and dQ,
// then one per (slice, {window, global} × {K, V}) that sums the blocks' contributions to those
// keys in block order: no shared writes, no atomics, and results independent of the thread
// count. With at least two slices per thread it runs one task per slice instead, each block's
// key gradients right after its dS (still in cache), summed in the same block order: the same
// results bit for bit.
//
// At bf16 the kernel rounds every slice's queries, keys and values once per call into bfloat16
// copies. A forward given `keep` leaves them there, and a backward given them as `kept` reads
// them instead of rounding the float32 operands again, which it then never reads (the heads'
// AttentionHead pointers need only point into valid memory). A layer's cache holds them between
// its forward and backward. Both are ignored at fp32.
// A caller may also write the window operands' copies itself before the forward (the CPU
// attention layer does, from its own row pass: attention.cpp) and say so with window_given; the
// forward then rounds only the global ones, and clears the flag.
struct AttentionCopies16 {
  std::vector<uint16_t> bits;
  bool window_given = false;
};
void attention_core_forward(int64_t slices,
                            const std::function<AttentionForwardSlice(int64_t)>& slice,
                            const AttentionPlan& plan, float scale, int e,
                            AttentionCopies16* keep = nullptr);
void attention_core_backward(int64_t slices,
                             const std::function<AttentionBackwardSlice(int64_t)>& slice,
                             const AttentionPlan& plan, float scale, int e,
                             const AttentionCopies16* kept = nullptr);

// The B × H (sequence, head) slices of multi-head attention whose query-side tensors (the heads'
// output and its gradient) are the head columns of row-major [B, plan.nq, H·e] buffers, as the
// Q/K/V projections lay them out, at scale 1/sqrt(e): slice b·H + h writes its output to
// heads_out + (b·nq)·H·e + h·e and keeps its probabilities at probs + (b·H + h)·probs_size
// ([B·H, probs_size]). `head(b, h)` gives its inputs; the backward's `grads(b, h)` its Q/K/V
// gradient pointers and strides; dscores is the backward's workspace, like probs (null at bf16,
// whose kernel keeps its score gradients as bfloat16 in a buffer of its own).
void multihead_attention_forward(float* heads_out, float* probs, int64_t B, int H, int e,
                                 const AttentionPlan& plan,
                                 const std::function<AttentionHead(int64_t b, int h)>& head);
// The same at train.precision bf16 with the heads' output written as bfloat16 (out16 above).
void multihead_attention_forward_bf16(uint16_t* heads_out16, float* probs, int64_t B, int H, int e,
                                      const AttentionPlan& plan,
                                      const std::function<AttentionHead(int64_t b, int h)>& head,
                                      AttentionCopies16* keep = nullptr);
void multihead_attention_backward(const float* dheads, const float* probs, float* dscores,
                                  int64_t B, int H, int e, const AttentionPlan& plan,
                                  const std::function<AttentionHead(int64_t b, int h)>& head,
                                  const std::function<AttentionHeadGrad(int64_t b, int h)>& grads,
                                  const AttentionCopies16* kept = nullptr);

}  // namespace hg
