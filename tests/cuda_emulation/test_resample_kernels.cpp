// layers/cuda/resample_kernels.cuh (ShiftRight, average pooling, repeat upsampling) under the CPU
// emulation of the CUDA thread model, against the CPU backend. Each output is a copy or the CPU's
// own sum-then-divide in its order: bit-identical. NOT A GPU (docs/cuda.md).
#include <gtest/gtest.h>

// The emulation first, then the kernel headers that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "layers/cuda/resample_kernels.cuh"
// clang-format on

#include <vector>

#include "layers/backend.h"
#include "tests/cuda_emulation/compare.h"
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

}  // namespace
}  // namespace hg
