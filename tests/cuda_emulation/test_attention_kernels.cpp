// layers/cuda/attention_kernels.cuh and attention_compress_kernels.cuh under the CPU emulation of
// the CUDA thread model, against the CPU backend's attention kernel (layers/attention_core.h,
// the blocked kernel every CPU attention runs), its chunk compression and RoPE, on small shapes
// with head widths below and above one warp. NOT A GPU (docs/cuda.md).
//
// Tolerances: the device kernel runs an online softmax (a running max, rescaling the sums as it
// grows) and sums each score over 32 lanes then a butterfly; the CPU takes the max first and
// forms scores with gemm. Scores of e <= 128 products of values < 1 (times 1/sqrt(e)) differ by
// at most ~sqrt(e)·u·|terms| ≈ 1e-6 in practice (e·u ≈ 8e-6 in the worst case), the
// probabilities by as much relatively, outputs and gradients (sums of <= 13
// such terms of size < 1) by a few 1e-6: 2e-5 absolute + 2e-5 relative is several times that.
// The compression kernels repeat the CPU's loops in its order: only FMA contraction can differ.
#include <gtest/gtest.h>

// The emulation first, then the kernel headers that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "layers/cuda/attention_compress_kernels.cuh"
#include "layers/cuda/attention_kernels.cuh"
// clang-format on

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "layers/attention_core.h"
#include "layers/cpu/attention_compress.h"
#include "layers/rope.h"
#include "tests/cuda_emulation/compare.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_matches;
using testing::random_vector;

const emu::Launch kEmulated;
constexpr double kTol = 2e-5;

// Random operands of B sequences × H heads, [B, rows, H·e] each, and the CPU's view of them.
struct Case {
  int64_t B = 2, nq = 0, nk = 0, nglobal = 0;  // nglobal: global keys per sequence
  int H = 2, e = 0;
  std::vector<float> q_window, q_global, k_window, v_window, k_global, v_global, dout;
  Case(int64_t nq_, int64_t nk_, int64_t nglobal_, int e_)
      : nq(nq_), nk(nk_), nglobal(nglobal_), e(e_) {
    const int64_t HE = int64_t(H) * e;
    q_window = random_vector(B * nq * HE, 1);
    q_global = random_vector(B * nq * HE, 2);
    k_window = random_vector(B * nk * HE, 3);
    v_window = random_vector(B * nk * HE, 4);
    k_global = random_vector(B * nglobal * HE, 5);
    v_global = random_vector(B * nglobal * HE, 6);
    dout = random_vector(B * nq * HE, 7);
  }
  int64_t HE() const { return int64_t(H) * e; }
  AttentionHead head(int64_t b, int h) const {
    const int64_t c = int64_t(h) * e;
    AttentionHead x;
    x.q_window = q_window.data() + b * nq * HE() + c;
    x.q_global = q_global.data() + b * nq * HE() + c;
    x.ldq = HE();
    x.k_window = k_window.data() + b * nk * HE() + c;
    x.v_window = v_window.data() + b * nk * HE() + c;
    x.ldw = HE();
    if (nglobal > 0) {
      x.k_global = k_global.data() + b * nglobal * HE() + c;
      x.v_global = v_global.data() + b * nglobal * HE() + c;
      x.ldg = HE();
    }
    return x;
  }
  cuda::AttentionOperands operands(const cuda::KeyMask& mask) const {
    cuda::AttentionOperands x;
    x.q_window = q_window.data();
    x.q_global = nglobal > 0 ? q_global.data() : nullptr;
    x.k_window = k_window.data();
    x.v_window = v_window.data();
    x.k_global = nglobal > 0 ? k_global.data() : nullptr;
    x.v_global = nglobal > 0 ? v_global.data() : nullptr;
    x.B = B;
    x.nq = nq;
    x.nk = nk;
    x.H = H;
    x.e = e;
    x.scale = 1.0f / std::sqrt(float(e));
    x.mask = mask;
    return x;
  }
};

// Gradients of one side, [B, rows, H·e], zero-filled (the key gradients accumulate).
struct Grads {
  std::vector<float> dq_window, dq_global, dk_window, dv_window, dk_global, dv_global;
  explicit Grads(const Case& c)
      : dq_window(c.B * c.nq * c.HE()),
        dq_global(c.B * c.nq * c.HE()),
        dk_window(c.B * c.nk * c.HE()),
        dv_window(c.B * c.nk * c.HE()),
        dk_global(c.B * c.nglobal * c.HE()),
        dv_global(c.B * c.nglobal * c.HE()) {}
};

