// layers/cuda/attention_split.h under the CPU emulation: the joint softmax computed as two
// softmaxes (window keys, compressed-chunk keys) merged through their log-sum-exps, and the
// backward given the joint output and log-sum-exp, against the joint kernel. The window engine is
// the hand kernel (KernelWindow), the stand-in for cuDNN's SDPA, which cannot run here: this
// tests the split and the merge, not cuDNN. NOT A GPU (docs/cuda.md).
//
// Tolerance: both sides sum the same float32 terms; the split one rescales each segment's sums
// by exp(lse_segment - lse), a few roundings of relative size 6e-8 on values < 1, so 1e-5
// absolute + relative is far above the difference and far below any wrong weight (a segment
// dropped or weighted by the other's share moves outputs by 1e-2 or more).
#include <gtest/gtest.h>

// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "tests/cuda_emulation/emulated_ops.h"
// clang-format on

#include <cmath>
#include <string>
#include <vector>

#include "layers/cuda/attention_split.h"
#include "tests/cuda_emulation/compare.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_matches;
using testing::random_vector;

constexpr double kTol = 1e-5;

struct Operands {
  int64_t B = 2, n = 0, nglobal = 0;
  int H = 2, e = 16;
  std::vector<float> q_window, q_global, k_window, v_window, k_global, v_global, dout;
  Operands(int64_t n_, int64_t nglobal_) : n(n_), nglobal(nglobal_) {
    const int64_t HE = int64_t(H) * e;
    q_window = random_vector(B * n * HE, 11);
    q_global = random_vector(B * n * HE, 12);
    k_window = random_vector(B * n * HE, 13);
    v_window = random_vector(B * n * HE, 14);
    k_global = random_vector(B * nglobal * HE + 1, 15);
    v_global = random_vector(B * nglobal * HE + 1, 16);
    dout = random_vector(B * n * HE, 17);
  }
  cuda::AttentionOperands operands(const cuda::KeyMask& mask) const {
    cuda::AttentionOperands x;
    x.q_window = q_window.data();
    x.q_global = q_global.data();
    x.k_window = k_window.data();
    x.v_window = v_window.data();
    x.k_global = k_global.data();
    x.v_global = v_global.data();
    x.B = B;
    x.nq = x.nk = n;
    x.H = H;
    x.e = e;
    x.scale = 1.0f / std::sqrt(float(e));
    x.mask = mask;
    return x;
  }
};

struct Result {
  std::vector<float> out, lse, dq_window, dq_global, dk_window, dv_window, dk_global, dv_global;
};

// Forward then backward of x, joint (the kernel alone) or split (attention_split.h).
Result run(const Operands& o, const cuda::AttentionOperands& x, bool split) {
  const testing::EmulatedOps ops;
  cuda::KernelWindow<testing::EmulatedOps> window(ops);
  const int64_t rows = o.B * o.n * o.H * o.e, stats = o.B * o.H * o.n,
                global = o.B * o.nglobal * o.H * o.e;
  Result r;
  r.out.assign(rows, 0.0f);
  r.lse.assign(stats, 0.0f);
  if (split)
    cuda::split_attention_forward(ops, window, r.out.data(), r.lse.data(), x);
  else
    ops.attention_core_forward(r.out.data(), r.lse.data(), x);
  r.dq_window.assign(rows, 0.0f);
  r.dq_global.assign(rows, 0.0f);
  r.dk_window.assign(rows, 0.0f);
  r.dv_window.assign(rows, 0.0f);
  r.dk_global.assign(global, 0.0f);
  r.dv_global.assign(global, 0.0f);
  cuda::AttentionGrads g;
  g.dq_window = r.dq_window.data();
  g.dq_global = x.mask.rank > 0 ? r.dq_global.data() : nullptr;
  g.dk_window = r.dk_window.data();
  g.dv_window = r.dv_window.data();
  g.dk_global = r.dk_global.data();
  g.dv_global = r.dv_global.data();
  std::vector<float> delta(stats);
  if (split)
    cuda::split_attention_backward(ops, window, g, delta.data(), o.dout.data(), r.out.data(),
                                   r.lse.data(), x);
  else
    ops.attention_core_backward(g, delta.data(), o.dout.data(), r.out.data(), r.lse.data(), x);
  return r;
}

void expect_split_is_joint(const std::string& what, const Operands& o, const cuda::KeyMask& mask) {
  const cuda::AttentionOperands x = o.operands(mask);
  const Result joint = run(o, x, false), split = run(o, x, true);
  expect_matches(what + " out", split.out, joint.out, kTol, kTol);
  expect_matches(what + " lse", split.lse, joint.lse, kTol, kTol);
  expect_matches(what + " dq window", split.dq_window, joint.dq_window, kTol, kTol);
  expect_matches(what + " dk window", split.dk_window, joint.dk_window, kTol, kTol);
  expect_matches(what + " dv window", split.dv_window, joint.dv_window, kTol, kTol);
  expect_matches(what + " dq global", split.dq_global, joint.dq_global, kTol, kTol);
  expect_matches(what + " dk global", split.dk_global, joint.dk_global, kTol, kTol);
  expect_matches(what + " dv global", split.dv_global, joint.dv_global, kTol, kTol);
}

TEST(AttentionSplit, MergedSegmentsAreTheJointSoftmax) {
  cuda::KeyMask mask;
  mask.chunk = 3;
  mask.rank = 2;
  for (const int64_t w : {3, 5, 12}) {  // w = l, w > l, w = n (every earlier key)
    mask.window = w;
    expect_split_is_joint("long_short w " + std::to_string(w), Operands(12, 12 / 3 * 2), mask);
  }
  cuda::KeyMask full;
  full.window = 12;  // full attention: no global keys, the window engine alone
  expect_split_is_joint("full", Operands(12, 0), full);
}

// A row before the first whole chunk sees no global key: the global part alone gives it output 0
// and log-sum-exp -inf (weight 0 in the merge), not the 0/0 of an empty softmax.
TEST(AttentionSplit, AGlobalSegmentWithoutKeysHasWeightZero) {
  cuda::KeyMask mask;
  mask.window = 4;
  mask.chunk = 4;
  mask.rank = 1;
  const Operands o(8, 2);
  cuda::AttentionOperands x = o.operands(mask);
  x.segments = cuda::kGlobalSegment;
  const testing::EmulatedOps ops;
  std::vector<float> out(o.B * o.n * o.H * o.e, 1.0f), lse(o.B * o.H * o.n, 1.0f);
  ops.attention_core_forward(out.data(), lse.data(), x);
  for (int64_t s = 0; s < o.B * o.H; ++s)
    for (int64_t t = 0; t < o.n; ++t) {
      const float l = lse[s * o.n + t];
      if (t < 4)
        EXPECT_TRUE(std::isinf(l) && l < 0) << "row " << t << " lse " << l;
      else
        EXPECT_TRUE(std::isfinite(l)) << "row " << t << " lse " << l;
    }
  for (int64_t b = 0; b < o.B; ++b)
    for (int64_t i = 0; i < 4 * o.H * o.e; ++i) EXPECT_EQ(out[b * o.n * o.H * o.e + i], 0.0f);
}

}  // namespace
}  // namespace hg
