// Incremental decoding ops (issue 17) on every backend (tests/support/backends.h): rows appended
// a few at a time give the rows of one forward over the whole sequence, for block attention
// (long_short / full, RoPE on / off, DConv on / off) and for attention resampling (both masks).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "layers/attention.h"
#include "layers/mha.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::random_vector;

class Decode : public testing::OnEveryBackend {};

// Rows [p0, p0 + n) of each of B sequences of x [B, rows, width], as [B, n, width].
std::vector<float> rows_of(const std::vector<float>& x, int64_t B, int64_t rows, int64_t p0,
                           int64_t n, int64_t width) {
  std::vector<float> out(B * n * width);
  for (int64_t b = 0; b < B; ++b)
    std::copy_n(x.begin() + (b * rows + p0) * width, n * width, out.begin() + b * n * width);
  return out;
}

// Scatters y [B, n, width] into rows [p0, p0 + n) of out [B, rows, width].
void put_rows(std::vector<float>& out, const std::vector<float>& y, int64_t B, int64_t rows,
              int64_t p0, int64_t n, int64_t width) {
  for (int64_t b = 0; b < B; ++b)
    std::copy_n(y.begin() + b * n * width, n * width, out.begin() + (b * rows + p0) * width);
}

// With stored_heads = 3 > H the layer runs the first 2 of 3 heads its parameters hold
// (MatFormer heads, §9.6), and decodes them as the training forward runs them.
TEST_P(Decode, AttentionStepsEqualTheForward) {
  const int64_t B = 2, n = 16;
  const int d = 8, H = 2, e = 4, r = 2;
  auto check = [&](const AttentionConfig& cfg, const std::string& what) {
    const int64_t SE = qkv_row_stride(cfg), Sr = proj_row_stride(cfg);  // S·e, S·r
    std::vector<std::vector<float>> host = {
        random_vector(d * SE, 1, 0.5f), random_vector(d * SE, 2, 0.5f),
        random_vector(d * SE, 3, 0.5f), random_vector(SE * d, 4, 0.5f),
        random_vector(3 * SE, 5, 0.5f), random_vector(3 * SE, 6, 0.5f),
        random_vector(3 * SE, 7, 0.5f), random_vector(d * Sr, 8, 0.5f),
        random_vector(Sr, 9, 0.5f),     random_vector(SE, 10, 0.5f),
        random_vector(SE, 11, 0.5f),    random_vector(SE, 12, 0.5f),
        random_vector(SE, 13, 0.5f)};
    std::vector<Tensor> dev;
    for (const auto& h : host) dev.push_back(on_device(h));
    auto params = [](auto& p) {  // host vectors or device tensors, in AttentionParams' order
      return AttentionParams{p[0].data(),  p[1].data(),  p[2].data(), p[3].data(), p[4].data(),
                             p[5].data(),  p[6].data(),  p[7].data(), p[8].data(), p[9].data(),
                             p[10].data(), p[11].data(), p[12].data()};
    };
    const AttentionParams w = params(dev);
    const std::vector<float> u = random_vector(B * n * d, 14);
    Tensor out = zeros_on_device(B * n * d);
    AttentionCache full_cache;
    backend().attention_forward(out.data(), full_cache, on_device(u).data(), w, cfg, B, n);
    const std::vector<float> expected = testing::to_host(out);

    AttentionDecodeCache cache;
    cache.reset(B, n);
    std::vector<float> got(B * n * d);
    int64_t p0 = 0;
    for (int64_t step : {3, 1, 1, 5, 2, 4}) {
      Tensor y = zeros_on_device(B * step * d);
      backend().attention_decode(y.data(), cache, on_device(rows_of(u, B, n, p0, step, d)).data(),
                                 w, cfg, B, step);
      put_rows(got, testing::to_host(y), B, n, p0, step, d);
      p0 += step;
    }
    ASSERT_EQ(p0, n);
    testing::expect_close(what, got, expected, 1e-5, 1e-4);
    if (device() != Device::Cpu) {  // a device's decoding steps match the CPU's forward too
      std::vector<float> cpu(B * n * d);
      AttentionCache cpu_cache;
      backend_for(Device::Cpu)
          .attention_forward(cpu.data(), cpu_cache, u.data(), params(host), cfg, B, n);
      testing::expect_close(what + " against the cpu forward", got, cpu, 1e-5, 1e-4);
    }
  };
  for (AttentionKind kind : {AttentionKind::LongShort, AttentionKind::Full})
    for (bool rope : {true, false})
      for (bool dconv : {true, false})
        for (int stored : {0, 3})
          check(AttentionConfig{kind, d, H, e, /*window=*/4, /*chunk=*/4, r, rope, dconv, stored},
                std::string(kind == AttentionKind::Full ? "full" : "long_short") +
                    (rope ? " rope" : "") + (dconv ? " dconv" : "") +
                    (stored != 0 ? " stored_heads=" + std::to_string(stored) : ""));
}