// Forward and backward of both sides over `plan` (CPU) and `mask` (device), all outputs compared.
void expect_attention_matches(const std::string& what, const Case& c, const AttentionPlan& plan,
                              const cuda::KeyMask& mask) {
  const int64_t HE = c.HE(), slices = c.B * c.H;
  std::vector<float> want_out(c.B * c.nq * HE), probs(slices * plan.probs_size),
      dscores(probs.size());
  multihead_attention_forward(want_out.data(), probs.data(), c.B, c.H, c.e, plan,
                              [&](int64_t b, int h) { return c.head(b, h); });
  std::vector<float> out(want_out.size()), lse(slices * c.nq), delta(slices * c.nq);
  const cuda::AttentionOperands x = c.operands(mask);
  cuda::launch_attention_forward(kEmulated, out.data(), lse.data(), x);
  expect_matches(what + " out", out, want_out, kTol, kTol);

  Grads want(c), got(c);
  multihead_attention_backward(
      c.dout.data(), probs.data(), dscores.data(), c.B, c.H, c.e, plan,
      [&](int64_t b, int h) { return c.head(b, h); },
      [&](int64_t b, int h) {
        const int64_t q = b * c.nq * HE + int64_t(h) * c.e, k = b * c.nk * HE + int64_t(h) * c.e;
        AttentionHeadGrad g;
        g.dq_window = want.dq_window.data() + q;
        g.dq_global = c.nglobal > 0 ? want.dq_global.data() + q : nullptr;
        g.ldq = HE;
        g.dk_window = want.dk_window.data() + k;
        g.dv_window = want.dv_window.data() + k;
        g.ldw = HE;
        if (c.nglobal > 0) {
          const int64_t gk = b * c.nglobal * HE + int64_t(h) * c.e;
          g.dk_global = want.dk_global.data() + gk;
          g.dv_global = want.dv_global.data() + gk;
          g.ldg = HE;
        }
        return g;
      });
  cuda::AttentionGrads g;
  g.dq_window = got.dq_window.data();
  g.dq_global = c.nglobal > 0 ? got.dq_global.data() : nullptr;
  g.dk_window = got.dk_window.data();
  g.dv_window = got.dv_window.data();
  g.dk_global = got.dk_global.data();
  g.dv_global = got.dv_global.data();
  cuda::launch_attention_backward(kEmulated, g, delta.data(), c.dout.data(), out.data(), lse.data(),
                                  x);
  expect_matches(what + " dq (window)", got.dq_window, want.dq_window, kTol, kTol);
  expect_matches(what + " dk (window)", got.dk_window, want.dk_window, kTol, kTol);
  expect_matches(what + " dv (window)", got.dv_window, want.dv_window, kTol, kTol);
  if (c.nglobal > 0) {
    expect_matches(what + " dq (global)", got.dq_global, want.dq_global, kTol, kTol);
    expect_matches(what + " dk (global)", got.dk_global, want.dk_global, kTol, kTol);
    expect_matches(what + " dv (global)", got.dv_global, want.dv_global, kTol, kTol);
  }
}

TEST(EmulatedKernels, CausalAttentionMatchesTheCpuKernel) {
  for (const int e : {20, 40, 128}) {  // below one warp, 2 channels on some lanes, 4 on all
    const int64_t n = 13;
    cuda::KeyMask mask;
    mask.window = n;  // full: every earlier key
    expect_attention_matches("causal e " + std::to_string(e), Case(n, n, 0, e), plan_causal(n, 4),
                             mask);
  }
}

TEST(EmulatedKernels, AttentionRefusesWhatItCannotRun) {
  cuda::KeyMask mask;
  mask.window = 4;
  Case wide(4, 4, 0, 130);  // 5 channels per lane
  std::vector<float> out(wide.B * 4 * wide.HE()), lse(wide.B * wide.H * 4);
  EXPECT_THROW(
      cuda::launch_attention_forward(kEmulated, out.data(), lse.data(), wide.operands(mask)),
      UsageError);
}

