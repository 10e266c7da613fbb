// cuDNN's fused scaled-dot-product attention (the graph API through the header-only cuDNN
// frontend) as the window engine of attention_split.h: the window segment of long-short attention
// (a causal band of `window` keys) and full causal attention, in bfloat16 with float32 statistics.
// run.attention_backend cudnn selects it (layers/attention_backend.h); docs/cuda.md says what it
// changes numerically and what has run where.
//
// Built only when the frontend's headers were found at configure time (HG_CUDNN; scripts/setup.sh
// installs them); libcudnn.so.9 itself is opened at first use (the frontend's dynamic loading), so
// the binaries start, and run natively, on machines without cuDNN.
//
// NEVER RUN ON A GPU: no machine of this project has had one. The composition around it
// (attention_split.h) runs under the CPU emulation with the hand kernel in its place.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "layers/cuda/attention_operands.h"
#include "layers/cuda/attention_split.h"

namespace hg::cuda {

// "" when cuDNN's attention can run here; otherwise why.
std::string cudnn_unavailable_reason();

// Which window engine the CUDA backend's attention splits to (attention_split.h): none (the joint
// kernel), the hand kernel (run.attention_backend split: the cudnn path's composition without
// cuDNN) or cuDNN. Set by layers/attention_backend.cpp's set_attention_backend (hg_layers calls
// down into hg_cuda, never the reverse).
enum class WindowEngine { None, Kernel, Cudnn };
void set_window_engine(WindowEngine engine);
WindowEngine window_engine();

// Whether cuDNN's SDPA takes x's window segment: a causal band (not the resampling MHA's funnel
// masks), head width a multiple of 8 up to 128, as many keys as queries.
bool cudnn_window_fits(const AttentionOperands& x);

class CudnnWindow {
 public:
  CudnnWindow();
  ~CudnnWindow();
  // x's window segment: out [B, nq, H·e] (=, the bf16 result widened), lse [B·H, nq] (=).
  void forward(float* out, float* lse, const AttentionOperands& x);
  // Given the JOINT out and lse: dq_window (=), dk_window, dv_window (+=); delta unused (cuDNN
  // forms dO·O itself).
  void backward(const AttentionGrads& g, float* delta, const float* dout, const float* out,
                const float* lse, const AttentionOperands& x);
  SplitScratch scratch(const AttentionOperands& x);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The process's engine, made on first use (loads libcudnn, makes its handle). Only call it when
// cudnn_unavailable_reason() is empty.
CudnnWindow& cudnn_window();

}  // namespace hg::cuda
