// The blocked attention kernel alone (layers/attention_core.h), at fp32 and at bf16
// (layers/cpu/attention_core_bf16.cpp): results independent of the thread count and of which of
// its two task layouts runs, and at bf16 the §9.1 arithmetic (products of rounded operands,
// float32 softmax and row sums) against a dense reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/bf16.h"
#include "core/enum_names.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/attention_core.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

// H heads of long_short attention over n positions, head width e, G global keys; q, k, v, dout
// [n, H·e], kg, vg [G, H·e]. The same queries score the window and the global keys.
struct KernelInputs {
  int64_t n, e, H, G;
  AttentionPlan plan;
  std::vector<float> q, k, v, kg, vg, dout;
  int64_t HE() const { return H * e; }
};

KernelInputs kernel_inputs(int64_t n, int64_t e, int64_t H, int64_t window, int64_t chunk,
                           int64_t block_rows, uint64_t seed) {
  KernelInputs in{n,  e,  H,  n / chunk, plan_long_short(n, window, chunk, 1, block_rows), {}, {},
                  {}, {}, {}, {}};
  const int64_t HE = in.HE();
  in.q = testing::random_vector(n * HE, seed);
  in.k = testing::random_vector(n * HE, seed + 1);
  in.v = testing::random_vector(n * HE, seed + 2);
  in.kg = testing::random_vector(in.G * HE, seed + 3);
  in.vg = testing::random_vector(in.G * HE, seed + 4);
  in.dout = testing::random_vector(n * HE, seed + 5);
  return in;
}

// The kernel's output and gradients on `threads` threads.
struct KernelResult {
  std::vector<float> out, dq_global, dq_window, dk, dv, dkg, dvg;
  std::vector<float> all() const {
    std::vector<float> x;
    for (const auto* part : {&out, &dq_global, &dq_window, &dk, &dv, &dkg, &dvg})
      x.insert(x.end(), part->begin(), part->end());
    return x;
  }
};

KernelResult zero_result(const KernelInputs& in) {
  const int64_t rows = in.n * in.HE(), global_rows = in.G * in.HE();
  KernelResult r;
  for (auto* part : {&r.out, &r.dq_global, &r.dq_window, &r.dk, &r.dv}) part->assign(rows, 0.0f);
  for (auto* part : {&r.dkg, &r.dvg}) part->assign(global_rows, 0.0f);
  return r;
}

KernelResult run_kernel(const KernelInputs& in, float scale, int threads) {
  const int saved = num_threads();
  set_num_threads(threads);
  const int64_t e = in.e, HE = in.HE(), size = in.plan.probs_size;
  KernelResult r = zero_result(in);
  std::vector<float> probs(in.H * size), dscores(in.H * size);
  auto head = [&](int64_t h) {
    AttentionHead x;
    x.q_global = x.q_window = in.q.data() + h * e;
    x.ldq = x.ldw = x.ldg = HE;
    x.k_window = in.k.data() + h * e, x.v_window = in.v.data() + h * e;
    x.k_global = in.kg.data() + h * e, x.v_global = in.vg.data() + h * e;
    return x;
  };
  attention_core_forward(
      in.H,
      [&](int64_t h) {
        AttentionForwardSlice s;
        s.x = head(h), s.out = r.out.data() + h * e, s.ldo = HE;
        s.probs = probs.data() + h * size;
        return s;
      },
      in.plan, scale, int(e));
  attention_core_backward(
      in.H,
      [&](int64_t h) {
        AttentionBackwardSlice s;
        s.x = head(h);
        s.g.dq_global = r.dq_global.data() + h * e, s.g.dq_window = r.dq_window.data() + h * e;
        s.g.ldq = HE;
        s.g.dk_window = r.dk.data() + h * e, s.g.dv_window = r.dv.data() + h * e, s.g.ldw = HE;
        s.g.dk_global = r.dkg.data() + h * e, s.g.dv_global = r.dvg.data() + h * e, s.g.ldg = HE;
        s.dout = in.dout.data() + h * e, s.ldo = HE;
        s.probs = probs.data() + h * size;
        s.dscores = dscores.data() + h * size;
        return s;
      },
      in.plan, scale, int(e));
  set_num_threads(saved);
  return r;
}

// The kernel's tasks never share a write: its results do not depend on the thread count. With
// two heads, one thread runs one task per head (each block's key gradients right after its
// scores) and three or four run a task per (head, block) and then per (head, key tensor): the
// same bits. At both precisions, and at bf16 with the reference's 64-row blocks, whose products
// run on oneDNN's matmul, and with 16-row blocks of 8-wide heads, whose products go to sgemm.
TEST(AttentionCore, IndependentOfThreadCountAndTaskLayout) {
  for (MatmulPrecision precision : {MatmulPrecision::Fp32, MatmulPrecision::Bf16}) {
    const MatmulPrecisionScope scope(precision);
    for (const KernelInputs& in :
         {kernel_inputs(96, 8, 2, 24, 8, 16, 1), kernel_inputs(256, 64, 2, 64, 16, 64, 11)}) {
      const std::vector<float> one = run_kernel(in, 0.3f, 1).all();
      double sum_abs = 0;
      for (float x : one) sum_abs += std::fabs(x);
      EXPECT_GT(sum_abs, 0.0);
      EXPECT_EQ(one, run_kernel(in, 0.3f, 3).all()) << enum_name(precision) << " e " << in.e;
      EXPECT_EQ(one, run_kernel(in, 0.3f, 4).all()) << enum_name(precision) << " e " << in.e;
    }
  }
}