TEST_P(Decode, StoredHeadsFewerThanHeadsIsAUsageError) {
  AttentionConfig cfg{AttentionKind::Full, 8, 2, 4, 0, 0, 0, true, false, /*stored_heads=*/1};
  const std::vector<float> w(8 * 8, 0.5f);
  std::vector<Tensor> dev;
  for (int i = 0; i < 4; ++i) dev.push_back(on_device(w));
  const AttentionParams p{dev[0].data(), dev[1].data(), dev[2].data(), dev[3].data()};
  AttentionDecodeCache cache;
  cache.reset(1, 4);
  Tensor y = zeros_on_device(8);
  EXPECT_THROW(backend().attention_decode(
                   y.data(), cache, on_device(std::vector<float>(8, 1.0f)).data(), p, cfg, 1, 1),
               UsageError);
}

TEST_P(Decode, ResamplingMhaStepsEqualTheForward) {
  const int64_t B = 2;
  const int d = 8, H = 2, e = 4, k = 2;
  const int64_t HE = H * e;
  std::vector<float> wq = random_vector(d * HE, 1, 0.6f), wk = random_vector(d * HE, 2, 0.6f),
                     wv = random_vector(d * HE, 3, 0.6f), wo = random_vector(HE * d, 4, 0.6f);
  Tensor dwq = on_device(wq), dwk = on_device(wk), dwv = on_device(wv), dwo = on_device(wo);
  const MhaParams w{dwq.data(), dwk.data(), dwv.data(), dwo.data()};
  for (FunnelMask mask : {FunnelMask::Down, FunnelMask::Up}) {
    const int64_t nk = mask == FunnelMask::Down ? 12 : 6;
    const int64_t nq = mask == FunnelMask::Down ? nk / k : nk * k;
    // The keys query i needs: Down keys < (i+1)·k, Up keys <= floor(i/k).
    auto needs = [&](int64_t i) { return mask == FunnelMask::Down ? (i + 1) * k : i / k + 1; };
    const std::vector<float> q_in = random_vector(B * nq * d, 5),
                             kv_in = random_vector(B * nk * d, 6);
    Tensor out = zeros_on_device(B * nq * d);
    MhaCache full_cache;
    backend().mha_forward(out.data(), full_cache, on_device(q_in).data(), on_device(kv_in).data(),
                          w, d, H, e, mask, k, B, nq, nk);
    const std::vector<float> expected = testing::to_host(out);

    // Keys arrive three at a time; after each, every query that can run does.
    MhaDecodeCache cache;
    cache.reset(B, nk);
    std::vector<float> got(B * nq * d);
    int64_t keys = 0, q0 = 0;
    while (q0 < nq) {
      const int64_t add = std::min<int64_t>(3, nk - keys);
      int64_t q1 = q0;
      while (q1 < nq && needs(q1) <= keys + add) ++q1;
      Tensor y = zeros_on_device(std::max<int64_t>(1, B * (q1 - q0) * d));
      backend().mha_decode(y.data(), cache, on_device(rows_of(q_in, B, nq, q0, q1 - q0, d)).data(),
                           on_device(rows_of(kv_in, B, nk, keys, add, d)).data(), w, d, H, e, mask,
                           k, B, q0, q1 - q0, add);
      if (q1 > q0) put_rows(got, testing::to_host(y), B, nq, q0, q1 - q0, d);
      keys += add;
      q0 = q1;
    }
    const std::string what = mask == FunnelMask::Down ? "down" : "up";
    testing::expect_close(what, got, expected, 1e-5, 1e-4);
    if (device() != Device::Cpu) {  // a device's decoding steps match the CPU's forward too
      std::vector<float> cpu(B * nq * d);
      MhaCache cpu_cache;
      backend_for(Device::Cpu)
          .mha_forward(cpu.data(), cpu_cache, q_in.data(), kv_in.data(),
                       {wq.data(), wk.data(), wv.data(), wo.data()}, d, H, e, mask, k, B, nq, nk);
      testing::expect_close(what + " against the cpu forward", got, cpu, 1e-5, 1e-4);
    }
  }
}

HG_TEST_ON_EVERY_BACKEND(Decode);

}  // namespace
}  // namespace hg
