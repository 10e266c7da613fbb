// Token embedding on every backend (tests/support/backends.h). Token ids are host int32 arrays on
// every backend (layers/backend.h); weights and gradients are device buffers.
#include <gtest/gtest.h>

#include <vector>

#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_close;
using testing::expect_gradients_match;
using testing::random_vector;
using testing::to_host;

class Embedding : public testing::OnEveryBackend {};
HG_TEST_ON_EVERY_BACKEND(Embedding);

TEST_P(Embedding, ForwardCopiesRows) {
  const int V = 4, d = 3;
  std::vector<float> W(V * d);
  for (int i = 0; i < V * d; ++i) W[i] = float(i);
  std::vector<int32_t> tokens = {2, 0, 2, 3};
  Tensor dev_W = on_device(W), out = zeros_on_device(int64_t(tokens.size()) * d);
  backend().embedding_forward(out.data(), tokens.data(), dev_W.data(), int64_t(tokens.size()), d);
  EXPECT_EQ(to_host(out), (std::vector<float>{6, 7, 8, 0, 1, 2, 6, 7, 8, 9, 10, 11}));
}

TEST_P(Embedding, BackwardScatterAddsRepeatedTokens) {
  const int d = 2;
  std::vector<int32_t> tokens = {1, 1, 0};
  Tensor dout = on_device({1, 2, 10, 20, 100, 200}),
         dW = on_device(std::vector<float>(3 * d, 0.5f));
  backend().embedding_backward(dW.data(), dout.data(), tokens.data(), 3, d);
  EXPECT_EQ(to_host(dW), (std::vector<float>{100.5f, 200.5f, 11.5f, 22.5f, 0.5f, 0.5f}));
}

TEST_P(Embedding, GradientsMatchFiniteDifferences) {
  const int V = 7, d = 70;  // d spans two column blocks
  const int64_t rows = 9;
  std::vector<int32_t> tokens = {3, 0, 6, 3, 3, 1, 6, 2, 0};
  auto W = random_vector(V * d, 1), R = random_vector(rows * d, 2);
  Tensor dev_W = on_device(W), dev_R = on_device(R), out = zeros_on_device(rows * d);
  auto loss = [&] {
    dev_W.copy_from_host(W.data());
    backend().embedding_forward(out.data(), tokens.data(), dev_W.data(), rows, d);
    return dot(to_host(out).data(), R.data(), rows * d);
  };
  Tensor dev_dW = zeros_on_device(V * d);
  backend().embedding_backward(dev_dW.data(), dev_R.data(), tokens.data(), rows, d);
  const auto dW = to_host(dev_dW);
  EXPECT_EQ(expect_gradients_match("dW", loss, W.data(), dW.data(), V * d, {.max_checks = 200}), 0);
  // Token 4 and 5 never occur: their rows get nothing.
  for (int c = 0; c < d; ++c) {
    EXPECT_EQ(dW[4 * d + c], 0.0f);
    EXPECT_EQ(dW[5 * d + c], 0.0f);
  }
}

// Bit-identical to the CPU backend both ways: the forward copies rows; the CUDA backward gives
// each dweight element one owner thread that adds its rows in row order, the CPU layer's order
// (layers/cuda/embedding.cu), onto the same starting values. Skewed tokens (many repeats);
// d = 300 spans two 256-column blocks.
TEST_P(Embedding, MatchesTheCpuBackendBitForBit) {
  const int V = 50, d = 300;
  const int64_t rows = 500;
  const auto weight = random_vector(static_cast<int64_t>(V) * d, 41);
  const auto tokens = testing::skewed_tokens(rows, V, 42);
  const auto dout = random_vector(rows * d, 43);
  const auto dweight0 = random_vector(static_cast<int64_t>(V) * d, 44);
  std::vector<float> out(rows * d), dweight = dweight0;
  cpu_backend().embedding_forward(out.data(), tokens.data(), weight.data(), rows, d);
  cpu_backend().embedding_backward(dweight.data(), dout.data(), tokens.data(), rows, d);

  Tensor dev_weight = on_device(weight), dev_out = zeros_on_device(rows * d),
         dev_dout = on_device(dout), dev_dweight = on_device(dweight0);
  backend().embedding_forward(dev_out.data(), tokens.data(), dev_weight.data(), rows, d);
  backend().embedding_backward(dev_dweight.data(), dev_dout.data(), tokens.data(), rows, d);
  expect_close("out", to_host(dev_out), out, 0.0, 0.0);
  expect_close("dweight (+=)", to_host(dev_dweight), dweight, 0.0, 0.0);
}

}  // namespace
}  // namespace hg
