// Attention-resampling MHA (§1.4) on every backend (tests/support/backends.h): finite differences
// for Down and Up, a dense masked reference, and the funnel masks checked key by key (which
// outputs move when one key row moves).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "layers/mha.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::on_device;
using testing::to_host;

// One MHA call's inputs as host vectors (the finite differences perturb them), run by `be` on
// device copies staged at every call.
struct MhaLayer {
  Backend* be;
  int d, H, e, k;
  FunnelMask mask;
  int64_t B, nq, nk;
  std::vector<float> q_in, kv_in, wq, wk, wv, wo, R, out;
  MhaCache cache;

  MhaLayer(Backend& be_, int d_, int H_, int e_, FunnelMask m, int k_, int64_t B_, int64_t nk_,
           uint64_t seed)
      : be(&be_),
        d(d_),
        H(H_),
        e(e_),
        k(k_),
        mask(m),
        B(B_),
        nq(m == FunnelMask::Down ? nk_ / k_ : nk_ * k_),
        nk(nk_) {
    const int64_t HE = int64_t(H) * e;
    q_in = testing::random_vector(B * nq * d, seed + 1);
    kv_in = testing::random_vector(B * nk * d, seed + 2);
    wq = testing::random_vector(d * HE, seed + 3, 0.6f);
    wk = testing::random_vector(d * HE, seed + 4, 0.6f);
    wv = testing::random_vector(d * HE, seed + 5, 0.6f);
    wo = testing::random_vector(HE * d, seed + 6, 0.6f);
    R = testing::random_vector(B * nq * d, seed + 7);
    out.resize(B * nq * d);
  }
  // The weights on the backend's device, in MhaParams order.
  struct Staged {
    Tensor q_in, kv_in, wq, wk, wv, wo;
    MhaParams params() { return {wq.data(), wk.data(), wv.data(), wo.data()}; }
  };
  Staged stage() const {
    const Device dev = be->device();
    return {on_device(q_in, dev), on_device(kv_in, dev), on_device(wq, dev),
            on_device(wk, dev),   on_device(wv, dev),    on_device(wo, dev)};
  }
  void forward() {
    Staged s = stage();
    Tensor o({int64_t(out.size())}, be->device());
    be->mha_forward(o.data(), cache, s.q_in.data(), s.kv_in.data(), s.params(), d, H, e, mask, k, B,
                    nq, nk);
    out = to_host(o);
  }
  double loss() {
    forward();
    return testing::dot(out.data(), R.data(), int64_t(out.size()));
  }
  bool visible(int64_t query, int64_t key) const {
    return mask == FunnelMask::Down ? key / k <= query : key <= query / k;
  }
};

// Dense masked reference in double: per head, softmax over the visible keys only.
std::vector<double> reference(const MhaLayer& m) {
  const int64_t HE = int64_t(m.H) * m.e;
  auto project = [&](const std::vector<float>& x, int64_t rows, const std::vector<float>& w) {
    std::vector<double> y(rows * HE, 0.0);
    for (int64_t i = 0; i < rows; ++i)
      for (int c = 0; c < m.d; ++c)
        for (int64_t j = 0; j < HE; ++j) y[i * HE + j] += double(x[i * m.d + c]) * w[c * HE + j];
    return y;
  };
  const auto Q = project(m.q_in, m.B * m.nq, m.wq), K = project(m.kv_in, m.B * m.nk, m.wk),
             V = project(m.kv_in, m.B * m.nk, m.wv);
  std::vector<double> O(m.B * m.nq * HE, 0.0), out(m.B * m.nq * m.d, 0.0);
  for (int64_t b = 0; b < m.B; ++b)
    for (int h = 0; h < m.H; ++h)
      for (int64_t i = 0; i < m.nq; ++i) {
        std::vector<double> s(m.nk, 0.0);
        double mx = -1e300;
        for (int64_t j = 0; j < m.nk; ++j) {
          if (!m.visible(i, j)) continue;
          for (int x = 0; x < m.e; ++x)
            s[j] += Q[(b * m.nq + i) * HE + h * m.e + x] * K[(b * m.nk + j) * HE + h * m.e + x];
          s[j] /= std::sqrt(double(m.e));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < m.nk; ++j) sum += s[j] = m.visible(i, j) ? std::exp(s[j] - mx) : 0;
        for (int64_t j = 0; j < m.nk; ++j)
          for (int x = 0; x < m.e; ++x)
            O[(b * m.nq + i) * HE + h * m.e + x] +=
                s[j] / sum * V[(b * m.nk + j) * HE + h * m.e + x];
      }
  for (int64_t i = 0; i < m.B * m.nq; ++i)
    for (int64_t c = 0; c < HE; ++c)
      for (int j = 0; j < m.d; ++j) out[i * m.d + j] += O[i * HE + c] * m.wo[c * m.d + j];
  return out;
}

std::string name(FunnelMask mask) { return mask == FunnelMask::Down ? "down" : "up"; }

class Mha : public testing::OnEveryBackend {
 protected:
  MhaLayer layer(int d, int H, int e, FunnelMask m, int k, int64_t B, int64_t nk, uint64_t seed) {
    return MhaLayer(backend(), d, H, e, m, k, B, nk, seed);
  }
  void check_gradients(MhaLayer m);
  void check_mask(FunnelMask mask, int k, int64_t nk);
};
HG_TEST_ON_EVERY_BACKEND(Mha);

