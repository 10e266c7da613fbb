// The FFN (layers/ffn.h) composed from device ops as layers/cpu/ffn.cpp composes it, statement
// for statement: linear, activation, linear. Written over the op set of attention_layers.h (the
// CUDA backend itself, or tests/cuda_emulation's EmulatedOps), plus activation_forward/backward.
#pragma once
#include <cstdint>

#include "layers/ffn.h"

namespace hg::cuda {

// out [rows, d] (=); the cache keeps pre and act [rows, width] on the ops' device.
template <class Ops>
void ffn_forward(Ops& ops, float* out, FfnCache& cache, const float* inp, const float* w1,
                 const float* b1, const float* w2, const float* b2, int64_t rows, int d, int F,
                 int width, Activation act) {
  check_ffn_width(F, width);
  shape_ffn_cache(cache, rows, width, ops.device());
  ops.linear_forward(cache.pre.data(), inp, w1, b1, rows, d, width, F);
  ops.activation_forward(cache.act.data(), cache.pre.data(), rows * width, act);
  ops.linear_forward(out, cache.act.data(), w2, b2, rows, width, d, d);
}

// dinp [rows, d] (=), parameter gradients (+=); dhidden [rows, width] is the caller's workspace
// (d(act), then d(pre) in place).
template <class Ops>
void ffn_backward(Ops& ops, float* dhidden, float* dinp, float* dw1, float* db1, float* dw2,
                  float* db2, const float* dout, const FfnCache& cache, const float* inp,
                  const float* w1, const float* w2, int64_t rows, int d, int F, int width,
                  Activation act) {
  check_ffn_width(F, width);
  ops.linear_backward(dhidden, dw2, db2, dout, cache.act.data(), w2, rows, width, d, d);
  ops.activation_backward(dhidden, dhidden, cache.pre.data(), rows * width, act);
  ops.linear_backward(dinp, dw1, db1, dhidden, inp, w1, rows, d, width, F);
}

}  // namespace hg::cuda
