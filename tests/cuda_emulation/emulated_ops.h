// The emulated twin of the CUDA backend as the op set of layers/cuda/attention_layers.h and
// ffn_layer.h (cuda_backend.cpp): each op is the CUDA kernels' launch plans under the CPU
// emulation on host memory, and the CPU's gemm where the device calls cuBLAS (same row-major
// contract, core/gemm.h). So the compositions run here as on a device, but for cuBLAS. Include
// after the emulation.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/device.h"
#include "core/gemm.h"
#include "layers/activation.h"
#include "layers/cuda/activation_kernels.cuh"
#include "layers/cuda/attention_compress_kernels.cuh"
#include "layers/cuda/attention_kernels.cuh"
#include "layers/cuda/attention_operands.h"
#include "layers/cuda/attention_split_kernels.cuh"
#include "layers/cuda/dconv_kernels.cuh"
#include "layers/cuda/elementwise_kernels.cuh"
#include "layers/cuda/layernorm_kernels.cuh"
#include "layers/cuda/linear_kernels.cuh"

namespace hg::testing {

struct EmulatedOps {
  emu::Launch launch;
  static void cpu_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc) {
    hg::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  Device device() const { return Device::Cpu; }
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
            int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) const {
    cpu_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                      int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) const {
    cuda::run_linear_forward(launch, cpu_gemm, out, inp, weight, bias, rows, in_dim, out_dim, ldw);
  }
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int64_t rows, int64_t in_dim,
                       int64_t out_dim, int64_t ldw) const {
    cuda::run_linear_backward(launch, cpu_gemm, dinp, dweight, dbias, dout, inp, weight, rows,
                              in_dim, out_dim, ldw);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int64_t rows, int groups, int C) const {
    cuda::launch_layernorm_forward(launch, out, mean, rstd, inp, gain, bias, rows, groups, C);
  }
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int64_t rows, int groups, int C) const {
    cuda::launch_layernorm_backward(launch, dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows,
                                    groups, C);
  }
  void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C,
                     int64_t ldt) const {
    cuda::launch_dconv_forward(launch, out, inp, taps, B, n, C, ldt);
  }
  void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                      const float* taps, int64_t B, int64_t n, int C, int64_t ldt) const {
    cuda::launch_dconv_backward(launch, dinp, dtaps, dout, inp, taps, B, n, C, ldt);
  }
  void rope(float* x, const float* cs, const float* sn, int64_t B, int64_t n, int H, int e,
            bool inverse) const {
    cuda::launch_rope(launch, x, cs, sn, B, n, H, e, inverse);
  }
  void chunk_softmax_forward(float* probs, const float* logits, int64_t B, int64_t n, int l,
                             int cols) const {
    cuda::launch_chunk_softmax_forward(launch, probs, logits, B, n, l, cols);
  }
  void chunk_softmax_backward(float* dlogits, const float* dprobs, const float* probs, int64_t B,
                              int64_t n, int l, int cols) const {
    cuda::launch_chunk_softmax_backward(launch, dlogits, dprobs, probs, B, n, l, cols);
  }
  void chunk_compress_forward(float* comp, const float* x, const float* probs, int64_t B, int64_t n,
                              int l, int H, int r, int e) const {
    cuda::launch_chunk_compress_forward(launch, comp, x, probs, B, n, l, H, r, e);
  }
  void chunk_compress_backward(float* dx, float* dprobs, const float* dcomp, const float* x,
                               const float* probs, int64_t B, int64_t n, int l, int H, int r,
                               int e) const {
    cuda::launch_chunk_compress_backward(launch, dx, dprobs, dcomp, x, probs, B, n, l, H, r, e);
  }
  void attention_core_forward(float* out, float* lse, const cuda::AttentionOperands& x) const {
    cuda::launch_attention_forward(launch, out, lse, x);
  }
  void attention_core_backward(const cuda::AttentionGrads& g, float* delta, const float* dout,
                               const float* out, const float* lse,
                               const cuda::AttentionOperands& x) const {
    cuda::launch_attention_backward(launch, g, delta, dout, out, lse, x);
  }
  void attention_merge(float* out, float* lse, const float* out_a, const float* lse_a,
                       const float* out_b, const float* lse_b,
                       const cuda::AttentionOperands& x) const {
    cuda::launch_attention_merge(launch, out, lse, out_a, lse_a, out_b, lse_b, x.B, x.nq, x.H, x.e);
  }
  void activation_forward(float* out, const float* inp, int64_t n, Activation act) const {
    cuda::launch_activation_forward(launch, out, inp, n, act == Activation::Relu2);
  }
  void activation_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                           Activation act) const {
    cuda::launch_activation_backward(launch, dinp, dout, inp, n, act == Activation::Relu2);
  }
  void add_into(float* y, const float* x, int64_t n) const {
    cuda::launch_add_into(launch, y, x, n);
  }
  void copy(float* out, const float* x, int64_t n) const { std::copy(x, x + n, out); }  // memcpy
  void zero(float* x, int64_t n) const { std::fill(x, x + n, 0.0f); }                   // memset
  void upload(float* dst, const float* host, int64_t n) const { std::copy(host, host + n, dst); }
};

}  // namespace hg::testing
