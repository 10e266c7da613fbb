// FFN activations (§1.2): relu2 (Primer's squared ReLU, default) and gelu (tanh form, baseline).
#pragma once
#include <cstdint>
#include <span>

namespace hg {

enum class Activation { Relu2, Gelu };
inline std::span<const char* const> enum_names(Activation) {  // core/enum_names.h
  static constexpr const char* names[] = {"relu2", "gelu"};
  return names;
}

// Element-wise over n values.
void activation_forward(float* out, const float* inp, int64_t n, Activation act);
// dinp (=) from dout and the forward input; dinp may alias dout (element-wise).
void activation_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                         Activation act);

// The CPU FFN at train.precision bf16 (layers/cpu/ffn.cpp): its hidden activation is read only
// by the w2 products, which round it to bfloat16, so it is stored as that bfloat16 alone:
// out16 = bf16_bits(act(inp)) (core/bf16.h), the same float32 value as activation_forward's.
void activation_forward_bf16(uint16_t* out16, const float* inp, int64_t n, Activation act);
// activation_backward that also writes dinp's bfloat16 copy, for the two w1 products, in the same
// pass (dinp itself stays float32 for the bias gradient's column sums). dinp may alias dout.
void activation_backward_with_bf16(float* dinp, uint16_t* dinp16, const float* dout,
                                   const float* inp, int64_t n, Activation act);

}  // namespace hg
