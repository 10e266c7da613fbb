// FFN activations (§1.2): relu2 = relu(z)², gelu = tanh approximation.
#include "layers/activation.h"

#include <cmath>

#include "core/bf16.h"
#include "core/error.h"
#include "core/parallel_for.h"
#include "layers/cpu/fast_exp.h"
#include "layers/cpu/row_reduce.h"

namespace hg {

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

// The spec's ½(1 + tanh u), u = c(z + a z³), written as the identical σ(2u) = 1/(1 + e^(-2u)):
// no cancellation anywhere, and with exp_approx the loops vectorise (scalar tanhf made gelu
// ~40x slower than relu2).
inline float gelu_sigmoid(float z) {
  const float u = kGeluC * (z + kGeluA * z * z * z);
  return 1.0f / (1.0f + exp_approx(-2.0f * u));
}

// act(z) and dy · act'(z), one element: every loop below computes its values through these, so
// the float32 value is the same whatever loop computes it or what it is stored as.
template <Activation A>
inline float act_value(float z) {
  if constexpr (A == Activation::Relu2) {
    const float r = z > 0.0f ? z : 0.0f;
    return r * r;
  } else {
    return z * gelu_sigmoid(z);
  }
}

template <Activation A>
inline float act_gradient(float z, float dy) {
  if constexpr (A == Activation::Relu2) {
    const float r = z > 0.0f ? z : 0.0f;  // d/dz relu(z)² = 2·relu(z)
    return 2.0f * r * dy;
  } else {
    // d/dz z·σ(2u) = σ + z·2σ(1 - σ)·u',  u' = c(1 + 3a z²)
    const float sg = gelu_sigmoid(z);
    const float du = kGeluC * (1.0f + 3.0f * kGeluA * z * z);
    return dy * (sg + 2.0f * z * sg * (1.0f - sg) * du);
  }
}

// f.template operator()<A>() with the activation as a constant, so each loop is compiled (and
// vectorised) for one activation.
template <class F>
void with_activation(Activation act, F&& f) {
  if (act == Activation::Relu2)
    f.template operator()<Activation::Relu2>();
  else
    f.template operator()<Activation::Gelu>();
}

// pre [rows, width] += bias row by row, then write(i, act(pre[i])), one pass.
template <class Write>
void bias_forward_values(float* pre, const float* bias, int64_t rows, int64_t width, Activation act,
                         Write write) {
  with_activation(act, [&]<Activation A>() {
    parallel_for(rows, [&](int64_t r) {
      float* z = pre + r * width;
      for (int64_t c = 0; c < width; ++c) {
        z[c] += bias[c];
        write(r * width + c, act_value<A>(z[c]));
      }
    });
  });
}

// write(i, g = dout[i] · act'(pre[i])) over [rows, width], and dbias [width] += Σ_rows g in
// add_column_sums' chunks and order (layers/cpu/row_reduce.h): the bits of summing written g.
template <class Write>
void bias_backward_values(float* dbias, const float* dout, const float* pre, int64_t rows,
                          int64_t width, Activation act, Write write) {
  with_activation(act, [&]<Activation A>() {
    reduce_rows(
        rows, width,
        [&](int64_t r0, int64_t r1, float* partial) {
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = 0; c < width; ++c) {
              const int64_t i = r * width + c;
              const float g = act_gradient<A>(pre[i], dout[i]);
              write(i, g);
              partial[c] += g;
            }
        },
        [&](int64_t c, float total) { dbias[c] += total; });
  });
}

}  // namespace

void activation_forward(float* out, const float* inp, int64_t n, Activation act) {
  with_activation(act, [&]<Activation A>() {
    for_chunks(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) out[i] = act_value<A>(inp[i]);
    });
  });
}

void activation_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                         Activation act) {
  with_activation(act, [&]<Activation A>() {
    for_chunks(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) dinp[i] = act_gradient<A>(inp[i], dout[i]);
    });
  });
}

void bias_activation_forward(float* pre, float* out, uint16_t* out16, const float* bias,
                             int64_t rows, int64_t width, Activation act) {
  if (out16 != nullptr)
    bias_forward_values(pre, bias, rows, width, act,
                        [out16](int64_t i, float y) { out16[i] = bf16_bits(y); });
  else
    bias_forward_values(pre, bias, rows, width, act, [out](int64_t i, float y) { out[i] = y; });
}

void bias_activation_backward(float* dpre, uint16_t* dpre16, float* dbias, const float* dout,
                              const float* pre, int64_t rows, int64_t width, Activation act) {
  if (dpre16 != nullptr)
    bias_backward_values(dbias, dout, pre, rows, width, act,
                         [dpre16](int64_t i, float g) { dpre16[i] = bf16_bits(g); });
  else
    bias_backward_values(dbias, dout, pre, rows, width, act,
                         [dpre](int64_t i, float g) { dpre[i] = g; });
}

}  // namespace hg
