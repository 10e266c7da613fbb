// The CUDA backend's kernels that predate the emulation (layers/cuda/*_kernels.cuh), run with
// their launch plans under the CPU emulation of the CUDA thread model and compared with the CPU
// backend on small shapes, sizes chosen to leave partial warps and blocks. NOT A GPU
// (docs/cuda.md).
//
// Tolerances: float32 unit roundoff u = 6e-8. Where a kernel sums in another order than the CPU
// (warp butterflies, 32 row lanes, 264 fixed partials) the difference is bounded by about
// (terms)·u·Σ|terms|; each tolerance below is ten or more times that for the data used, and
// results that docs/cuda.md calls bit-identical are compared bit for bit.
#include <gtest/gtest.h>

// The emulation first, then the kernel headers that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "layers/cuda/activation_kernels.cuh"
#include "layers/cuda/adamw_kernels.cuh"
#include "layers/cuda/cross_entropy_kernels.cuh"
#include "layers/cuda/dconv_kernels.cuh"
#include "layers/cuda/elementwise_kernels.cuh"
#include "layers/cuda/embedding_kernels.cuh"
#include "layers/cuda/layernorm_kernels.cuh"
#include "layers/cuda/linear_kernels.cuh"
#include "layers/cuda/sum_kernels.cuh"
// clang-format on

// The emulation first: the kernel headers compile against it.
#include <cstdint>
#include <vector>

#include "core/adamw_scalars.h"
#include "layers/backend.h"
#include "layers/dconv.h"
#include "tests/cuda_emulation/compare.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_bits_equal;
using testing::expect_matches;
using testing::random_vector;

const emu::Launch kEmulated;
Backend& cpu() { return cpu_backend(); }

// LayerNorm: means and variances are warp butterflies over C <= 45 values of magnitude <= 1
// (error ~ C·u ≈ 3e-6 relative to the sum, divided by C): 1e-5 covers out, mean, rstd. dgain/dbias
// sum 37 rows in 32 lanes instead of the CPU's order: ~37·u·Σ|terms| < 1e-5 for terms < 1.
TEST(EmulatedKernels, LayerNormMatchesTheCpu) {
  for (const auto& [rows, groups, C] : {std::tuple{37, 1, 45}, std::tuple{37, 3, 7}}) {
    const int64_t width = int64_t(groups) * C, vectors = int64_t(rows) * groups;
    const auto x = random_vector(rows * width, 1), gain = random_vector(width, 2),
               bias = random_vector(width, 3), dy = random_vector(rows * width, 4);
    std::vector<float> out(x.size()), mean(vectors), rstd(vectors), want_out(x.size()),
        want_mean(vectors), want_rstd(vectors);
    cuda::launch_layernorm_forward(kEmulated, out.data(), mean.data(), rstd.data(), x.data(),
                                   gain.data(), bias.data(), rows, groups, C);
    cpu().layernorm_forward(want_out.data(), want_mean.data(), want_rstd.data(), x.data(),
                            gain.data(), bias.data(), rows, groups, C);
    const std::string shape = " (groups " + std::to_string(groups) + ")";
    expect_matches("layernorm out" + shape, out, want_out, 1e-5, 1e-5);
    expect_matches("layernorm mean" + shape, mean, want_mean, 1e-6, 1e-5);
    expect_matches("layernorm rstd" + shape, rstd, want_rstd, 1e-6, 1e-5);

    std::vector<float> dx(x.size()), want_dx(x.size());
    auto dgain = random_vector(width, 5), dbias = random_vector(width, 6);  // += onto these
    auto want_dgain = dgain, want_dbias = dbias;
    cuda::launch_layernorm_backward(kEmulated, dx.data(), dgain.data(), dbias.data(), dy.data(),
                                    x.data(), gain.data(), want_mean.data(), want_rstd.data(), rows,
                                    groups, C);
    cpu().layernorm_backward(want_dx.data(), want_dgain.data(), want_dbias.data(), dy.data(),
                             x.data(), gain.data(), want_mean.data(), want_rstd.data(), rows,
                             groups, C);
    expect_matches("layernorm dinp" + shape, dx, want_dx, 1e-5, 1e-5);
    expect_matches("layernorm dgain" + shape, dgain, want_dgain, 1e-5, 1e-5);
    expect_matches("layernorm dbias" + shape, dbias, want_dbias, 1e-5, 1e-5);
  }
}

// relu2 is bit-identical (one product each way, no sum); gelu differs by the CPU's exp_approx
// (2 ulp) against libm's expf here: 1e-6 relative is many times that.
TEST(EmulatedKernels, ActivationsMatchTheCpu) {
  const int64_t n = 1000;
  const auto z = random_vector(n, 7, 3.0f), dy = random_vector(n, 8);
  for (const bool relu2 : {true, false}) {
    const Activation act = relu2 ? Activation::Relu2 : Activation::Gelu;
    std::vector<float> y(n), want_y(n), dz(n), want_dz(n);
    cuda::launch_activation_forward(kEmulated, y.data(), z.data(), n, relu2);
    cuda::launch_activation_backward(kEmulated, dz.data(), dy.data(), z.data(), n, relu2);
    // Not a Backend op (the FFN uses it): the CPU layer function of layers/activation.h.
    activation_forward(want_y.data(), z.data(), n, act);
    activation_backward(want_dz.data(), dy.data(), z.data(), n, act);
    if (relu2) {
      expect_bits_equal("relu2 forward", y, want_y);
      expect_bits_equal("relu2 backward", dz, want_dz);
    } else {
      expect_matches("gelu forward", y, want_y, 1e-6, 1e-6);
      expect_matches("gelu backward", dz, want_dz, 1e-6, 1e-6);
    }
  }
}

