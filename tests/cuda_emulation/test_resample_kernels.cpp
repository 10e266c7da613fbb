// layers/cuda/resample_kernels.cuh (ShiftRight, average pooling, repeat upsampling, the linear
// pool and upsampler) under the CPU emulation of the CUDA thread model, against the CPU backend.
// Copies and the CPU's own sum-then-divide in its order are bit-identical. The linear pool and
// upsampler run the CPU's gemm here (cuBLAS on a device): outputs may differ where the bias is
// added (after the product here, maybe folded into it on the CPU), 1 ulp of values ~3, so 1e-6;
// their bias gradients are column sums in another order (reduce.cuh), 1e-5 as in
// test_existing_kernels.cpp. NOT A GPU (docs/cuda.md).
#include <gtest/gtest.h>

// The emulation first, then the kernel headers that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "layers/cuda/resample_kernels.cuh"
// clang-format on

#include <vector>

#include "layers/backend.h"
#include "tests/cuda_emulation/compare.h"
#include "tests/cuda_emulation/emulated_ops.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_bits_equal;
using testing::random_vector;

const emu::Launch kEmulated;

TEST(EmulatedKernels, ShiftRightIsBitIdenticalToTheCpu) {
  const int64_t B = 3, n = 11;
  const int d = 37;
  const auto x = random_vector(B * n * d, 1);
  for (const int s : {0, 2, 11, 14}) {  // no shift, some, all rows, more than the sequence
    std::vector<float> got(x.size(), 7.0f), want(x.size(), -7.0f);
    cuda::launch_shift_right(kEmulated, false, got.data(), x.data(), B, n, d, s);
    cpu_backend().shift_right_forward(want.data(), x.data(), B, n, d, s);
    expect_bits_equal("shift_right forward, s " + std::to_string(s), got, want);
    cuda::launch_shift_right(kEmulated, true, got.data(), x.data(), B, n, d, s);
    cpu_backend().shift_right_backward(want.data(), x.data(), B, n, d, s);
    expect_bits_equal("shift_right backward, s " + std::to_string(s), got, want);
  }
}

TEST(EmulatedKernels, AveragePoolingIsBitIdenticalToTheCpu) {
  const int64_t B = 2, n = 12;
  const int d = 35;
  for (const int k : {1, 3, 4}) {
    const auto x = random_vector(B * n * d, 2), dy = random_vector(B * (n / k) * d, 3);
    std::vector<float> y(B * (n / k) * d), want_y(y.size()), dx(x.size()), want_dx(x.size());
    cuda::launch_pool_avg(kEmulated, false, y.data(), x.data(), B, n, d, k);
    cpu_backend().pool_avg_forward(want_y.data(), x.data(), B, n, d, k);
    expect_bits_equal("pool_avg forward, k " + std::to_string(k), y, want_y);
    cuda::launch_pool_avg(kEmulated, true, dx.data(), dy.data(), B, n, d, k);
    cpu_backend().pool_avg_backward(want_dx.data(), dy.data(), B, n, d, k);
    expect_bits_equal("pool_avg backward, k " + std::to_string(k), dx, want_dx);
  }
}

TEST(EmulatedKernels, RepeatUpsamplingIsBitIdenticalToTheCpu) {
  const int64_t B = 2, m = 5;
  const int d = 33;
  for (const int k : {1, 3}) {
    const auto s = random_vector(B * m * d, 4), dy = random_vector(B * m * k * d, 5);
    std::vector<float> y(dy.size()), want_y(dy.size()), ds(s.size()), want_ds(s.size());
    cuda::launch_upsample_repeat(kEmulated, false, y.data(), s.data(), B, m, d, k);
    cpu_backend().upsample_repeat_forward(want_y.data(), s.data(), B, m, d, k);
    expect_bits_equal("upsample_repeat forward, k " + std::to_string(k), y, want_y);
    cuda::launch_upsample_repeat(kEmulated, true, ds.data(), dy.data(), B, m, d, k);
    cpu_backend().upsample_repeat_backward(want_ds.data(), dy.data(), B, m, d, k);
    expect_bits_equal("upsample_repeat backward, k " + std::to_string(k), ds, want_ds);
  }
}

TEST(EmulatedKernels, LinearPoolAndUpsamplerMatchTheCpu) {
  const int64_t B = 2, n = 12;
  const int d = 7, k = 3;
  const int64_t kd = int64_t(k) * d, m = n / k;
  auto gemm = testing::EmulatedOps::cpu_gemm;
  // Pool: [B, n, d] -> [B, n/k, d] through pool/weight [k·d, d].
  const auto z = random_vector(B * n * d, 6), pw = random_vector(kd * d, 7),
             pb = random_vector(d, 8), dy = random_vector(B * m * d, 9);
  std::vector<float> y(B * m * d), want_y(y.size()), dz(z.size()), want_dz(z.size());
  auto dpw = random_vector(kd * d, 10), dpb = random_vector(d, 11);  // += onto these
  auto want_dpw = dpw, want_dpb = dpb;
  cuda::run_pool_linear(kEmulated, gemm, y.data(), z.data(), pw.data(), pb.data(), B, n, d, k);
  cpu_backend().pool_linear_forward(want_y.data(), z.data(), pw.data(), pb.data(), B, n, d, k);
  testing::expect_matches("pool_linear forward", y, want_y, 1e-6, 1e-6);
  cuda::run_pool_linear_backward(kEmulated, gemm, dz.data(), dpw.data(), dpb.data(), dy.data(),
                                 z.data(), pw.data(), B, n, d, k);
  cpu_backend().pool_linear_backward(want_dz.data(), want_dpw.data(), want_dpb.data(), dy.data(),
                                     z.data(), pw.data(), B, n, d, k);
  testing::expect_matches("pool_linear dinp", dz, want_dz, 1e-6, 1e-6);
  testing::expect_matches("pool_linear dweight", dpw, want_dpw, 1e-6, 1e-6);
  testing::expect_matches("pool_linear dbias", dpb, want_dpb, 1e-5, 1e-5);

  // Upsample: [B, m, d] -> [B, m·k, d] through up/linear/weight [d, k·d].
  const auto s = random_vector(B * m * d, 12), uw = random_vector(int64_t(d) * kd, 13),
             ub = random_vector(kd, 14), du = random_vector(B * n * d, 15);
  std::vector<float> u(B * n * d), want_u(u.size()), ds(s.size()), want_ds(s.size());
  auto duw = random_vector(int64_t(d) * kd, 16), dub = random_vector(kd, 17);
  auto want_duw = duw, want_dub = dub;
  cuda::run_upsample_linear(kEmulated, gemm, u.data(), s.data(), uw.data(), ub.data(), B, m, d, k);
  cpu_backend().upsample_linear_forward(want_u.data(), s.data(), uw.data(), ub.data(), B, m, d, k);
  testing::expect_matches("upsample_linear forward", u, want_u, 1e-6, 1e-6);
  cuda::run_upsample_linear_backward(kEmulated, gemm, ds.data(), duw.data(), dub.data(), du.data(),
                                     s.data(), uw.data(), B, m, d, k);
  cpu_backend().upsample_linear_backward(want_ds.data(), want_duw.data(), want_dub.data(),
                                         du.data(), s.data(), uw.data(), B, m, d, k);
  testing::expect_matches("upsample_linear dinp", ds, want_ds, 1e-6, 1e-6);
  testing::expect_matches("upsample_linear dweight", duw, want_duw, 1e-6, 1e-6);
  testing::expect_matches("upsample_linear dbias", dub, want_dub, 1e-5, 1e-5);
}

}  // namespace
}  // namespace hg
