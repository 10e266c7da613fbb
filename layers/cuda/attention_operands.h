// The arguments of the device attention kernels (attention_kernels.cuh), plain structs that the
// host code (attention_layers.h) fills with device pointers: which keys each query sees, the
// operands and their gradients.
#pragma once
#include <cstdint>
#include <string>

#include "core/error.h"

namespace hg::cuda {

// Which keys query t sees (attention_core.h's plans as formulas):
//   window segment: window keys [window_lo(t), window_hi(t)), scored with q_window
//     Causal:     [max(0, t-window+1), t+1)     (full attention: window >= nk)
//     FunnelDown: [0, (t+1)·factor)             (key j visible iff floor(j/factor) <= t)
//     FunnelUp:   [0, floor(t/factor)+1)        (key j visible iff j <= floor(t/factor))
//   global segment: global keys [0, (t/chunk)·rank), scored with q_global (rank 0: none); global
//     key g = c·rank + ρ is chunk c's ρ-th compressed key.
enum MaskKind : int { kCausalMask = 0, kFunnelDownMask = 1, kFunnelUpMask = 2 };
// Which key segments a call covers (AttentionOperands::segments). Both: the joint softmax. One:
// that segment's own softmax (forward: its output and log-sum-exp, merged with the other's by
// attention_split.h), or (backward, given the JOINT output and log-sum-exp) that segment's share
// of the joint gradients, exact as in ring attention.
enum KeySegments : int { kGlobalSegment = 1, kWindowSegment = 2, kBothSegments = 3 };
struct KeyMask {
  int kind = kCausalMask;
  int64_t window = 0;  // Causal
  int64_t factor = 1;  // Funnel*
  int64_t chunk = 1, rank = 0;
};

// Device pointers of one call. Every tensor is row-major with row stride H·e (head h is the
// column slice h·e .. h·e+e-1); per sequence nq query rows, nk window keys and
// (nq/chunk)·rank global keys. Unused pointers are null.
struct AttentionOperands {
  const float* q_window = nullptr;  // [B, nq, H·e]
  const float* q_global = nullptr;  // [B, nq, H·e]
  const float* k_window = nullptr;  // [B, nk, H·e]
  const float* v_window = nullptr;
  const float* k_global = nullptr;  // [B, nq/chunk·rank, H·e]
  const float* v_global = nullptr;
  int64_t B = 0, nq = 0, nk = 0;
  int H = 0, e = 0;
  float scale = 1.0f;  // 1/sqrt(e)
  KeyMask mask;
  // train.precision bf16 (core/gemm.h): the operands of the score, value and gradient products
  // rounded to bfloat16 as the kernels read them (q, k, v, dO, the probabilities and dS), as the
  // CPU rounds them as gemm operands; sums, the softmax and the log-sum-exp stay float32.
  bool bf16 = false;
  int segments = kBothSegments;  // KeySegments
};

// Where a forward's query rows and keys sit in their buffers (attention_forward_kernel). The
// training forward: query row i is position i of its sequence, and each sequence holds nk window
// keys and nq/chunk·rank global keys. Decoding (layers/cuda/decode_layers.h): query row i is
// position q0 + i, and each sequence's keys are rows of a cache that holds k_rows window keys and
// g_rows global keys (its capacities), the first nk window keys filled.
struct QueryPlacement {
  int64_t q0 = 0;
  int64_t k_rows = 0, g_rows = 0;
};

struct AttentionGrads {
  float* dq_window = nullptr;  // [B, nq, H·e] (=)
  float* dq_global = nullptr;  // [B, nq, H·e] (=), null without global keys
  float* dk_window = nullptr;  // [B, nk, H·e] (+=)
  float* dv_window = nullptr;
  float* dk_global = nullptr;  // [B, nq/chunk·rank, H·e] (+=)
  float* dv_global = nullptr;
};

// The kernels' limits: each lane holds e/32 channels of a head in registers (4 at most), and the
// launch puts B·H (sequence, head) slices on gridDim.y (at most 65535 on every GPU).
constexpr int kMaxAttentionHeadDim = 128;
constexpr int64_t kMaxAttentionSlices = 65535;
inline void check_attention_operands(const AttentionOperands& x) {
  require(x.e >= 1 && x.e <= kMaxAttentionHeadDim,
          "cuda attention: head width " + std::to_string(x.e) + " outside [1, " +
              std::to_string(kMaxAttentionHeadDim) + "] (the kernel keeps 4 channels per lane)");
  require(x.B * x.H <= kMaxAttentionSlices,
          "cuda attention: " + std::to_string(x.B) + " sequences x " + std::to_string(x.H) +
              " heads exceed the grid's 65535 slices; use a smaller micro-batch");
}

}  // namespace hg::cuda
