// The joint softmax of long-short attention (ARCHITECTURE.md §1.3) computed as two softmaxes, one
// per key segment, merged exactly through their log-sum-exps, so that the window segment (a
// causal band of w keys, or every earlier key for full attention) can run in a fused attention
// (cuDNN's SDPA, cudnn_attention.h) while the compressed-chunk keys stay with the hand kernel:
//
//   forward   o_w, lse_w = softmax over the window keys;  o_g, lse_g = over the global keys
//             lse = log(exp(lse_w) + exp(lse_g));  O = exp(lse_w - lse)·o_w + exp(lse_g - lse)·o_g
//   backward  each segment given the JOINT O and lse: p_j = exp(s_j - lse) is then the joint
//             probability and D = dO·O the joint row term, so dS_j = p_j (dO·v_j - D) and every
//             gradient of a segment's keys and queries is exactly its share (ring attention's
//             argument: the joint softmax's gradient restricted to a block of keys).
//
// Written over `Ops` (attention_core_forward/backward with x.segments, attention_merge: the CUDA
// backend's or the emulation's) and a `Window` engine for the window segment:
//   window.forward(out, lse, x)                           out (=), lse (=) of x's window segment
//   window.backward(g, delta, dout, out, lse, x)          dq_window (=), dk/dv_window (+=)
//   window.scratch(x) -> SplitScratch                     device buffers for the global part
// KernelWindow is the hand kernel as such an engine: the emulation's stand-in for cuDNN, which
// makes every line here testable without a GPU (tests/cuda_emulation/test_attention_kernels.cpp).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "layers/cuda/attention_operands.h"

namespace hg::cuda {

struct SplitScratch {
  float* out_window = nullptr;  // [B, nq, H·e]
  float* lse_window = nullptr;  // [B·H, nq]
  float* out_global = nullptr;  // [B, nq, H·e]
  float* lse_global = nullptr;  // [B·H, nq]
};

inline AttentionOperands segment_of(const AttentionOperands& x, int segments) {
  AttentionOperands y = x;
  y.segments = segments;
  return y;
}

// out [B, nq, H·e] (=), lse [B·H, nq] (=): attention_core_forward's contract.
template <class Ops, class Window>
void split_attention_forward(const Ops& ops, Window& window, float* out, float* lse,
                             const AttentionOperands& x) {
  const AttentionOperands xw = segment_of(x, kWindowSegment);
  if (x.mask.rank == 0) {  // full attention, or long_short without compressed keys
    window.forward(out, lse, xw);
    return;
  }
  const SplitScratch s = window.scratch(x);
  window.forward(s.out_window, s.lse_window, xw);
  ops.attention_core_forward(s.out_global, s.lse_global, segment_of(x, kGlobalSegment));
  ops.attention_merge(out, lse, s.out_window, s.lse_window, s.out_global, s.lse_global, x);
}

// attention_core_backward's contract: dq_* (=), dk_*/dv_* (+=); out and lse are the joint ones.
template <class Ops, class Window>
void split_attention_backward(const Ops& ops, Window& window, const AttentionGrads& g, float* delta,
                              const float* dout, const float* out, const float* lse,
                              const AttentionOperands& x) {
  window.backward(g, delta, dout, out, lse, segment_of(x, kWindowSegment));
  if (x.mask.rank > 0)
    ops.attention_core_backward(g, delta, dout, out, lse, segment_of(x, kGlobalSegment));
}

// The hand kernel (Ops' attention_core_*) as a window engine, with scratch in `Tensor`s of the
// ops' device.
template <class Ops>
class KernelWindow {
 public:
  explicit KernelWindow(const Ops& ops) : ops_(ops) {}
  void forward(float* out, float* lse, const AttentionOperands& x) {
    ops_.attention_core_forward(out, lse, x);
  }
  void backward(const AttentionGrads& g, float* delta, const float* dout, const float* out,
                const float* lse, const AttentionOperands& x) {
    ops_.attention_core_backward(g, delta, dout, out, lse, x);
  }
  SplitScratch scratch(const AttentionOperands& x) {
    const int64_t rows = x.B * x.nq * x.H * x.e, stats = x.B * x.H * x.nq;
    if (out_.numel() < 2 * rows) out_ = Tensor({2 * rows}, ops_.device());
    if (lse_.numel() < 2 * stats) lse_ = Tensor({2 * stats}, ops_.device());
    return {out_.data(), lse_.data(), out_.data() + rows, lse_.data() + stats};
  }

 private:
  const Ops& ops_;
  Tensor out_, lse_;
};

}  // namespace hg::cuda