// The exponential sums are in double on both sides (differences ~1e-16 relative); the loss and
// the gradient are rounded once to float, so 1 ulp (rtol 2e-7) plus a tiny floor would do: 1e-6.
TEST(EmulatedKernels, CrossEntropyMatchesTheCpu) {
  const int64_t rows = 5;
  const int V = 300;  // more than one 256-thread stride, not a multiple of it
  const auto logits = random_vector(rows * V, 9, 4.0f);
  const std::vector<int32_t> targets = {0, 299, 17, 256, 255};
  std::vector<float> loss(rows), want_loss(rows), g(logits.size()), want_g(logits.size());
  cuda::launch_cross_entropy_forward(kEmulated, loss.data(), logits.data(), targets.data(), rows,
                                     V);
  cpu().cross_entropy_forward(want_loss.data(), logits.data(), targets.data(), rows, V);
  expect_matches("cross-entropy losses", loss, want_loss, 1e-6, 1e-6);
  cuda::launch_cross_entropy_backward(kEmulated, g.data(), logits.data(), targets.data(), 0.25f,
                                      rows, V);
  cpu().cross_entropy_backward(want_g.data(), logits.data(), targets.data(), 0.25f, rows, V);
  expect_matches("cross-entropy dlogits", g, want_g, 1e-8, 1e-6);
  // In place, as the backend may call it (dlogits aliasing logits).
  auto in_place = logits;
  cuda::launch_cross_entropy_backward(kEmulated, in_place.data(), in_place.data(), targets.data(),
                                      0.25f, rows, V);
  expect_bits_equal("cross-entropy dlogits in place", in_place, g);
}

// Column sums of 70 rows in 32 lanes: ~70·u·70 ≈ 3e-4 worst case on |terms| < 1, far less in
// practice; 1e-5 is kept (the measured value is printed). ld > cols leaves padding unread.
TEST(EmulatedKernels, ColumnSumsMatchTheCpuLinearBiasGradient) {
  const int64_t rows = 70, cols = 45, in_dim = 3;
  const auto dout = random_vector(rows * cols, 10), inp = random_vector(rows * in_dim, 11);
  auto dbias = random_vector(cols, 12), want = dbias;
  std::vector<float> dweight(in_dim * cols), weight(in_dim * cols);
  cuda::launch_add_column_sums(kEmulated, dbias.data(), dout.data(), rows, cols, cols);
  cpu().linear_backward(nullptr, dweight.data(), want.data(), dout.data(), inp.data(),
                        weight.data(), rows, in_dim, cols, cols);
  expect_matches("column sums (linear dbias)", dbias, want, 1e-5, 1e-5);

  // Row stride 50 > 45 columns: a double reference (the CPU layer has no such stride).
  const int64_t ld = 50;
  const auto padded = random_vector(rows * ld, 13);
  std::vector<float> sums(cols, 0.0f), ref(cols);
  for (int64_t c = 0; c < cols; ++c) {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += padded[r * ld + c];
    ref[c] = float(s);
  }
  cuda::launch_add_column_sums(kEmulated, sums.data(), padded.data(), rows, cols, ld);
  expect_matches("column sums, row stride 50", sums, ref, 1e-5, 1e-5);
}

// One float operation per element on both sides: bit-identical.
TEST(EmulatedKernels, ElementwiseOpsAreBitIdenticalToTheCpu) {
  const int64_t rows = 13, d = 41, n = rows * d;
  const auto a = random_vector(n, 14), b = random_vector(n, 15), bias = random_vector(d, 16);
  std::vector<float> got(n), want(n);
  cuda::launch_add(kEmulated, got.data(), a.data(), b.data(), n);
  cpu().add(want.data(), a.data(), b.data(), n);
  expect_bits_equal("add", got, want);
  got = a, want = a;
  cuda::launch_add_into(kEmulated, got.data(), b.data(), n);
  cpu().add_into(want.data(), b.data(), n);
  expect_bits_equal("add_into", got, want);
  cuda::launch_scale(kEmulated, got.data(), 0.3f, n);
  cpu().scale(want.data(), 0.3f, n);
  expect_bits_equal("scale", got, want);
  cuda::launch_add_row_bias(kEmulated, got.data(), bias.data(), rows, d);
  cpu().add_row_bias(want.data(), bias.data(), rows, int(d));
  expect_bits_equal("add_row_bias", got, want);
}

