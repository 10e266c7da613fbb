// train.precision bf16 at the model level (ARCHITECTURE.md §9.1): the first step's gradients
// against fp32's, on every tiny configuration (all of §1's options; their products are small and
// take core/gemm's rounded-sgemm path) and on the reference shape (whose products take oneDNN's
// bf16 matmul).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/gemm.h"
#include "model/stage_model.h"
#include "tests/support/tiny_models.h"
#include "trainer/train_step.h"

namespace hg {
namespace {

struct Gradients {
  double loss = 0;
  std::map<std::string, std::vector<float>> grads;
};

Gradients first_step(const Config& config, MatmulPrecision precision) {
  const MatmulPrecisionScope scope(precision);
  const int L = config.train.seq_len, B = config.train.micro_batch;
  StageModel model(config.model, L);
  model.params().init_all(config.train.seed);
  const auto tokens = testing::random_tokens(B, L, config.model.vocab_size, 3);
  StepContext ctx;
  ctx.seed = config.train.seed;
  ctx.loss_scale = 1.0f / (B * L);
  const auto widths = submodel_widths(config.model);
  Gradients g;
  g.loss = accumulate_gradients(model, ctx, {TokenBatch{tokens.data(), B, 0}},
                                {static_cast<int>(widths.size()) - 1}, widths)
               .at(0) /
           (B * L);
  for (const auto& [name, p] : model.params().all())
    g.grads[name].assign(p.grad.data(), p.grad.data() + p.grad.numel());
  return g;
}

double norm(const std::vector<float>& a) {
  double s = 0;
  for (float x : a) s += double(x) * x;
  return std::sqrt(s);
}

// ||a - b|| / max(||b||, floor).
double relative_error(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return std::sqrt(diff) / std::max(norm(b), floor);
}

// The bound. Rounding an operand to bf16 (8 significant bits, nearest) changes it by at most
// u = 2^-9 relatively, so each term a·b of a product moves by at most 2u + u² ≈ 2^-8 relatively,
// and a product's error is at most 2^-8·Σ|a||b|. A gradient is the end of a chain of products
// (forward to the loss, backward to the tensor); to first order the errors add along it. The
// longest chain here, from the head back to the embedding through every block's attention
// (Q, K, V, scores, probabilities x V, Wo) and FFN (W1, W2), is under 20 products, so a tensor's
// gradient moves by at most ~20·2^-8 ≈ 0.08 of its size when every rounding pushes the same way;
// independent roundings add in quadrature (~sqrt(20)·2^-8 ≈ 0.02), which is what we see. The
// test allows the first-order worst case.
//
// One tensor's exact gradient is zero: attn/proj/bias shifts every row of a chunk's softmax by the
// same amount, and a softmax is invariant to that, so in either precision its gradient is roundoff
// of the size of 2^-24 of the terms it sums. Relative to itself that is noise against noise; each
// tensor's error is therefore measured against max(its fp32 norm, 1e-4 of the whole gradient's
// norm), a floor far below every tensor whose gradient is not zero.
constexpr double kGradientTolerance = 20.0 / 256.0;
constexpr double kNormFloor = 1e-4;
// fp32 products (the reference) and bf16 ones must differ by more than float32 noise, else the
// operands were not rounded: their difference is of the order of 2^-9, far above 2^-20.
constexpr double kMustDifferBy = 1.0 / (1 << 20);

void expect_bf16_close_to_fp32(const Config& config, const std::string& what) {
  const Gradients fp32 = first_step(config, MatmulPrecision::Fp32);
  const Gradients bf16 = first_step(config, MatmulPrecision::Bf16);
  EXPECT_NEAR(bf16.loss, fp32.loss, kGradientTolerance * std::fabs(fp32.loss)) << what;
  double total = 0;
  for (const auto& [name, g] : fp32.grads) total += norm(g) * norm(g);
  const double floor = kNormFloor * std::sqrt(total);
  double worst = 0, largest = 0;
  std::string worst_name;
  for (const auto& [name, g] : fp32.grads) {
    const double e = relative_error(bf16.grads.at(name), g, floor);
    if (e > worst) worst = e, worst_name = name;
    largest = std::max(largest, e);
    EXPECT_LT(e, kGradientTolerance) << what << ": " << name;
  }
  EXPECT_GT(largest, kMustDifferBy) << what << ": bf16 gradients equal fp32's";
  std::printf("%-28s loss fp32 %.6f bf16 %.6f; worst gradient error %.4f (%s)\n", what.c_str(),
              fp32.loss, bf16.loss, worst, worst_name.c_str());
}

TEST(Bf16Model, FirstStepGradientsOfEveryTinyConfigurationMatchFp32WithinTheBound) {
  for (const testing::TinyModel& tiny : testing::tiny_models())
    expect_bf16_close_to_fp32(testing::tiny_config(tiny.ini), tiny.name);
}

TEST(Bf16Model, FirstStepGradientsAtTheReferenceShapeMatchFp32WithinTheBound) {
  std::string why;
  if (!bf16_matmul_supported(&why)) GTEST_SKIP() << why;
  Config config = testing::tiny_config("");  // the defaults: the reference configuration
  config.train.micro_batch = 1;
  expect_bf16_close_to_fp32(config, "reference shape");
}

}  // namespace
}  // namespace hg
