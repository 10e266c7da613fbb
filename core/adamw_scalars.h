// The per-update scalars of AdamW with PyTorch's semantics, shared by the CPU optimizer
// (trainer/optimizer.cpp) and the CUDA kernel (layers/cuda/adamw.cu), so the two round the same
// numbers the same way: bias corrections in double from the 1-based update number t, each scalar
// rounded to float once. Per element, with decay_factor for matrices and 1 otherwise:
//   θ *= decay_factor;  m += (1 − β1)(g − m)  (torch's lerp_);  v = β2 v + (1 − β2) g²;
//   θ −= step_size · m / (sqrt(v) / sqrt_bias2 + eps)
#pragma once
#include <cmath>
#include <cstdint>

namespace hg {

struct AdamWScalars {
  float beta1, beta2;
  float step_size;   // lr / (1 − β1^t)
  float sqrt_bias2;  // sqrt(1 − β2^t)
  float eps;
  float decay_factor;  // 1 − lr · weight_decay, for the tensors that decay
};

inline AdamWScalars adamw_scalars(double beta1, double beta2, double eps, double weight_decay,
                                  int64_t t, double lr) {
  const double bias1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bias2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  return {static_cast<float>(beta1),        static_cast<float>(beta2),
          static_cast<float>(lr / bias1),   static_cast<float>(std::sqrt(bias2)),
          static_cast<float>(eps),          static_cast<float>(1.0 - lr * weight_decay)};
}

}  // namespace hg
