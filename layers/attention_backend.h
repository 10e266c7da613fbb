// run.attention_backend (docs/cuda.md, "cuDNN attention"): which implementation runs the device's
// long-short and full causal attention. Process-wide like core/gemm.h's matmul precision, set once
// by the trainer (or a tool) before the first step; the CPU backend ignores it.
//   native  the hand kernels of layers/cuda/attention_kernels.cuh: the spec's float32 products
//           (or train.precision bf16's rounded operands), the default
//   cudnn   the window segment in cuDNN's fused SDPA (bf16 operands AND bf16 outputs, float32
//           statistics), the compressed-chunk keys in the hand kernel, merged exactly through the
//           log-sum-exps (layers/cuda/attention_split.h). Needs run.device cuda, train.precision
//           bf16 and a loadable libcudnn 9; the resampling MHA (funnel masks: not diagonal bands)
//           and decoding stay native.
//   split   the cudnn path's composition with the hand kernel in cuDNN's place: the same results
//           as native up to float32 rounding. For checking that composition where cuDNN is not
//           (the emulated device in CI), and on a GPU for isolating what cuDNN itself changes.
#pragma once
#include <span>
#include <string>

namespace hg {

enum class AttentionBackend { Native, Cudnn, Split };
inline std::span<const char* const> enum_names(AttentionBackend) {  // core/enum_names.h
  static constexpr const char* kNames[] = {"native", "cudnn", "split"};
  return kNames;
}

// Hands the choice to the CUDA backend (layers/cuda/cudnn_attention.h's window engine), which
// holds it; a build without CUDA has only native.
void set_attention_backend(AttentionBackend backend);

// "" when cuDNN's attention can run in this process; otherwise why (no CUDA backend in this
// build, no cuDNN in this build, libcudnn not found, no device).
std::string cudnn_attention_unavailable_reason();

}  // namespace hg
