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

// The FFN's hidden layer on the CPU (layers/cpu/ffn.cpp), its bias and activation in one pass.
// pre [rows, width] holds x·W1 without the bias: pre += bias (row by row), then act(pre) is
// written as float32 to out or, where out16 is given, as its bfloat16 alone (bf16_bits,
// core/bf16.h; at train.precision bf16 the w2 products read nothing else). The same float32
// values as linear_forward's bias then activation_forward.
void bias_activation_forward(float* pre, float* out, uint16_t* out16, const float* bias,
                             int64_t rows, int64_t width, Activation act);
// Its backward: g = dout · act'(pre) is written as float32 to dpre (which may alias dout) or,
// where dpre16 is given, as its bfloat16 alone (the two w1 products' operand); and
// dbias [width] += Σ_rows g, in the same chunks and order as add_column_sums over a written g, so
// the bias gradient needs no float32 g and no second pass.
void bias_activation_backward(float* dpre, uint16_t* dpre16, float* dbias, const float* dout,
                              const float* pre, int64_t rows, int64_t width, Activation act);

}  // namespace hg
