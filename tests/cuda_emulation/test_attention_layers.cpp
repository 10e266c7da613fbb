// layers/cuda/attention_layers.h's compositions (block attention, full and long_short, and the
// resampling MHA, forward and backward) over the emulated device ops (emulated_ops.h: the CUDA
// kernels under the CPU emulation, the CPU's gemm for cuBLAS), against the CPU backend's layers,
// every output and gradient. NOT A GPU (docs/cuda.md).
//
// Tolerance: both sides compute the same functions through ~10 float stages (projections over
// d = 24 terms, DConv, LayerNorms, softmax, projections back); each stage sums in another order
// (kernels' lanes and butterflies vs the CPU's gemms and blocks), a few ulp relative to values
// of size ~1-10 per stage. 1e-4 absolute and relative bounds that chain with a margin of ten
// over the worst difference measured (printed below).
#include <gtest/gtest.h>

// The emulation first, then the kernel headers (through emulated_ops.h) that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "tests/cuda_emulation/emulated_ops.h"
// clang-format on

#include <cstring>
#include <string>
#include <vector>

#include "layers/backend.h"
#include "layers/cuda/attention_layers.h"
#include "tests/cuda_emulation/compare.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_matches;
using testing::random_vector;

constexpr double kTol = 1e-4;

// Host buffers of one parameter set (or its gradients) by AttentionParams' names, for the heads
// the parameters hold (stored_heads(cfg)).
struct AttentionBuffers {
  std::vector<float> wq, wk, wv, wo, dconv_q, dconv_k, dconv_v, proj_weight, proj_bias, nw_gain,
      nw_bias, ng_gain, ng_bias;
  AttentionBuffers(const AttentionConfig& cfg, uint64_t seed) {
    const int64_t HE = qkv_row_stride(cfg), Hr = proj_row_stride(cfg);  // S·e, S·r
    wq = random_vector(cfg.d * HE, seed + 1, 0.5f);
    wk = random_vector(cfg.d * HE, seed + 2, 0.5f);
    wv = random_vector(cfg.d * HE, seed + 3, 0.5f);
    wo = random_vector(HE * cfg.d, seed + 4, 0.5f);
    if (cfg.dconv) {
      dconv_q = random_vector(3 * HE, seed + 5, 0.7f);
      dconv_k = random_vector(3 * HE, seed + 6, 0.7f);
      dconv_v = random_vector(3 * HE, seed + 7, 0.7f);
    }
    if (cfg.kind == AttentionKind::LongShort) {
      proj_weight = random_vector(cfg.d * Hr, seed + 8);
      proj_bias = random_vector(Hr, seed + 9, 0.5f);
      nw_gain = random_vector(HE, seed + 10, 0.3f);
      nw_bias = random_vector(HE, seed + 11, 0.2f);
      ng_gain = random_vector(HE, seed + 12, 0.3f);
      ng_bias = random_vector(HE, seed + 13, 0.2f);
      for (float& x : nw_gain) x += 1.0f;
      for (float& x : ng_gain) x += 1.0f;
    }
  }
  AttentionParams params() {
    auto p = [](std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    AttentionParams a;
    a.wq = p(wq), a.wk = p(wk), a.wv = p(wv), a.wo = p(wo);
    a.dconv_q = p(dconv_q), a.dconv_k = p(dconv_k), a.dconv_v = p(dconv_v);
    a.proj_weight = p(proj_weight), a.proj_bias = p(proj_bias);
    a.norm_window_gain = p(nw_gain), a.norm_window_bias = p(nw_bias);
    a.norm_global_gain = p(ng_gain), a.norm_global_bias = p(ng_bias);
    return a;
  }
  std::vector<std::pair<const char*, const std::vector<float>*>> named() const {
    return {{"wq", &wq},
            {"wk", &wk},
            {"wv", &wv},
            {"wo", &wo},
            {"dconv_q", &dconv_q},
            {"dconv_k", &dconv_k},
            {"dconv_v", &dconv_v},
            {"proj_weight", &proj_weight},
            {"proj_bias", &proj_bias},
            {"norm_window gain", &nw_gain},
            {"norm_window bias", &nw_bias},
            {"norm_global gain", &ng_gain},
            {"norm_global bias", &ng_bias}};
  }
};

// Whether entry i of the parameter `name` belongs to one of the cfg.heads heads run (wo: its
// first H·e rows; proj_*: columns [0, H·r) of rows S·r long; the others: columns [0, H·e) of rows
// S·e long).
bool in_heads_run(const std::string& name, int64_t i, const AttentionConfig& cfg) {
  const int64_t HE = int64_t(cfg.heads) * cfg.head_dim, Hr = int64_t(cfg.heads) * cfg.rank;
  if (name == "wo") return i < HE * cfg.d;
  if (name.starts_with("proj")) return i % proj_row_stride(cfg) < Hr;
  return i % qkv_row_stride(cfg) < HE;
}

void expect_attention_layer_matches(const std::string& what, const AttentionConfig& cfg) {
  const int64_t B = 2, n = 12;
  AttentionBuffers w(cfg, 100);
  const auto u = random_vector(B * n * cfg.d, 1), dout = random_vector(B * n * cfg.d, 2);
  std::vector<float> out(u.size()), want_out(u.size()), du(u.size()), want_du(u.size());
  AttentionBuffers g(cfg, 200), want_g(cfg, 200);  // parameter gradients accumulate onto these
  AttentionCache cache, want_cache;
  testing::EmulatedOps ops;
  std::vector<Tensor> work;
  cuda::attention_forward(ops, out.data(), cache, u.data(), w.params(), cfg, B, n);
  cpu_backend().attention_forward(want_out.data(), want_cache, u.data(), w.params(), cfg, B, n);
  expect_matches(what + " out", out, want_out, kTol, kTol);
  cuda::attention_backward(ops, work, du.data(), g.params(), dout.data(), cache, u.data(),
                           w.params(), cfg, B, n);
  cpu_backend().attention_backward(want_du.data(), want_g.params(), dout.data(), want_cache,
                                   u.data(), w.params(), cfg, B, n);
  expect_matches(what + " du", du, want_du, kTol, kTol);
  const AttentionBuffers g0(cfg, 200);  // the gradients before the backward
  const auto got = g.named(), want = want_g.named(), before = g0.named();
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].second->empty()) continue;
    expect_matches(what + " d" + got[i].first, *got[i].second, *want[i].second, kTol, kTol);
    int written = 0;  // gradient entries of heads not run that changed (none may)
    for (size_t j = 0; j < got[i].second->size(); ++j)
      written += !in_heads_run(got[i].first, int64_t(j), cfg) &&
                 std::memcmp(&(*got[i].second)[j], &(*before[i].second)[j], sizeof(float)) != 0;
    EXPECT_EQ(written, 0) << what << " d" << got[i].first;
  }
}

