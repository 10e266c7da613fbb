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

}  // namespace hg
