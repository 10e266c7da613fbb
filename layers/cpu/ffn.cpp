// MatFormer-nested FFN (§1.2, §1.5): FFN_w(x) = act(x W1[:, :w] + b1[:w]) W2[:w, :] + b2.
// Only the active prefix of w1's columns, b1 and w2's rows is read or gets gradient.
#include "layers/ffn.h"

#include <cstdint>
#include <memory>

#include "core/gemm.h"
#include "layers/linear.h"

namespace hg {

namespace {

// At train.precision bf16 the hidden activation is read only by the two w2 products, which round
// it to bfloat16: it is written as that bfloat16 by the activation itself (no float32 copy, no
// rounding pass per product), and the hidden gradient likewise exists only as the bfloat16 its
// two w1 products read (its bias gradient is summed in the same pass). The products' bits are
// those of the float32 path at bf16.
bool hidden_in_bf16() { return matmul_precision() == MatmulPrecision::Bf16; }

void shape_cpu_ffn_cache(FfnCache& cache, int64_t rows, int width) {
  if (!hidden_in_bf16()) {
    shape_ffn_cache(cache, rows, width, Device::Cpu);
    cache.act_bf16 = {};
    return;
  }
  if (cache.pre.rank() != 2 || cache.pre.dim(0) != rows || cache.pre.dim(1) != width)
    cache.pre = Tensor({rows, width}, Device::Cpu);
  cache.act = Tensor();
  cache.act_bf16.resize(static_cast<size_t>(rows) * width);
}

}  // namespace

void ffn_forward(float* out, FfnCache& cache, const float* inp, const float* w1, const float* b1,
                 const float* w2, const float* b2, int64_t rows, int d, int F, int width,
                 Activation act) {
  check_ffn_width(F, width);
  shape_cpu_ffn_cache(cache, rows, width);
  // pre [rows, width] = inp [rows, d] · w1[:, :width] (row stride F); b1 joins in the
  // activation's pass, which writes act(pre + b1[:width]) (and pre + b1 itself, for the backward).
  linear_forward(cache.pre.data(), inp, w1, nullptr, rows, d, width, F);
  // out [rows, d] = act [rows, width] · w2[:width, :] + b2: a row prefix of w2 is contiguous.
  if (hidden_in_bf16()) {
    bias_activation_forward(cache.pre.data(), nullptr, cache.act_bf16.data(), b1, rows, width, act);
    linear_forward_bf16(out, cache.act_bf16.data(), w2, b2, rows, width, d, d);
  } else {
    bias_activation_forward(cache.pre.data(), cache.act.data(), nullptr, b1, rows, width, act);
    linear_forward(out, cache.act.data(), w2, b2, rows, width, d, d);
  }
}

void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2, const float* dout,
                  const FfnCache& cache, const float* inp, const float* w1, const float* w2,
                  int64_t rows, int d, int F, int width, Activation act, float* scratch) {
  check_ffn_width(F, width);
  // db1 [width] gets its column sums in the activation's backward pass (no second pass over the
  // hidden gradient, and at bf16 no float32 copy of it at all).
  float* dhidden = scratch;  // [rows, width]: d(act), then d(pre) in place
  if (!hidden_in_bf16()) {
    linear_backward(dhidden, dw2, db2, dout, cache.act.data(), w2, rows, width, d, d);
    bias_activation_backward(dhidden, nullptr, db1, dhidden, cache.pre.data(), rows, width, act);
    linear_backward(dinp, dw1, nullptr, dhidden, inp, w1, rows, d, width, F);
    return;
  }
  // dout is read by two products: rounded once. d(pre) exists only as the bfloat16 the two w1
  // products read.
  const std::unique_ptr<uint16_t[]> dout16 = bf16_copy_of(dout, rows, d, d);
  // Uninitialised on purpose: the activation's backward writes every element.
  const std::unique_ptr<uint16_t[]> dhidden16(new uint16_t[static_cast<size_t>(rows) * width]);
  linear_backward_bf16(dhidden, dw2, db2, dout, dout16.get(), nullptr, cache.act_bf16.data(), w2,
                       rows, width, d, d);
  bias_activation_backward(nullptr, dhidden16.get(), db1, dhidden, cache.pre.data(), rows, width,
                           act);
  linear_backward_bf16(dinp, dw1, nullptr, nullptr, dhidden16.get(), inp, nullptr, w1, rows, d,
                       width, F);
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