AttentionConfig config(AttentionKind kind, bool rope, bool dconv) {
  AttentionConfig cfg;
  cfg.kind = kind;
  cfg.d = 24;
  cfg.heads = 2;
  cfg.head_dim = 12;
  cfg.window = 5;
  cfg.chunk = 3;
  cfg.rank = 2;
  cfg.rope = rope;
  cfg.dconv = dconv;
  return cfg;
}

TEST(EmulatedLayers, LongShortAttentionMatchesTheCpuBackend) {
  expect_attention_layer_matches("long_short", config(AttentionKind::LongShort, true, true));
  expect_attention_layer_matches("long_short without RoPE and DConv",
                                 config(AttentionKind::LongShort, false, false));
}

TEST(EmulatedLayers, FullAttentionMatchesTheCpuBackend) {
  expect_attention_layer_matches("full", config(AttentionKind::Full, true, true));
  expect_attention_layer_matches("full without RoPE and DConv",
                                 config(AttentionKind::Full, false, false));
}

// MatFormer heads (§9.6): the first 2 of 3 stored heads.
TEST(EmulatedLayers, PrefixOfStoredHeadsMatchesTheCpuBackend) {
  for (const AttentionKind kind : {AttentionKind::LongShort, AttentionKind::Full})
    for (const bool rope_and_dconv : {true, false}) {
      AttentionConfig cfg = config(kind, rope_and_dconv, rope_and_dconv);
      cfg.stored_heads = 3;
      expect_attention_layer_matches(
          std::string(kind == AttentionKind::Full ? "full" : "long_short") +
              (rope_and_dconv ? "" : " without RoPE and DConv") + ", 2 of 3 stored heads",
          cfg);
    }
}

TEST(EmulatedLayers, ResamplingMhaMatchesTheCpuBackend) {
  const int d = 16, H = 2, e = 10, k = 3;
  const int64_t B = 2, HE = H * e;
  for (const FunnelMask mask : {FunnelMask::Down, FunnelMask::Up}) {
    const int64_t nq = mask == FunnelMask::Down ? 4 : 12, nk = mask == FunnelMask::Down ? 12 : 4;
    const std::string what = mask == FunnelMask::Down ? "mha down" : "mha up";
    auto wq = random_vector(d * HE, 3, 0.5f), wk = random_vector(d * HE, 4, 0.5f),
         wv = random_vector(d * HE, 5, 0.5f), wo = random_vector(HE * d, 6, 0.5f);
    const auto q_in = random_vector(B * nq * d, 7), kv_in = random_vector(B * nk * d, 8),
               dout = random_vector(B * nq * d, 9);
    const MhaParams w{wq.data(), wk.data(), wv.data(), wo.data()};
    std::vector<std::vector<float>> grads, want_grads;
    for (const auto* p : {&wq, &wk, &wv, &wo})
      grads.push_back(random_vector(int64_t(p->size()), 10));
    want_grads = grads;
    const MhaParams g{grads[0].data(), grads[1].data(), grads[2].data(), grads[3].data()};
    const MhaParams want_g{want_grads[0].data(), want_grads[1].data(), want_grads[2].data(),
                           want_grads[3].data()};
    std::vector<float> out(B * nq * d), want_out(out.size()), dq(out.size()), want_dq(out.size()),
        dkv(B * nk * d), want_dkv(dkv.size());
    MhaCache cache, want_cache;
    testing::EmulatedOps ops;
    std::vector<Tensor> work;
    cuda::mha_forward(ops, out.data(), cache, q_in.data(), kv_in.data(), w, d, H, e, mask, k, B, nq,
                      nk);
    cpu_backend().mha_forward(want_out.data(), want_cache, q_in.data(), kv_in.data(), w, d, H, e,
                              mask, k, B, nq, nk);
    expect_matches(what + " out", out, want_out, kTol, kTol);
    cuda::mha_backward(ops, work, dq.data(), dkv.data(), g, dout.data(), cache, q_in.data(),
                       kv_in.data(), w, d, H, e, mask, k, B, nq, nk);
    cpu_backend().mha_backward(want_dq.data(), want_dkv.data(), want_g, dout.data(), want_cache,
                               q_in.data(), kv_in.data(), w, d, H, e, mask, k, B, nq, nk);
    expect_matches(what + " dq_in", dq, want_dq, kTol, kTol);
    expect_matches(what + " dkv_in", dkv, want_dkv, kTol, kTol);
    const char* names[] = {" dwq", " dwk", " dwv", " dwo"};
    for (int i = 0; i < 4; ++i)
      expect_matches(what + names[i], grads[i], want_grads[i], kTol, kTol);
  }
}

}  // namespace
}  // namespace hg