TEST(EmulatedKernels, LongShortAttentionMatchesTheCpuKernel) {
  const int64_t n = 12, w = 5, l = 3, r = 2;
  cuda::KeyMask mask;
  mask.window = w;
  mask.chunk = l;
  mask.rank = r;
  expect_attention_matches("long_short", Case(n, n, n / l * r, 20), plan_long_short(n, w, l, r, l),
                           mask);
}

TEST(EmulatedKernels, FunnelAttentionMatchesTheCpuKernel) {
  const int64_t k = 3, short_len = 4, long_len = 12;
  cuda::KeyMask down;
  down.kind = cuda::kFunnelDownMask;
  down.factor = k;
  expect_attention_matches("funnel down", Case(short_len, long_len, 0, 20),
                           plan_funnel_down(short_len, long_len, k, 2), down);
  cuda::KeyMask up = down;
  up.kind = cuda::kFunnelUpMask;
  expect_attention_matches("funnel up", Case(long_len, short_len, 0, 20),
                           plan_funnel_up(long_len, short_len, k, 5), up);
}

TEST(EmulatedKernels, RopeMatchesTheCpu) {
  const int64_t B = 2, n = 9;
  const int H = 3, e = 10;
  const RopeTable table = make_rope_table(n, e);
  const auto x = random_vector(B * n * H * e, 8);
  for (const bool inverse : {false, true}) {
    auto got = x, want = x;
    cuda::launch_rope(kEmulated, got.data(), table.cos.data(), table.sin.data(), B, n, H, e,
                      inverse);
    if (inverse)
      rope_backward(want.data(), table, B, n, H, e);
    else
      rope_forward(want.data(), table, B, n, H, e);
    expect_matches(inverse ? "rope backward" : "rope forward", got, want, 1e-6, 1e-6);
  }
}

TEST(EmulatedKernels, ChunkCompressionMatchesTheCpu) {
  const int64_t B = 2, n = 12;
  const int l = 4, H = 3, r = 2, e = 5, cols = H * r;
  const int64_t HE = int64_t(H) * e, comp_rows = B * (n / l) * r;
  const auto logits = random_vector(B * n * cols, 9, 3.0f), x = random_vector(B * n * HE, 10),
             dcomp = random_vector(comp_rows * HE, 11), dprobs_in = random_vector(B * n * cols, 12);
  std::vector<float> probs(logits.size()), want_probs(logits.size());
  cuda::launch_chunk_softmax_forward(kEmulated, probs.data(), logits.data(), B, n, l, cols);
  chunk_softmax_forward(want_probs.data(), logits.data(), B, n, l, cols);
  expect_matches("chunk softmax", probs, want_probs, 1e-7, 1e-6);

  std::vector<float> comp(comp_rows * HE), want_comp(comp.size());
  cuda::launch_chunk_compress_forward(kEmulated, comp.data(), x.data(), want_probs.data(), B, n, l,
                                      H, r, e);
  chunk_compress_forward(want_comp.data(), x.data(), want_probs.data(), B, n, l, H, r, e);
  expect_matches("chunk compress", comp, want_comp, 1e-6, 1e-6);

  auto dx = random_vector(B * n * HE, 13), want_dx = dx;  // both accumulate (+=)
  auto dprobs = dprobs_in, want_dprobs = dprobs_in;
  cuda::launch_chunk_compress_backward(kEmulated, dx.data(), dprobs.data(), dcomp.data(), x.data(),
                                       want_probs.data(), B, n, l, H, r, e);
  chunk_compress_backward(want_dx.data(), want_dprobs.data(), dcomp.data(), x.data(),
                          want_probs.data(), B, n, l, H, r, e);
  expect_matches("chunk compress dx", dx, want_dx, 1e-6, 1e-6);
  expect_matches("chunk compress dprobs", dprobs, want_dprobs, 1e-6, 1e-6);

  std::vector<float> dlogits(logits.size()), want_dlogits(logits.size());
  cuda::launch_chunk_softmax_backward(kEmulated, dlogits.data(), want_dprobs.data(),
                                      want_probs.data(), B, n, l, cols);
  chunk_softmax_backward(want_dlogits.data(), want_dprobs.data(), want_probs.data(), B, n, l, cols);
  expect_matches("chunk softmax backward", dlogits, want_dlogits, 1e-6, 1e-6);
}

}  // namespace
}  // namespace hg
