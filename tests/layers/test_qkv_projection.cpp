// The CPU Q/K/V projections (layers/cpu/qkv_projection.h) at train.precision bf16 round each
// operand once for all the products that read it. That must give the bits of one rounding per
// product (the plain linear layers and gemm at bf16), for self-attention (one input) and
// resampling (two inputs), with zbh1's deferred weight gradients too, and with the projections'
// gradients given as their bfloat16 copies alone (the CPU attention's DConv backward writes them).
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "core/gemm.h"
#include "layers/cpu/qkv_projection.h"
#include "layers/linear.h"
#include "layers/weight_gradients.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::random_vector;

struct Gradients {
  std::vector<float> dq_in, dkv_in, dwq, dwk, dwv;
};

// The per-product reference: what qkv_projection_backward computed before it shared copies.
Gradients per_product(const std::vector<float>& q_in, const std::vector<float>& kv_in, bool self,
                      const std::vector<float>& dq, const std::vector<float>& dk,
                      const std::vector<float>& dv, const QkvWeights& w, int64_t d, int64_t HE,
                      int64_t rows_q, int64_t rows_kv) {
  Gradients g{std::vector<float>(rows_q * d), std::vector<float>(rows_kv * d),
              std::vector<float>(d * HE), std::vector<float>(d * HE), std::vector<float>(d * HE)};
  const float* kv = self ? q_in.data() : kv_in.data();
  linear_backward(nullptr, g.dwq.data(), nullptr, dq.data(), q_in.data(), w.wq, rows_q, d, HE, HE);
  linear_backward(nullptr, g.dwk.data(), nullptr, dk.data(), kv, w.wk, rows_kv, d, HE, HE);
  linear_backward(nullptr, g.dwv.data(), nullptr, dv.data(), kv, w.wv, rows_kv, d, HE, HE);
  float* dkv_in = self ? g.dq_in.data() : g.dkv_in.data();
  gemm(false, true, rows_q, d, HE, 1.0f, dq.data(), HE, w.wq, HE, 0.0f, g.dq_in.data(), d);
  gemm(false, true, rows_kv, d, HE, 1.0f, dk.data(), HE, w.wk, HE, self ? 1.0f : 0.0f, dkv_in, d);
  gemm(false, true, rows_kv, d, HE, 1.0f, dv.data(), HE, w.wv, HE, 1.0f, dkv_in, d);
  return g;
}

// 96 rows × 64 × 128 (oneDNN's matmul for the larger products) and a tiny shape (sgemm).
TEST(QkvProjectionCpu, Bf16CopiesGiveThePerProductBits) {
  const MatmulPrecisionScope scope(MatmulPrecision::Bf16);
  const int64_t shapes[][4] = {{96, 64, 128, 48}, {5, 6, 8, 3}};  // rows_q, d, H·e, rows_kv
  for (const auto& s : shapes)
    for (const bool self : {true, false})
      for (const bool deferred : {false, true})
        for (const bool given16 : {false, true}) {
          const int64_t rows_q = s[0], d = s[1], HE = s[2], rows_kv = self ? rows_q : s[3];
          auto wq = random_vector(d * HE, 1), wk = random_vector(d * HE, 2);
          auto wv = random_vector(d * HE, 3);
          const QkvWeights w{wq.data(), wk.data(), wv.data()};
          const auto q_in = random_vector(rows_q * d, 4), kv_in = random_vector(rows_kv * d, 5);
          const float* kv = self ? q_in.data() : kv_in.data();
          const std::string what = std::to_string(rows_q) + (self ? " self" : " resampling") +
                                   (deferred ? " deferred" : "") + (given16 ? " given16" : "");
          // Forward against three linear layers.
          std::vector<float> q(rows_q * HE), k(rows_kv * HE), v(rows_kv * HE);
          std::vector<float> q2 = q, k2 = k, v2 = v;
          linear_forward(q.data(), q_in.data(), w.wq, nullptr, rows_q, d, HE, HE);
          linear_forward(k.data(), kv, w.wk, nullptr, rows_kv, d, HE, HE);
          linear_forward(v.data(), kv, w.wv, nullptr, rows_kv, d, HE, HE);
          qkv_projection_forward(q2.data(), k2.data(), v2.data(), q_in.data(), kv, w, d, HE, HE,
                                 rows_q, rows_kv);
          EXPECT_EQ(q2, q) << what;
          EXPECT_EQ(k2, k) << what;
          EXPECT_EQ(v2, v) << what;
          // Backward.
          const auto dq = random_vector(rows_q * HE, 6), dk = random_vector(rows_kv * HE, 7);
          const auto dv = random_vector(rows_kv * HE, 8);
          const Gradients expected =
              per_product(q_in, kv_in, self, dq, dk, dv, w, d, HE, rows_q, rows_kv);
          Gradients got{std::vector<float>(rows_q * d), std::vector<float>(rows_kv * d),
                        std::vector<float>(d * HE), std::vector<float>(d * HE),
                        std::vector<float>(d * HE)};
          DeferredWeightGradients queue;
          {
            std::optional<DeferWeightGradients> defer;
            if (deferred) defer.emplace(queue);
            const auto dq16 = bf16_copy_of(dq.data(), rows_q, HE, HE);
            const auto dk16 = bf16_copy_of(dk.data(), rows_kv, HE, HE);
            const auto dv16 = bf16_copy_of(dv.data(), rows_kv, HE, HE);
            const QkvGrads16 copies{dq16.get(), dk16.get(), dv16.get()};
            qkv_projection_backward(got.dq_in.data(), self ? got.dq_in.data() : got.dkv_in.data(),
                                    {got.dwq.data(), got.dwk.data(), got.dwv.data()},
                                    given16 ? nullptr : dq.data(), given16 ? nullptr : dk.data(),
                                    given16 ? nullptr : dv.data(), q_in.data(), kv, w, d, HE, HE,
                                    rows_q, rows_kv, given16 ? &copies : nullptr);
          }
          EXPECT_EQ(queue.empty(), !deferred) << what;
          queue.run();
          EXPECT_EQ(got.dq_in, expected.dq_in) << what;
          EXPECT_EQ(got.dkv_in, expected.dkv_in) << what;
          EXPECT_EQ(got.dwq, expected.dwq) << what;
          EXPECT_EQ(got.dwk, expected.dwk) << what;
          EXPECT_EQ(got.dwv, expected.dwv) << what;
        }
}

}  // namespace
}  // namespace hg
