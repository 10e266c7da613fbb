// FFN activations (§1.2): relu2 = relu(z)², gelu = tanh approximation.
#include "layers/activation.h"

#include <cmath>

#include "core/error.h"
#include "core/parallel_for.h"

namespace hg {

Activation parse_activation(const std::string& name) {
  if (name == "relu2") return Activation::Relu2;
  if (name == "gelu") return Activation::Gelu;
  throw UsageError("model.activation: unknown activation '" + name + "' (use relu2 or gelu)");
}

namespace {

// Element-wise loops are split into fixed chunks: big enough to amortise the task, small enough
// to balance; each element's value does not depend on the split.
constexpr int64_t kChunk = 4096;

template <class Body>
void for_chunks(int64_t n, Body&& body) {
  parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t i0 = c * kChunk;
    const int64_t i1 = i0 + kChunk < n ? i0 + kChunk : n;
    body(i0, i1);
  });
}

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/π)
constexpr float kGeluA = 0.044715f;

}  // namespace

void activation_forward(float* out, const float* inp, int64_t n, Activation act) {
  if (act == Activation::Relu2) {
    for_chunks(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float r = inp[i] > 0.0f ? inp[i] : 0.0f;
        out[i] = r * r;
      }
    });
  } else {
    for_chunks(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float z = inp[i];
        out[i] = 0.5f * z * (1.0f + std::tanh(kGeluC * (z + kGeluA * z * z * z)));
      }
    });
  }
}

void activation_backward(float* dinp, const float* dout, const float* inp, int64_t n, Activation act) {
  if (act == Activation::Relu2) {
    // d/dz relu(z)² = 2·relu(z)
    for_chunks(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float r = inp[i] > 0.0f ? inp[i] : 0.0f;
        dinp[i] = 2.0f * r * dout[i];
      }
    });
  } else {
    // d/dz ½z(1 + tanh u) = ½(1 + tanh u) + ½z(1 - tanh²u)·u',  u = c(z + a z³), u' = c(1 + 3a z²)
    for_chunks(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float z = inp[i];
        const float t = std::tanh(kGeluC * (z + kGeluA * z * z * z));
        const float du = kGeluC * (1.0f + 3.0f * kGeluA * z * z);
        dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * du);
      }
    });
  }
}

}  // namespace hg
