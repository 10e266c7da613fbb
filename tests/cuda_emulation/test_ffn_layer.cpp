// layers/cuda/ffn_layer.h (the FFN: linear, activation, linear) over the emulated device ops
// (emulated_ops.h) against the CPU backend's FFN, both activations and a MatFormer prefix
// width. NOT A GPU (docs/cuda.md).
//
// Tolerance: the same CPU gemm on both sides; the bias adds and column sums of the device
// kernels and gelu's exp (2 ulp, test_existing_kernels.cpp) differ by a few ulp of values
// ~1-10 through two layers: 1e-5 absolute + relative.
#include <gtest/gtest.h>

// The emulation first, then the kernel headers (through emulated_ops.h) that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "tests/cuda_emulation/emulated_ops.h"
// clang-format on

#include <vector>

#include "layers/backend.h"
#include "layers/cuda/ffn_layer.h"
#include "tests/cuda_emulation/compare.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_matches;
using testing::random_vector;

TEST(EmulatedLayers, FfnMatchesTheCpuBackend) {
  const int64_t rows = 37;
  const int d = 12, F = 40, width = 20;  // a prefix of the hidden units, as MatFormer runs
  const auto x = random_vector(rows * d, 1), w1 = random_vector(d * F, 2, 0.5f),
             b1 = random_vector(F, 3, 0.5f), w2 = random_vector(F * d, 4, 0.5f),
             b2 = random_vector(d, 5, 0.5f), dy = random_vector(rows * d, 6);
  for (const Activation act : {Activation::Relu2, Activation::Gelu}) {
    const std::string what = act == Activation::Relu2 ? "ffn relu2" : "ffn gelu";
    std::vector<float> y(rows * d), want_y(y.size()), dx(x.size()), want_dx(x.size()),
        dhidden(rows * width);
    auto dw1 = random_vector(d * F, 7), db1 = random_vector(F, 8), dw2 = random_vector(F * d, 9),
         db2 = random_vector(d, 10);  // += onto these
    auto want_dw1 = dw1, want_db1 = db1, want_dw2 = dw2, want_db2 = db2;
    FfnCache cache, want_cache;
    testing::EmulatedOps ops;
    cuda::ffn_forward(ops, y.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2.data(),
                      rows, d, F, width, act);
    cpu_backend().ffn_forward(want_y.data(), want_cache, x.data(), w1.data(), b1.data(), w2.data(),
                              b2.data(), rows, d, F, width, act);
    expect_matches(what + " out", y, want_y, 1e-5, 1e-5);
    cuda::ffn_backward(ops, dhidden.data(), dx.data(), dw1.data(), db1.data(), dw2.data(),
                       db2.data(), dy.data(), cache, x.data(), w1.data(), w2.data(), rows, d, F,
                       width, act);
    cpu_backend().ffn_backward(want_dx.data(), want_dw1.data(), want_db1.data(), want_dw2.data(),
                               want_db2.data(), dy.data(), want_cache, x.data(), w1.data(),
                               w2.data(), rows, d, F, width, act);
    expect_matches(what + " dinp", dx, want_dx, 1e-5, 1e-5);
    expect_matches(what + " dw1", dw1, want_dw1, 1e-5, 1e-5);
    expect_matches(what + " db1", db1, want_db1, 1e-5, 1e-5);
    expect_matches(what + " dw2", dw2, want_dw2, 1e-5, 1e-5);
    expect_matches(what + " db2", db2, want_db2, 1e-5, 1e-5);
  }
}

}  // namespace
}  // namespace hg
