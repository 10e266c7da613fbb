// MatFormer-nested FFN (§1.2, §1.5): FFN_w(x) = act(x W1[:, :w] + b1[:w]) W2[:w, :] + b2.
// Only the active prefix of w1's columns, b1 and w2's rows is read or gets gradient.
#include "layers/ffn.h"

#include <memory>

#include "layers/linear.h"

namespace hg {

void ffn_forward(float* out, FfnCache& cache, const float* inp, const float* w1, const float* b1,
                 const float* w2, const float* b2, int64_t rows, int d, int F, int width,
                 Activation act) {
  check_ffn_width(F, width);
  shape_ffn_cache(cache, rows, width, Device::Cpu);
  // pre [rows, width] = inp [rows, d] · w1[:, :width] (row stride F) + b1[:width]
  linear_forward(cache.pre.data(), inp, w1, b1, rows, d, width, F);
  activation_forward(cache.act.data(), cache.pre.data(), rows * width, act);
  // out [rows, d] = act [rows, width] · w2[:width, :] + b2: a row prefix of w2 is contiguous.
  linear_forward(out, cache.act.data(), w2, b2, rows, width, d, d);
}

void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2, const float* dout,
                  const FfnCache& cache, const float* inp, const float* w1, const float* w2,
                  int64_t rows, int d, int F, int width, Activation act, float* scratch) {
  check_ffn_width(F, width);
  float* dhidden = scratch;  // [rows, width]: d(act), then d(pre) in place
  linear_backward(dhidden, dw2, db2, dout, cache.act.data(), w2, rows, width, d, d);
  activation_backward(dhidden, dhidden, cache.pre.data(), rows * width, act);
  linear_backward(dinp, dw1, db1, dhidden, inp, w1, rows, d, width, F);
}

void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2, const float* dout,
                  const FfnCache& cache, const float* inp, const float* w1, const float* w2,
                  int64_t rows, int d, int F, int width, Activation act) {
  // Uninitialised on purpose: every element is written before it is read.
  std::unique_ptr<float[]> scratch(new float[static_cast<size_t>(rows) * width]);
  ffn_backward(dinp, dw1, db1, dw2, db2, dout, cache, inp, w1, w2, rows, d, F, width, act,
               scratch.get());
}

}  // namespace hg