double rounded(float x) { return round_to_bf16(x); }

// Dense reference of one head at bf16 (ARCHITECTURE.md §9.1), in double: every product's
// operands rounded to bfloat16 (queries, keys, values, dO; the float32 probabilities and score
// gradients), softmax and row sums unrounded. Adds into `want` and, per element, the sum of the
// absolute values of its terms into `mass` (the scale of its accumulation error).
struct Reference {
  KernelResult want, mass;
};

void reference_head(const KernelInputs& in, float scale, int64_t h, Reference& ref) {
  const int64_t e = in.e, HE = in.HE();
  const AttentionPlan& plan = in.plan;
  auto at = [&](const std::vector<float>& x, int64_t row, int64_t c) {
    return rounded(x[row * HE + h * e + c]);
  };
  auto add = [&](std::vector<float>& want, std::vector<float>& mass, int64_t i, double term) {
    want[i] = float(want[i] + term);
    mass[i] = float(mass[i] + std::fabs(term));
  };
  for (int64_t t = 0; t < in.n; ++t) {
    // the visible keys: global j < global_len, then window keys [lo, hi)
    std::vector<std::pair<bool, int64_t>> keys;
    for (int64_t j = 0; j < plan.global_len[t]; ++j) keys.push_back({true, j});
    for (int64_t j = plan.window_lo[t]; j < plan.window_hi[t]; ++j) keys.push_back({false, j});
    std::vector<double> p(keys.size()), dp(keys.size());
    double m = -1e300, total = 0, pd = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      const auto& K = keys[i].first ? in.kg : in.k;
      double s = 0;
      for (int64_t c = 0; c < e; ++c) s += at(in.q, t, c) * at(K, keys[i].second, c);
      p[i] = scale * s;
      m = std::max(m, p[i]);
    }
    for (double& x : p) total += (x = std::exp(x - m));
    for (size_t i = 0; i < keys.size(); ++i) {
      p[i] /= total;
      const auto& V = keys[i].first ? in.vg : in.v;
      double s = 0;
      for (int64_t c = 0; c < e; ++c) s += at(in.dout, t, c) * at(V, keys[i].second, c);
      dp[i] = s;
      pd += p[i] * s;
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      const bool g = keys[i].first;
      const int64_t j = keys[i].second;
      const double rp = rounded(float(p[i])), rds = rounded(float(p[i] * (dp[i] - pd)));
      for (int64_t c = 0; c < e; ++c) {
        const int64_t qi = t * HE + h * e + c, ki = j * HE + h * e + c;
        add(ref.want.out, ref.mass.out, qi, rp * at(g ? in.vg : in.v, j, c));
        auto& dq = g ? ref.want.dq_global : ref.want.dq_window;
        auto& dq_mass = g ? ref.mass.dq_global : ref.mass.dq_window;
        add(dq, dq_mass, qi, scale * rds * at(g ? in.kg : in.k, j, c));
        add(g ? ref.want.dkg : ref.want.dk, g ? ref.mass.dkg : ref.mass.dk, ki,
            scale * rds * at(in.q, t, c));
        add(g ? ref.want.dvg : ref.want.dv, g ? ref.mass.dvg : ref.mass.dv, ki,
            rp * at(in.dout, t, c));
      }
    }
  }
}

// The bf16 kernel against the dense reference, element by element, within
//   |got − want| ≤ 2^-7 · mass + 1e-6,
// mass being the sum of the absolute values of the element's terms: the kernel's float32
// probabilities (its exp is Cephes', within 2 ulp) and score gradients may round to the
// neighbouring bfloat16 of the reference's (2^-8 relative) and its float32 sums run in another
// order (~K·2^-24, far smaller). A wrong block, a lost key or an unmasked one is off by a whole
// term. Both the matmul-sized blocks (64 rows, 64-wide heads) and sgemm-sized ones.
TEST(AttentionCore, Bf16IsTheProductOfRoundedOperands) {
  const MatmulPrecisionScope scope(MatmulPrecision::Bf16);
  for (const KernelInputs& in :
       {kernel_inputs(96, 8, 2, 24, 8, 16, 21), kernel_inputs(256, 64, 2, 64, 16, 64, 31)}) {
    const float scale = 1.0f / std::sqrt(float(in.e));
    const KernelResult got = run_kernel(in, scale, 2);
    Reference ref{zero_result(in), zero_result(in)};
    for (int64_t h = 0; h < in.H; ++h) reference_head(in, scale, h, ref);
    const std::vector<float> g = got.all(), w = ref.want.all(), mass = ref.mass.all();
    int64_t checked = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_NEAR(g[i], w[i], std::ldexp(mass[i], -7) + 1e-6) << "element " << i << " e " << in.e;
      checked += mass[i] > 0;
    }
    EXPECT_GT(checked, int64_t(g.size() / 2));
  }
}

}  // namespace
}  // namespace hg