// Double sums of 5000 floats in another order: relative difference ~1e-16·5000; 1e-12 relative.
TEST(EmulatedKernels, SumsMatchTheCpu) {
  const int64_t n = 5000;
  const auto x = random_vector(n, 17);
  cuda::launch_sum<false>(kEmulated, x.data(), n);
  const double s = cuda::sum_total;
  cuda::launch_sum<true>(kEmulated, x.data(), n);
  const double q = cuda::sum_total;
  const double want_s = cpu().sum(x.data(), n), want_q = cpu().sum_squares(x.data(), n);
  std::printf("[ measured ] sum: |emulated - cpu| = %.3g, sum of squares: %.3g\n",
              std::fabs(s - want_s), std::fabs(q - want_q));
  EXPECT_NEAR(s, want_s, 1e-12 * n);
  EXPECT_NEAR(q, want_q, 1e-12 * q);
}

// Forward is a copy; backward adds each row in row order, the CPU's order: bit-identical.
TEST(EmulatedKernels, EmbeddingIsBitIdenticalToTheCpu) {
  const int64_t rows = 300;
  const int V = 50, d = 40;
  const auto tokens = testing::skewed_tokens(rows, V, 18);
  const auto weight = random_vector(int64_t(V) * d, 19), dout = random_vector(rows * d, 20);
  std::vector<float> out(rows * d), want(rows * d);
  cuda::launch_embedding_forward(kEmulated, out.data(), tokens.data(), weight.data(), rows, d);
  cpu().embedding_forward(want.data(), tokens.data(), weight.data(), rows, d);
  expect_bits_equal("embedding forward", out, want);
  auto dweight = random_vector(int64_t(V) * d, 21), want_dweight = dweight;  // +=
  cuda::launch_embedding_backward(kEmulated, dweight.data(), dout.data(), tokens.data(), rows, d);
  cpu().embedding_backward(want_dweight.data(), dout.data(), tokens.data(), rows, d);
  expect_bits_equal("embedding backward", dweight, want_dweight);
}

// DConv: three products per output, maybe contracted into FMAs differently by the two
// compilations: 1e-6. Taps gradients sum 2·19 rows in 32 lanes: 1e-5. Taps rows ldt apart: with
// ldt > C (MatFormer heads, §9.6) only the first C columns of the gradient change.
void expect_dconv_matches_the_cpu(int64_t ldt) {
  const int64_t B = 2, n = 19;
  const int C = 37;
  const auto z = random_vector(B * n * C, 22), taps = random_vector(3 * ldt, 23),
             dy = random_vector(B * n * C, 24);
  std::vector<float> y(z.size()), want_y(z.size()), dz(z.size()), want_dz(z.size());
  const auto dtaps0 = random_vector(3 * ldt, 25);
  auto dtaps = dtaps0, want_dtaps = dtaps0;
  cuda::launch_dconv_forward(kEmulated, y.data(), z.data(), taps.data(), B, n, C, ldt);
  dconv_forward(want_y.data(), z.data(), taps.data(), B, n, C, ldt);
  expect_matches("dconv forward", y, want_y, 1e-6, 1e-6);
  cuda::launch_dconv_backward(kEmulated, dz.data(), dtaps.data(), dy.data(), z.data(), taps.data(),
                              B, n, C, ldt);
  dconv_backward(want_dz.data(), want_dtaps.data(), dy.data(), z.data(), taps.data(), B, n, C, ldt);
  expect_matches("dconv dinp", dz, want_dz, 1e-6, 1e-6);
  expect_matches("dconv dtaps", dtaps, want_dtaps, 1e-5, 1e-5);
  for (int64_t i = 0; i < 3 * ldt; ++i) {
    if (i % ldt < C) continue;
    ASSERT_EQ(dtaps[i], dtaps0[i]) << "dtaps column " << i % ldt << " written";
  }
}

TEST(EmulatedKernels, DConvMatchesTheCpu) {
  expect_dconv_matches_the_cpu(37);
  expect_dconv_matches_the_cpu(50);
}

// The CPU loop's statements in its order with the same AdamWScalars; only FMA contraction may
// differ between the two compilations: a few ulp, so 1e-6 relative over three steps.
TEST(EmulatedKernels, AdamWMatchesTheCpu) {
  const int64_t n = 777;
  auto value = random_vector(n, 26), m = random_vector(n, 27, 0.1f), v = random_vector(n, 28, 0.1f);
  for (float& x : v) x = x * x;
  auto want_value = value, want_m = m, want_v = v;
  for (int t = 1; t <= 3; ++t) {
    const auto g = random_vector(n, 30 + t);
    const AdamWScalars k = adamw_scalars(0.9, 0.95, 1e-8, 0.1, t, 1e-2);
    cuda::launch_adamw_step(kEmulated, value.data(), g.data(), m.data(), v.data(), n, k, t != 2);
    cpu().adamw_step(want_value.data(), g.data(), want_m.data(), want_v.data(), n, k, t != 2);
  }
  expect_matches("adamw value", value, want_value, 1e-7, 1e-6);
  expect_matches("adamw exp_avg", m, want_m, 1e-8, 1e-6);
  expect_matches("adamw exp_avg_sq", v, want_v, 1e-9, 1e-6);
}

}  // namespace
}  // namespace hg
