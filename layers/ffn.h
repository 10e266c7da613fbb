// FFN_w(x) = act(x W1[:, :w] + b1[:w]) W2[:w, :] + b2 (§1.2), the MatFormer-nested FFN (§1.5):
// only the first `width` hidden units are active. w1 is stored [d, F] (row stride F), w2 [F, d].
// b2 may be null (tensor parallelism adds it once, after the all-reduce).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "layers/activation.h"

namespace hg {

// Throws UsageError unless 1 <= width <= F (every backend checks before its first kernel).
inline void check_ffn_width(int F, int width) {
  require(width >= 1 && width <= F,
          "FFN width " + std::to_string(width) + " outside [1, F = " + std::to_string(F) + "]");
}

struct FfnCache {
  Tensor pre;  // [rows, width] x W1 + b1, before the activation
  Tensor act;  // [rows, width] act(pre); empty on the CPU at train.precision bf16, which keeps
  std::vector<uint16_t> act_bf16;  // [rows, width] bf16_bits(act(pre)) instead (layers/cpu/ffn.cpp)
};

// Gives the cache's tensors shape [rows, width] on `device`. Reallocates only on a shape or
// device change: the forward overwrites every element, so the zero-fill of a fresh Tensor would
// be wasted work in the steady state.
inline void shape_ffn_cache(FfnCache& cache, int64_t rows, int width, Device device) {
  for (Tensor* t : {&cache.pre, &cache.act})
    if (t->device() != device || t->rank() != 2 || t->dim(0) != rows || t->dim(1) != width)
      *t = Tensor({rows, width}, device);
}

// inp [rows, d] -> out [rows, d] (=). b2 may be null (tensor parallelism adds it after the sum);
// b1, and db1 below, may not.
void ffn_forward(float* out, FfnCache& cache, const float* inp, const float* w1, const float* b1,
                 const float* w2, const float* b2, int64_t rows, int d, int F, int width,
                 Activation act);
// dinp [rows, d] (=); dw1 [d, F], db1 [F], dw2 [F, d], db2 [d] (+=, only the active prefix).
void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2, const float* dout,
                  const FfnCache& cache, const float* inp, const float* w1, const float* w2,
                  int64_t rows, int d, int F, int width, Activation act);
// The same with caller-provided scratch [rows, width] for the hidden gradient (the form above
// allocates it on every call; the training loop should pass a reused workspace).
void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2, const float* dout,
                  const FfnCache& cache, const float* inp, const float* w1, const float* w2,
                  int64_t rows, int d, int F, int width, Activation act, float* scratch);

}  // namespace hg