// Outputs within 2e-5 of the double reference: a few ulp of float32 sums of ~d·H·e terms, in any
// backend's order.
void Mha::check_gradients(MhaLayer m) {
  SCOPED_TRACE(name(m.mask) + " H=" + std::to_string(m.H) + " k=" + std::to_string(m.k));
  m.forward();
  MhaLayer::Staged s = m.stage();
  Tensor R = on_device(m.R), dq = zeros_on_device(int64_t(m.q_in.size())),
         dkv = zeros_on_device(int64_t(m.kv_in.size())), gq = zeros_on_device(int64_t(m.wq.size())),
         gk = zeros_on_device(int64_t(m.wk.size())), gv = zeros_on_device(int64_t(m.wv.size())),
         go = zeros_on_device(int64_t(m.wo.size()));
  backend().mha_backward(dq.data(), dkv.data(), {gq.data(), gk.data(), gv.data(), go.data()},
                         R.data(), m.cache, s.q_in.data(), s.kv_in.data(), s.params(), m.d, m.H,
                         m.e, m.mask, m.k, m.B, m.nq, m.nk);
  const std::vector<double> ref = reference(m);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(m.out[i], ref[i], 2e-5) << i;
  auto loss = [&] { return m.loss(); };
  const struct {
    const char* name;
    std::vector<float>& x;
    const Tensor& grad;
  } checks[] = {{"q_in", m.q_in, dq}, {"kv_in", m.kv_in, dkv}, {"wq", m.wq, gq},
                {"wk", m.wk, gk},     {"wv", m.wv, gv},        {"wo", m.wo, go}};
  for (const auto& c : checks)
    testing::expect_gradients_match(c.name, loss, c.x.data(), to_host(c.grad).data(),
                                    int64_t(c.x.size()));
}

TEST_P(Mha, DownFiniteDifferences) {
  check_gradients(layer(8, 2, 4, FunnelMask::Down, 3, 2, 12, 1));
  check_gradients(layer(8, 3, 4, FunnelMask::Down, 2, 2, 160, 2));  // H·e != d, several blocks
}

TEST_P(Mha, UpFiniteDifferences) {
  check_gradients(layer(8, 2, 4, FunnelMask::Up, 3, 2, 4, 3));
  check_gradients(layer(8, 3, 4, FunnelMask::Up, 2, 2, 40, 4));  // nq = 80: several blocks
}

// Moving key row j (in sequence 1) changes exactly the outputs of the queries that see it and
// leaves every other output bit-identical; moving query row i changes only output i.
void Mha::check_mask(FunnelMask mask, int k, int64_t nk) {
  SCOPED_TRACE(name(mask));
  MhaLayer m = layer(8, 2, 4, mask, k, 2, nk, 10);
  m.forward();
  const std::vector<float> base = m.out;
  const int d = m.d;
  auto row_changed = [&](const std::vector<float>& out, int64_t b, int64_t i) {
    for (int c = 0; c < d; ++c)
      if (out[(b * m.nq + i) * d + c] != base[(b * m.nq + i) * d + c]) return true;
    return false;
  };
  for (int64_t j = 0; j < m.nk; ++j) {
    MhaLayer p = m;
    for (int c = 0; c < d; ++c) p.kv_in[(m.nk + j) * d + c] += 0.5f;
    p.forward();
    for (int64_t i = 0; i < m.nq; ++i) {
      ASSERT_FALSE(row_changed(p.out, 0, i)) << "other sequence";
      ASSERT_EQ(row_changed(p.out, 1, i), m.visible(i, j)) << "query " << i << " key " << j;
    }
  }
  for (int64_t i = 0; i < m.nq; i += 3) {
    MhaLayer p = m;
    p.q_in[(m.nq + i) * d] += 0.5f;
    p.forward();
    // A query that sees a single key returns that key's value whatever the query.
    int64_t seen = 0;
    for (int64_t j = 0; j < m.nk; ++j) seen += m.visible(i, j);
    for (int64_t t = 0; t < m.nq; ++t)
      ASSERT_EQ(row_changed(p.out, 1, t), t == i && seen > 1) << "query " << i;
  }
}

TEST_P(Mha, DownMaskVisibility) {
  check_mask(FunnelMask::Down, 3, 12);
  check_mask(FunnelMask::Down, 2, 150);
}

TEST_P(Mha, UpMaskVisibility) {
  check_mask(FunnelMask::Up, 3, 6);
  check_mask(FunnelMask::Up, 4, 20);
}

// The masks are prefixes of the keys: probabilities are stored only up to each query block's
// last visible key, well under the dense nq x nk matrix for long sequences. CPU-only: it reads
// the CPU cache's layout.
TEST(MhaCpu, StoresLessThanDenseMaskedMatrix) {
  MhaLayer up(cpu_backend(), 8, 2, 4, FunnelMask::Up, 2, 1, 100, 20);
  up.forward();
  EXPECT_LE(double(up.cache.probs.size()), 0.7 * double(up.H * up.nq * up.nk));
  MhaLayer down(cpu_backend(), 8, 2, 4, FunnelMask::Down, 2, 1, 400, 21);
  down.forward();
  EXPECT_LE(double(down.cache.probs.size()), 0.7 * double(down.H * down.nq * down.nk));
}

}  // namespace
}  // namespace hg
