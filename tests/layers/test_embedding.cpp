#include <gtest/gtest.h>

#include <vector>

#include "layers/embedding.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

TEST(Embedding, ForwardCopiesRows) {
  const int V = 4, d = 3;
  std::vector<float> W(V * d);
  for (int i = 0; i < V * d; ++i) W[i] = float(i);
  std::vector<int32_t> tokens = {2, 0, 2, 3};
  std::vector<float> out(tokens.size() * d);
  embedding_forward(out.data(), tokens.data(), W.data(), int64_t(tokens.size()), d);
  EXPECT_EQ(out, (std::vector<float>{6, 7, 8, 0, 1, 2, 6, 7, 8, 9, 10, 11}));
}

TEST(Embedding, BackwardScatterAddsRepeatedTokens) {
  const int d = 2;
  std::vector<int32_t> tokens = {1, 1, 0};
  std::vector<float> dout = {1, 2, 10, 20, 100, 200}, dW(3 * d, 0.5f);
  embedding_backward(dW.data(), dout.data(), tokens.data(), 3, d);
  EXPECT_EQ(dW, (std::vector<float>{100.5f, 200.5f, 11.5f, 22.5f, 0.5f, 0.5f}));
}

TEST(Embedding, GradientsMatchFiniteDifferences) {
  const int V = 7, d = 70;  // d spans two column blocks
  const int64_t rows = 9;
  std::vector<int32_t> tokens = {3, 0, 6, 3, 3, 1, 6, 2, 0};
  auto W = random_vector(V * d, 1), R = random_vector(rows * d, 2);
  std::vector<float> out(rows * d);
  auto loss = [&] {
    embedding_forward(out.data(), tokens.data(), W.data(), rows, d);
    return dot(out.data(), R.data(), rows * d);
  };
  std::vector<float> dW(V * d, 0.0f);
  embedding_backward(dW.data(), R.data(), tokens.data(), rows, d);
  EXPECT_EQ(expect_gradients_match("dW", loss, W.data(), dW.data(), V * d, {.max_checks = 200}), 0);
  // Token 4 and 5 never occur: their rows get nothing.
  for (int c = 0; c < d; ++c) {
    EXPECT_EQ(dW[4 * d + c], 0.0f);
    EXPECT_EQ(dW[5 * d + c], 0.0f);
  }
}

}  // namespace
}  // namespace hg
