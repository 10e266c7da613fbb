// Attention on the device: the joint-softmax kernel, RoPE and long-short's chunk compression
// (attention_kernels.cuh, attention_compress_kernels.cuh), composed into the layers by
// attention.cpp. Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
// clang-format off: the kernel headers after check.h (the emulation's runtime comes first)
#include "core/cuda/bf16_kernels.cuh"
// clang-format on
#include "layers/cuda/attention_compress_kernels.cuh"
#include "layers/cuda/attention_kernels.cuh"
#include "layers/cuda/attention_split_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void attention_core_forward(float* out, float* lse, const AttentionOperands& x) {
  launch_attention_forward(DeviceLaunch{}, out, lse, x);
}

void attention_core_decode(float* out, const AttentionOperands& x, const QueryPlacement& at) {
  launch_attention_rows(DeviceLaunch{}, out, nullptr, x, at);
}

void attention_core_backward(const AttentionGrads& g, float* delta, const float* dout,
                             const float* out, const float* lse, const AttentionOperands& x) {
  launch_attention_backward(DeviceLaunch{}, g, delta, dout, out, lse, x);
}

void attention_merge(float* out, float* lse, const float* out_a, const float* lse_a,
                     const float* out_b, const float* lse_b, const AttentionOperands& x) {
  launch_attention_merge(DeviceLaunch{}, out, lse, out_a, lse_a, out_b, lse_b, x.B, x.nq, x.H, x.e);
}

void round_to_bf16(uint16_t* out, const float* x, int64_t n) {
  launch_round_to_bf16(DeviceLaunch{}, out, x, 1, n, n);
}

void widen_bf16(float* y, const uint16_t* x, int64_t n, bool accumulate) {
  launch_widen_bf16(DeviceLaunch{}, y, x, n, accumulate);
}

void rope(float* x, const float* cos_table, const float* sin_table, int64_t B, int64_t n, int H,
          int e, bool inverse) {
  launch_rope(DeviceLaunch{}, x, cos_table, sin_table, B, n, H, e, inverse);
}

void chunk_softmax_forward(float* probs, const float* logits, int64_t B, int64_t n, int l,
                           int cols) {
  launch_chunk_softmax_forward(DeviceLaunch{}, probs, logits, B, n, l, cols);
}

void chunk_softmax_backward(float* dlogits, const float* dprobs, const float* probs, int64_t B,
                            int64_t n, int l, int cols) {
  launch_chunk_softmax_backward(DeviceLaunch{}, dlogits, dprobs, probs, B, n, l, cols);
}

void chunk_compress_forward(float* comp, const float* x, const float* probs, int64_t B, int64_t n,
                            int l, int H, int r, int e) {
  launch_chunk_compress_forward(DeviceLaunch{}, comp, x, probs, B, n, l, H, r, e);
}

void chunk_compress_backward(float* dx, float* dprobs, const float* dcomp, const float* x,
                             const float* probs, int64_t B, int64_t n, int l, int H, int r, int e) {
  launch_chunk_compress_backward(DeviceLaunch{}, dx, dprobs, dcomp, x, probs, B, n, l, H, r, e);
}

}  // namespace hg::cuda
