// Block self-attention (§1.3): finite differences for every gradient, the blocked O(n·w) kernel
// against a dense double-precision reference written from the spec's set notation, the
// w >= n, l = n special case, causality, a prefix of the stored heads (MatFormer heads, §9.6),
// and a long-sequence smoke test, on every backend (tests/support/backends.h). The references
// are host code (CPU building blocks, double).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/attention.h"
#include "layers/attention_backend.h"
#include "layers/attention_core.h"
#include "layers/cpu/attention_core_bf16.h"
#include "layers/dconv.h"
#include "layers/layernorm.h"
#include "layers/linear.h"
#include "layers/rope.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::on_device;
using testing::to_host;

struct Grads;

// One attention layer with random inputs and parameters as host vectors (the finite differences
// perturb them), and a loss sum(out · R); forward and backward run on `be`, on device copies
// staged at every call.
struct Layer {
  Backend* be;
  AttentionConfig cfg;
  int64_t B = 0, n = 0;
  std::vector<float> u, wq, wk, wv, wo, dconv_q, dconv_k, dconv_v, proj_weight, proj_bias;
  std::vector<float> nw_gain, nw_bias, ng_gain, ng_bias, R, out;
  AttentionCache cache;

  // Parameters hold stored_heads(cfg) heads: HE = S·e, Hr = S·r (H·e, H·r unless cfg.stored_heads).
  Layer(Backend& backend, const AttentionConfig& c, int64_t batch, int64_t len, uint64_t seed)
      : be(&backend), cfg(c), B(batch), n(len) {
    const int64_t HE = qkv_row_stride(cfg), Hr = proj_row_stride(cfg);
    u = testing::random_vector(B * n * cfg.d, seed + 1);
    wq = testing::random_vector(cfg.d * HE, seed + 2, 0.5f);
    wk = testing::random_vector(cfg.d * HE, seed + 3, 0.5f);
    wv = testing::random_vector(cfg.d * HE, seed + 4, 0.5f);
    wo = testing::random_vector(HE * cfg.d, seed + 5, 0.5f);
    R = testing::random_vector(B * n * cfg.d, seed + 6);
    out.resize(B * n * cfg.d);
    if (cfg.dconv) {
      dconv_q = testing::random_vector(3 * HE, seed + 7, 0.7f);
      dconv_k = testing::random_vector(3 * HE, seed + 8, 0.7f);
      dconv_v = testing::random_vector(3 * HE, seed + 9, 0.7f);
    }
    if (cfg.kind == AttentionKind::LongShort) {
      proj_weight = testing::random_vector(cfg.d * Hr, seed + 10);
      proj_bias = testing::random_vector(Hr, seed + 11, 0.5f);
      nw_gain = testing::random_vector(HE, seed + 12, 0.3f);
      ng_gain = testing::random_vector(HE, seed + 13, 0.3f);
      for (float& x : nw_gain) x += 1.0f;
      for (float& x : ng_gain) x += 1.0f;
      nw_bias = testing::random_vector(HE, seed + 14, 0.2f);
      ng_bias = testing::random_vector(HE, seed + 15, 0.2f);
    }
  }

  // Host pointers (CPU-only code: the reference builders, the benchmark).
  AttentionParams params() { return params_of(*this); }
  template <class Buffers>  // Layer, Grads or Staged: the same member names
  static AttentionParams params_of(Buffers& x) {
    auto p = [](auto& v) { return v.empty() ? nullptr : v.data(); };
    AttentionParams a;
    a.wq = p(x.wq), a.wk = p(x.wk), a.wv = p(x.wv), a.wo = p(x.wo);
    a.dconv_q = p(x.dconv_q), a.dconv_k = p(x.dconv_k), a.dconv_v = p(x.dconv_v);
    a.proj_weight = p(x.proj_weight), a.proj_bias = p(x.proj_bias);
    a.norm_window_gain = p(x.nw_gain), a.norm_window_bias = p(x.nw_bias);
    a.norm_global_gain = p(x.ng_gain), a.norm_global_bias = p(x.ng_bias);
    return a;
  }
  // u (or du) and the parameters (or their gradients) on the backend's device.
  struct Staged {
    Tensor u, wq, wk, wv, wo, dconv_q, dconv_k, dconv_v, proj_weight, proj_bias;
    Tensor nw_gain, nw_bias, ng_gain, ng_bias;
    AttentionParams params() { return params_of(*this); }
  };
  template <class Buffers>
  static Staged stage(const Buffers& x, const std::vector<float>& first, Device dev) {
    auto t = [&](const std::vector<float>& v) { return on_device(v, dev); };
    return {t(first),     t(x.wq),      t(x.wk),      t(x.wv),          t(x.wo),
            t(x.dconv_q), t(x.dconv_k), t(x.dconv_v), t(x.proj_weight), t(x.proj_bias),
            t(x.nw_gain), t(x.nw_bias), t(x.ng_gain), t(x.ng_bias)};
  }
  void forward() {
    Staged s = stage(*this, u, be->device());
    Tensor o({int64_t(out.size())}, be->device());
    be->attention_forward(o.data(), cache, s.u.data(), s.params(), cfg, B, n);
    out = to_host(o);
  }
  void backward(Grads& g);  // of sum(out · R), after forward(); parameter gradients accumulate
  double loss() {
    forward();
    return testing::dot(out.data(), R.data(), int64_t(out.size()));
  }
};

// Gradients with the same shapes as a Layer's buffers, zero-initialised (params accumulate).
struct Grads {
  std::vector<float> du, wq, wk, wv, wo, dconv_q, dconv_k, dconv_v, proj_weight, proj_bias;
  std::vector<float> nw_gain, nw_bias, ng_gain, ng_bias;
  explicit Grads(const Layer& l)
      : du(l.u.size()),
        wq(l.wq.size()),
        wk(l.wk.size()),
        wv(l.wv.size()),
        wo(l.wo.size()),
        dconv_q(l.dconv_q.size()),
        dconv_k(l.dconv_k.size()),
        dconv_v(l.dconv_v.size()),
        proj_weight(l.proj_weight.size()),
        proj_bias(l.proj_bias.size()),
        nw_gain(l.nw_gain.size()),
        nw_bias(l.nw_bias.size()),
        ng_gain(l.ng_gain.size()),
        ng_bias(l.ng_bias.size()) {}
  AttentionParams params() { return Layer::params_of(*this); }
};

void Layer::backward(Grads& g) {
  const Device dev = be->device();
  Staged s = stage(*this, u, dev), dg = stage(g, g.du, dev);
  Tensor dev_R = on_device(R, dev);
  be->attention_backward(dg.u.data(), dg.params(), dev_R.data(), cache, s.u.data(), s.params(), cfg,
                         B, n);
  const struct {
    const Tensor& from;
    std::vector<float>& to;
  } back[] = {{dg.u, g.du},
              {dg.wq, g.wq},
              {dg.wk, g.wk},
              {dg.wv, g.wv},
              {dg.wo, g.wo},
              {dg.dconv_q, g.dconv_q},
              {dg.dconv_k, g.dconv_k},
              {dg.dconv_v, g.dconv_v},
              {dg.proj_weight, g.proj_weight},
              {dg.proj_bias, g.proj_bias},
              {dg.nw_gain, g.nw_gain},
              {dg.nw_bias, g.nw_bias},
              {dg.ng_gain, g.ng_gain},
              {dg.ng_bias, g.ng_bias}};
  for (const auto& b : back) b.to = to_host(b.from);
}

// Forward + backward of sum(out · R).
Grads run_backward(Layer& l) {
  Grads g(l);
  l.forward();
  l.backward(g);
  return g;
}

struct Buffer {
  std::string name;
  std::vector<float>* x;
  const std::vector<float>* grad;
};

// Every input and parameter the configuration uses, with its gradient.
std::vector<Buffer> buffers(Layer& l, const Grads& g) {
  std::vector<Buffer> all = {{"u", &l.u, &g.du},
                             {"wq", &l.wq, &g.wq},
                             {"wk", &l.wk, &g.wk},
                             {"wv", &l.wv, &g.wv},
                             {"wo", &l.wo, &g.wo},
                             {"dconv_q", &l.dconv_q, &g.dconv_q},
                             {"dconv_k", &l.dconv_k, &g.dconv_k},
                             {"dconv_v", &l.dconv_v, &g.dconv_v},
                             {"proj_weight", &l.proj_weight, &g.proj_weight},
                             {"proj_bias", &l.proj_bias, &g.proj_bias},
                             {"norm_window_gain", &l.nw_gain, &g.nw_gain},
                             {"norm_window_bias", &l.nw_bias, &g.nw_bias},
                             {"norm_global_gain", &l.ng_gain, &g.ng_gain},
                             {"norm_global_bias", &l.ng_bias, &g.ng_bias}};
  std::vector<Buffer> used;
  for (const Buffer& b : all)
    if (!b.x->empty()) used.push_back(b);
  return used;
}

AttentionConfig long_short(int d, int heads, int e, int w, int l, int r, bool rope, bool dconv) {
  AttentionConfig c;
  c.kind = AttentionKind::LongShort;
  c.d = d, c.heads = heads, c.head_dim = e, c.window = w, c.chunk = l, c.rank = r;
  c.rope = rope, c.dconv = dconv;
  return c;
}

AttentionConfig full(int d, int heads, int e, bool rope, bool dconv) {
  AttentionConfig c;
  c.kind = AttentionKind::Full;
  c.d = d, c.heads = heads, c.head_dim = e, c.rope = rope, c.dconv = dconv;
  return c;
}

std::string describe(const AttentionConfig& c) {
  return std::string(c.kind == AttentionKind::Full ? "full" : "long_short") +
         (c.rope ? " rope" : " no-rope") + (c.dconv ? " dconv" : " no-dconv") +
         " H=" + std::to_string(c.heads) + " e=" + std::to_string(c.head_dim) +
         " w=" + std::to_string(c.window) + " l=" + std::to_string(c.chunk) +
         " r=" + std::to_string(c.rank) +
         (c.stored_heads != 0 ? " stored_heads=" + std::to_string(c.stored_heads) : "");
}

class Attention : public testing::OnEveryBackend {};
HG_TEST_ON_EVERY_BACKEND(Attention);

// ---------------------------------------------------------------------------------------------
// 1. Finite differences of the float32 layer itself, every input and parameter.

void check_finite_differences(Backend& be, const AttentionConfig& cfg, int64_t n, uint64_t seed) {
  SCOPED_TRACE(describe(cfg));
  Layer l(be, cfg, 2, n, seed);
  Grads g = run_backward(l);
  for (const Buffer& b : buffers(l, g)) {
    testing::GradCheckOptions opt;
    opt.max_checks = 48;
    opt.eps = 3e-3;  // LayerNorm over e = 4 channels is curved: 1e-2 steps leave its
                     // second-order terms above the tolerance
    testing::expect_gradients_match(
        b.name, [&] { return l.loss(); }, b.x->data(), b.grad->data(), int64_t(b.x->size()), opt);
  }
}

TEST_P(Attention, LongShortFiniteDifferences) {
  for (int rope = 0; rope < 2; ++rope)
    for (int dconv = 0; dconv < 2; ++dconv)
      check_finite_differences(backend(), long_short(8, 2, 4, 6, 4, 2, rope, dconv), 16,
                               10 + rope * 2 + dconv);
  // w not a multiple of l, and H·e != d (a tensor-parallel head slice).
  check_finite_differences(backend(), long_short(8, 3, 4, 5, 4, 1, true, true), 16, 20);
  check_finite_differences(backend(), long_short(8, 1, 6, 8, 4, 2, true, false), 16, 21);
}

TEST_P(Attention, FullFiniteDifferences) {
  for (int rope = 0; rope < 2; ++rope)
    for (int dconv = 0; dconv < 2; ++dconv)
      check_finite_differences(backend(), full(8, 2, 4, rope, dconv), 16, 30 + rope * 2 + dconv);
  check_finite_differences(backend(), full(8, 3, 4, true, true), 16, 40);
}

AttentionConfig with_stored_heads(AttentionConfig c, int stored) {
  c.stored_heads = stored;
  return c;
}

// MatFormer heads (§9.6): 2 of 3 stored heads, every parameter entry perturbed, those of the
// third head included (their gradient is 0: the loss does not depend on them).
TEST_P(Attention, FewerHeadsThanStoredFiniteDifferences) {
  check_finite_differences(backend(),
                           with_stored_heads(long_short(8, 2, 4, 6, 4, 2, true, true), 3), 16, 45);
  check_finite_differences(backend(), with_stored_heads(full(8, 2, 4, true, true), 3), 16, 46);
}

// ---------------------------------------------------------------------------------------------
// 2. A dense reference in double precision, written from the set notation of §1.3: for every
// query t, the explicit list of (score, value) pairs of the union of the visible compressed
// keys and the visible window keys, one softmax over that list.

using Mat = std::vector<double>;  // row-major

Mat matmul(const std::vector<float>& a, int64_t rows, int64_t inner, const std::vector<float>& b,
           int64_t cols) {
  Mat out(rows * cols, 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < inner; ++k)
      for (int64_t j = 0; j < cols; ++j)
        out[i * cols + j] += double(a[i * inner + k]) * b[k * cols + j];
  return out;
}

Mat dconv_ref(const Mat& z, const std::vector<float>& a, int64_t B, int64_t n, int64_t C) {
  Mat out(z.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t tap = 0; tap < 3 && tap <= t; ++tap)
          out[(b * n + t) * C + c] += double(a[tap * C + c]) * z[(b * n + t - tap) * C + c];
  return out;
}

std::vector<double> layernorm_ref(const double* x, const float* gain, const float* bias, int e) {
  double mean = 0, var = 0;
  for (int i = 0; i < e; ++i) mean += x[i];
  mean /= e;
  for (int i = 0; i < e; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= e;
  std::vector<double> y(e);
  for (int i = 0; i < e; ++i) y[i] = (x[i] - mean) / std::sqrt(var + 1e-5) * gain[i] + bias[i];
  return y;
}

std::vector<double> rope_ref(std::vector<double> z, int64_t p, bool enabled) {
  if (!enabled) return z;
  const int e = int(z.size());
  for (int i = 0; i < e / 2; ++i) {
    const double angle = double(p) * std::pow(10000.0, -2.0 * i / e);
    const double c = std::cos(angle), s = std::sin(angle), x0 = z[2 * i], x1 = z[2 * i + 1];
    z[2 * i] = x0 * c - x1 * s;
    z[2 * i + 1] = x0 * s + x1 * c;
  }
  return z;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Returns out [B, n, d] in double.
Mat reference_forward(const Layer& l) {
  const AttentionConfig& c = l.cfg;
  const int H = c.heads, e = c.head_dim, d = c.d;
  const int64_t B = l.B, n = l.n, HE = int64_t(H) * e, rows = B * n;
  Mat Q = matmul(l.u, rows, d, l.wq, HE), K = matmul(l.u, rows, d, l.wk, HE),
      V = matmul(l.u, rows, d, l.wv, HE);
  if (c.dconv) {
    Q = dconv_ref(Q, l.dconv_q, B, n, HE);
    K = dconv_ref(K, l.dconv_k, B, n, HE);
    V = dconv_ref(V, l.dconv_v, B, n, HE);
  }
  auto head = [&](const Mat& m, int64_t b, int64_t t, int h) {
    const double* p = m.data() + (b * n + t) * HE + int64_t(h) * e;
    return std::vector<double>(p, p + e);
  };
  const bool ls = c.kind == AttentionKind::LongShort;
  const int64_t l_ = ls ? c.chunk : 1, r = ls ? c.rank : 0, Hr = int64_t(H) * r;
  Mat P;
  if (ls) {
    P = matmul(l.u, rows, d, l.proj_weight, Hr);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t col = 0; col < Hr; ++col) P[i * Hr + col] += l.proj_bias[col];
  }
  Mat O(rows * HE, 0.0);
  const double scale = 1.0 / std::sqrt(double(e));
  for (int64_t b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const float* nwg = ls ? l.nw_gain.data() + h * e : nullptr;
      const float* nwb = ls ? l.nw_bias.data() + h * e : nullptr;
      const float* ngg = ls ? l.ng_gain.data() + h * e : nullptr;
      const float* ngb = ls ? l.ng_bias.data() + h * e : nullptr;
      // Compressed keys/values of every chunk c and ρ (long_short).
      std::vector<std::vector<double>> kc, vc;  // index c·r + ρ
      for (int64_t ch = 0; ls && ch < n / l_; ++ch)
        for (int64_t rho = 0; rho < r; ++rho) {
          const int64_t col = h * r + rho;
          double m = -1e300, s = 0;
          for (int64_t i = 0; i < l_; ++i) m = std::max(m, P[(b * n + ch * l_ + i) * Hr + col]);
          std::vector<double> p(l_);
          for (int64_t i = 0; i < l_; ++i)
            s += p[i] = std::exp(P[(b * n + ch * l_ + i) * Hr + col] - m);
          std::vector<double> ks(e, 0.0), vs(e, 0.0);
          for (int64_t i = 0; i < l_; ++i) {
            auto ki = head(K, b, ch * l_ + i, h), vi = head(V, b, ch * l_ + i, h);
            for (int x = 0; x < e; ++x) ks[x] += p[i] / s * ki[x], vs[x] += p[i] / s * vi[x];
          }
          kc.push_back(layernorm_ref(ks.data(), ngg, ngb, e));
          vc.push_back(layernorm_ref(vs.data(), ngg, ngb, e));
        }
      // Window keys and values of every row: LNw, then the keys rotated at their own index.
      std::vector<std::vector<double>> kw(n), vw(n);
      // (full: the keys rotated, the values as they are).
      for (int64_t j = 0; j < n; ++j) {
        const auto kj = head(K, b, j, h), vj = head(V, b, j, h);
        kw[j] = rope_ref(ls ? layernorm_ref(kj.data(), nwg, nwb, e) : kj, j, c.rope);
        vw[j] = ls ? layernorm_ref(vj.data(), nwg, nwb, e) : vj;
      }
      for (int64_t t = 0; t < n; ++t) {
        const auto q = head(Q, b, t, h);
        const auto q_rot = rope_ref(q, t, c.rope);
        std::vector<double> scores;
        std::vector<std::vector<double>> values;
        if (ls) {
          for (int64_t ch = 0; ch < t / l_; ++ch)  // every c < floor(t/l), neither side rotated
            for (int64_t rho = 0; rho < r; ++rho) {
              scores.push_back(dot(q, kc[ch * r + rho]) * scale);
              values.push_back(vc[ch * r + rho]);
            }
          for (int64_t j = std::max<int64_t>(0, t - c.window + 1); j <= t; ++j) {
            scores.push_back(dot(q_rot, kw[j]) * scale);
            values.push_back(vw[j]);
          }
        } else {
          for (int64_t j = 0; j <= t; ++j) {
            scores.push_back(dot(q_rot, kw[j]) * scale);
            values.push_back(vw[j]);
          }
        }
        const double m = *std::max_element(scores.begin(), scores.end());
        double s = 0;
        for (double& x : scores) s += x = std::exp(x - m);
        double* o = O.data() + (b * n + t) * HE + int64_t(h) * e;
        for (size_t i = 0; i < scores.size(); ++i)
          for (int x = 0; x < e; ++x) o[x] += scores[i] / s * values[i][x];
      }
    }
  Mat out(rows * d, 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < HE; ++k)
      for (int64_t j = 0; j < d; ++j) out[i * d + j] += O[i * HE + k] * l.wo[k * d + j];
  return out;
}

double reference_loss(const Layer& l) {
  const Mat out = reference_forward(l);
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += out[i] * l.R[i];
  return s;
}

// Central differences of the double reference with the float step actually taken, compared
// with the layer's float32 gradients: an independent check of every gradient.
void expect_gradients_match_reference(Layer& l, const Grads& g) {
  for (const Buffer& b : buffers(l, g)) {
    std::vector<float>& x = *b.x;
    int bad = 0;
    const int64_t size = int64_t(x.size()), checks = std::min<int64_t>(size, 40);
    for (int64_t c = 0; c < checks; ++c) {
      const int64_t i = checks == 1 ? 0 : c * (size - 1) / (checks - 1);
      const float saved = x[i];
      const float xp = saved + 1e-3f, xm = saved - 1e-3f;
      x[i] = xp;
      const double lp = reference_loss(l);
      x[i] = xm;
      const double lm = reference_loss(l);
      x[i] = saved;
      const double fd = (lp - lm) / (double(xp) - double(xm)), an = (*b.grad)[i];
      if (std::fabs(fd - an) > 2e-4 + 2e-3 * std::fabs(fd) && ++bad <= 3)
        ADD_FAILURE() << b.name << "[" << i << "]: reference " << fd << " vs kernel " << an;
    }
  }
}

void check_against_reference(Backend& be, const AttentionConfig& cfg, int64_t n, uint64_t seed) {
  SCOPED_TRACE(describe(cfg) + " n=" + std::to_string(n));
  Layer l(be, cfg, 2, n, seed);
  Grads g = run_backward(l);
  const Mat ref = reference_forward(l);
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(ref[i] - l.out[i]));
  EXPECT_LT(worst, 2e-5) << "forward differs from the dense reference";
  expect_gradients_match_reference(l, g);
}

TEST_P(Attention, LongShortMatchesDenseReference) {
  // Query blocks of 32 rows span 8 chunks of 4: rows of one block see different chunks.
  check_against_reference(backend(), long_short(8, 2, 4, 6, 4, 2, true, true), 40, 50);
  check_against_reference(backend(), long_short(8, 2, 4, 8, 4, 1, false, false), 40, 51);
  // Chunks longer than a block target, window of one chunk, H·e != d.
  check_against_reference(backend(), long_short(6, 3, 4, 8, 8, 2, true, true), 48, 52);
}

TEST_P(Attention, FullMatchesDenseReference) {
  check_against_reference(backend(), full(8, 2, 4, true, true), 72, 60);  // two 64-row blocks
  check_against_reference(backend(), full(8, 3, 2, false, false), 20, 61);
}

// ---------------------------------------------------------------------------------------------
// 3. With w >= n and l = n no query sees a chunk: long_short is causal attention over LNw(K)
// and LNw(V) (queries and normalised keys rotated), built here from the building blocks.

std::vector<float> causal_over_normalised_kv(Layer& l) {
  const AttentionConfig& c = l.cfg;
  const int H = c.heads, e = c.head_dim;
  const int64_t B = l.B, n = l.n, HE = int64_t(H) * e, rows = B * n;
  std::vector<float> q(rows * HE), k(rows * HE), v(rows * HE), tmp(rows * HE);
  std::vector<float> mean(rows * H), rstd(rows * H);
  const std::vector<float>* w[3] = {&l.wq, &l.wk, &l.wv};
  const std::vector<float>* taps[3] = {&l.dconv_q, &l.dconv_k, &l.dconv_v};
  std::vector<float>* dst[3] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) {
    linear_forward(tmp.data(), l.u.data(), w[i]->data(), nullptr, rows, c.d, HE, HE);
    if (c.dconv)
      dconv_forward(dst[i]->data(), tmp.data(), taps[i]->data(), B, n, int(HE), HE);
    else
      *dst[i] = tmp;
  }
  tmp = k;
  layernorm_forward(k.data(), mean.data(), rstd.data(), tmp.data(), l.nw_gain.data(),
                    l.nw_bias.data(), rows, H, e);
  tmp = v;
  layernorm_forward(v.data(), mean.data(), rstd.data(), tmp.data(), l.nw_gain.data(),
                    l.nw_bias.data(), rows, H, e);
  if (c.rope) {
    RopeTable table = make_rope_table(n, e);
    rope_forward(q.data(), table, B, n, H, e);
    rope_forward(k.data(), table, B, n, H, e);
  }
  std::vector<float> o(rows * HE, 0.0f), out(rows * c.d);
  for (int64_t b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int64_t t = 0; t < n; ++t) {
        const float* qt = q.data() + (b * n + t) * HE + h * e;
        std::vector<double> s(t + 1);
        for (int64_t j = 0; j <= t; ++j)
          s[j] = testing::dot(qt, k.data() + (b * n + j) * HE + h * e, e) / std::sqrt(double(e));
        const double m = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (double& x : s) sum += x = std::exp(x - m);
        for (int64_t j = 0; j <= t; ++j)
          for (int x = 0; x < e; ++x)
            o[(b * n + t) * HE + h * e + x] += float(s[j] / sum) * v[(b * n + j) * HE + h * e + x];
      }
  linear_forward(out.data(), o.data(), l.wo.data(), nullptr, rows, HE, c.d, c.d);
  return out;
}

TEST_P(Attention, LongShortWithWholeWindowIsCausalAttentionOverNormalisedKV) {
  for (int rope = 0; rope < 2; ++rope) {
    const int64_t n = 12;
    AttentionConfig cfg = long_short(8, 2, 4, 16, int(n), 2, rope, true);
    SCOPED_TRACE(describe(cfg));
    Layer l(backend(), cfg, 2, n, 70 + rope);
    Grads g = run_backward(l);
    const std::vector<float> ref = causal_over_normalised_kv(l);
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(l.out[i], ref[i], 2e-5) << i;
    // No query sees a chunk: the dynamic projection and LNg get exactly zero gradient.
    for (float x : g.proj_weight) ASSERT_EQ(x, 0.0f);
    for (float x : g.proj_bias) ASSERT_EQ(x, 0.0f);
    for (float x : g.ng_gain) ASSERT_EQ(x, 0.0f);
    for (float x : g.ng_bias) ASSERT_EQ(x, 0.0f);
    // The other gradients are those of the reference (finite differences of it).
    testing::GradCheckOptions opt;
    opt.eps = 3e-3;
    for (const Buffer& b : buffers(l, g)) {
      if (b.name.find("global") != std::string::npos || b.name.find("proj") != std::string::npos)
        continue;
      testing::expect_gradients_match(
          b.name,
          [&] {
            auto out = causal_over_normalised_kv(l);
            return testing::dot(out.data(), l.R.data(), int64_t(out.size()));
          },
          b.x->data(), b.grad->data(), int64_t(b.x->size()), opt);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Causality: perturbing input row t leaves outputs 0..t-1 bit-identical (and changes row t).

void check_causality(Backend& be, const AttentionConfig& cfg, int64_t n) {
  SCOPED_TRACE(describe(cfg));
  Layer l(be, cfg, 2, n, 80);
  l.forward();
  const std::vector<float> base = l.out;
  const int d = cfg.d;
  for (int64_t t : {int64_t(1), int64_t(5), n / 2, n / 2 + 1, n - 1}) {
    Layer p = l;
    for (int i = 0; i < d; ++i) p.u[(1 * n + t) * d + i] += 0.5f;  // sequence 1, row t
    p.forward();
    for (int64_t s = 0; s < t * d; ++s) ASSERT_EQ(p.out[n * d + s], base[n * d + s]) << "t=" << t;
    for (int64_t s = 0; s < n * d; ++s) ASSERT_EQ(p.out[s], base[s]) << "other sequence";
    bool changed = false;
    for (int i = 0; i < d; ++i) changed |= p.out[(n + t) * d + i] != base[(n + t) * d + i];
    EXPECT_TRUE(changed) << "row " << t << " does not depend on its own input";
  }
}

TEST_P(Attention, LongShortIsCausal) {
  check_causality(backend(), long_short(8, 2, 4, 8, 4, 2, true, true), 48);
  check_causality(backend(), long_short(8, 2, 4, 6, 4, 1, false, false), 48);
}

TEST_P(Attention, FullIsCausal) {
  check_causality(backend(), full(8, 2, 4, true, true), 80);
  check_causality(backend(), full(8, 2, 4, false, false), 24);
}

// Results are the same run to run (and do not depend on the cache having been used before).
TEST_P(Attention, Deterministic) {
  Layer a(backend(), long_short(16, 2, 8, 16, 8, 2, true, true), 2, 64, 90);
  Layer b = a;
  const float saved = b.u[3];
  b.u[3] += 1.0f;
  b.forward();  // warm b's cache with a different input first
  b.u[3] = saved;
  Grads ga = run_backward(a), gb = run_backward(b);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(ga.du, gb.du);
  EXPECT_EQ(ga.proj_weight, gb.proj_weight);
  EXPECT_EQ(ga.nw_gain, gb.nw_gain);
}

// The attention layer on the device with run.attention_backend `backend` against native: long-short
// (a band narrower than n, and w >= n) and full attention over n rows, forward and every gradient,
// each within `atol` of its largest |value| plus `rtol`; and `backend` run twice gives the same
// bits.
void expect_backend_matches_native(AttentionBackend backend, int64_t n, double atol, double rtol) {
  struct Reset {
    ~Reset() { set_attention_backend(AttentionBackend::Native); }
  } reset;
  Backend& cuda = backend_for(Device::Cuda);
  for (const AttentionConfig& cfg :
       {long_short(64, 4, 16, 32, 16, 2, true, true), long_short(64, 4, 16, 128, 16, 2, true, true),
        full(64, 4, 16, true, true)}) {
    SCOPED_TRACE(describe(cfg));
    Layer native(cuda, cfg, 2, n, 300), other = native, again = native;
    set_attention_backend(AttentionBackend::Native);
    const Grads want = run_backward(native);
    set_attention_backend(backend);
    const Grads got = run_backward(other), got_again = run_backward(again);
    set_attention_backend(AttentionBackend::Native);
    EXPECT_EQ(other.out, again.out) << "not deterministic";
    EXPECT_EQ(got.du, got_again.du) << "the backward is not deterministic";
    auto largest = [](const std::vector<float>& v) {
      double m = 0;
      for (float x : v) m = std::max(m, double(std::fabs(x)));
      return m;
    };
    testing::expect_close("out", other.out, native.out, atol * largest(native.out), rtol);
    // proj/bias's gradient sums each chunk softmax's logit gradients, which sum to zero: it is
    // rounding (1e-6 here against 10 for proj/weight's), so it is held at proj/weight's scale.
    const std::vector<Buffer> mine = buffers(native, got), theirs = buffers(native, want);
    for (size_t i = 0; i < mine.size(); ++i)
      testing::expect_close(
          "d" + mine[i].name, *mine[i].grad, *theirs[i].grad,
          atol * largest(mine[i].name == "proj_bias" ? want.proj_weight : *theirs[i].grad), rtol);
  }
}

// run.attention_backend split (attention_split.h with the hand kernel as the window engine): the
// same float32 terms as the joint kernel, merged with a few more roundings (1e-7 relative on the
// emulation's kernel test), so within 1e-5. Runs wherever /cuda runs: the emulated device too
// (64 rows there: 4 chunks, a band of half of them).
TEST(AttentionCuda, SplitMatchesNative) {
  if (const std::string why = unavailable_reason(Device::Cuda); !why.empty()) GTEST_SKIP() << why;
  expect_backend_matches_native(AttentionBackend::Split, 64, 1e-5, 1e-5);
}

// run.attention_backend cudnn (cudnn_attention.h) against native, both at train.precision bf16.
// Skipped without a GPU or a loadable cuDNN: NOT YET RUN ANYWHERE.
//
// Tolerance: both sides round q, k, v, dO to bfloat16 the same way. cuDNN also returns O and
// dQ, dK, dV as bfloat16 (relative 2^-9 = 0.2%) and rounds its probabilities at other points than
// the native kernel (2^-9 per term, of random sign over the window's keys); Wo and the
// projections' backward then sum such errors over H·e = 64 terms, so they stay ~2^-8 of the
// values' scale. 1% of the largest |value| plus 2% relative is 2-5x that; a wrong band (one key
// more or less) or a wrong merge weight moves values by tens of percent.
TEST(AttentionCuda, CudnnMatchesNativeWithinBf16Rounding) {
  if (const std::string why = unavailable_reason(Device::Cuda); !why.empty()) GTEST_SKIP() << why;
  if (const std::string why = cudnn_attention_unavailable_reason(); !why.empty())
    GTEST_SKIP() << why;
  const MatmulPrecisionScope bf16(MatmulPrecision::Bf16);
  expect_backend_matches_native(AttentionBackend::Cudnn, 128, 0.01, 0.02);
}

// Layers share a per-thread workspace: interleaving the forwards and backwards of two layers
// (as a pipeline schedule does with micro-batches) gives the gradients of running them apart.
TEST_P(Attention, InterleavedLayersMatchSeparateRuns) {
  Layer a(backend(), long_short(16, 2, 8, 16, 8, 2, true, true), 2, 64, 91);
  Layer b(backend(), full(16, 3, 4, true, false), 1, 40, 92);
  const Grads ga = run_backward(a), gb = run_backward(b);
  Layer a2 = a, b2 = b;
  a2.cache = AttentionCache();
  b2.cache = AttentionCache();
  Grads ga2(a2), gb2(b2);
  a2.forward();
  b2.forward();
  a2.backward(ga2);
  b2.backward(gb2);
  EXPECT_EQ(ga.du, ga2.du);
  EXPECT_EQ(ga.wq, ga2.wq);
  EXPECT_EQ(ga.nw_gain, ga2.nw_gain);
  EXPECT_EQ(gb.du, gb2.du);
  EXPECT_EQ(gb.wk, gb2.wk);
}

// At bf16 the CPU layer keeps its kernel's bfloat16 operands and LNw's statistics in its cache
// for the backward (AttentionCache::copies16) instead of recomputing them: interleaving two
// layers' forwards and backwards still gives the gradients of running them apart, and a second
// backward from the same cache gives the same gradients (the backward only reads the cache).
TEST(AttentionCpu, Bf16KeptOperandsBelongToTheirLayer) {
  const MatmulPrecisionScope bf16(MatmulPrecision::Bf16);
  Layer a(cpu_backend(), long_short(64, 2, 32, 32, 8, 2, true, true), 2, 96, 93);
  Layer b(cpu_backend(), long_short(64, 4, 16, 16, 4, 1, false, true), 1, 64, 94);
  const Grads ga = run_backward(a), gb = run_backward(b);
  Layer a2 = a, b2 = b;
  a2.cache = AttentionCache();
  b2.cache = AttentionCache();
  Grads ga2(a2), gb2(b2), ga3(a2);
  a2.forward();
  b2.forward();
  a2.backward(ga2);
  b2.backward(gb2);
  a2.backward(ga3);
  EXPECT_EQ(ga.du, ga2.du);
  EXPECT_EQ(ga.wq, ga2.wq);
  EXPECT_EQ(ga.nw_gain, ga2.nw_gain);
  EXPECT_EQ(gb.du, gb2.du);
  EXPECT_EQ(gb.wk, gb2.wk);
  EXPECT_EQ(ga2.du, ga3.du);
  EXPECT_EQ(ga2.wv, ga3.wv);
}

// At bf16 the CPU layer writes the window operands straight into its kernel's bfloat16 copies
// (attention.cpp's window_copies16, one pass per row): they must be the rounding of what the
// float32 passes compute (RoPE(Q) or Q; RoPE(LNw(K)), LNw(K), RoPE(K) or K; LNw(V) or V), and
// LNw's statistics those of layernorm_forward, for every kind of configuration.
TEST(AttentionCpu, Bf16WindowCopiesAreTheRoundedWindowOperands) {
  const MatmulPrecisionScope bf16(MatmulPrecision::Bf16);
  const AttentionConfig configs[] = {long_short(8, 2, 4, 6, 4, 2, true, true),
                                     long_short(8, 2, 4, 8, 4, 1, false, false),
                                     with_stored_heads(long_short(8, 2, 4, 6, 4, 2, true, true), 3),
                                     full(8, 2, 4, true, true), full(8, 3, 4, false, true)};
  for (const AttentionConfig& cfg : configs) {
    SCOPED_TRACE(describe(cfg));
    Layer l(cpu_backend(), cfg, 2, 16, 96);
    l.forward();
    const AttentionCache& c = l.cache;
    const int H = cfg.heads, e = cfg.head_dim;
    const int64_t B = l.B, n = l.n, rows = B * n, HE = int64_t(H) * e;
    const bool ls = cfg.kind == AttentionKind::LongShort;
    std::vector<float> q = c.q, k = c.k, v = c.v;
    std::vector<float> mean_k(rows * H), rstd_k(rows * H), mean_v(rows * H), rstd_v(rows * H);
    if (ls) {
      layernorm_forward(k.data(), mean_k.data(), rstd_k.data(), c.k.data(), l.nw_gain.data(),
                        l.nw_bias.data(), rows, H, e);
      layernorm_forward(v.data(), mean_v.data(), rstd_v.data(), c.v.data(), l.nw_gain.data(),
                        l.nw_bias.data(), rows, H, e);
      EXPECT_EQ(c.win_mean_k, mean_k);
      EXPECT_EQ(c.win_rstd_k, rstd_k);
      EXPECT_EQ(c.win_mean_v, mean_v);
      EXPECT_EQ(c.win_rstd_v, rstd_v);
    }
    if (cfg.rope) {
      rope_forward(q.data(), c.rope, B, n, H, e);
      rope_forward(k.data(), c.rope, B, n, H, e);
    }
    SliceCopies copies = copies_layout(c.plan, e);
    copies.base = const_cast<uint16_t*>(c.copies16.bits.data());  // read only
    int64_t wrong[3] = {0, 0, 0};
    for (int64_t b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int64_t t = 0; t < n; ++t)
          for (int j = 0; j < e; ++j) {
            const int64_t s = b * H + h, at = (b * n + t) * HE + int64_t(h) * e + j;
            wrong[0] += copies.q_window(s)[t * e + j] != bf16_bits(q[at]);
            wrong[1] += copies.k(s)[t * e + j] != bf16_bits(k[at]);
            wrong[2] += copies.v(s)[t * e + j] != bf16_bits(v[at]);
          }
    EXPECT_EQ(wrong[0], 0) << "window queries";
    EXPECT_EQ(wrong[1], 0) << "window keys";
    EXPECT_EQ(wrong[2], 0) << "window values";
  }
}

// ---------------------------------------------------------------------------------------------
// 5. MatFormer heads (§9.6): a layer that runs the first h of the S heads its parameters hold is
// the layer of h heads on the parameters sliced to those heads (contiguous copies), and leaves
// the other heads' gradient entries as they were.

// Where a parameter's entries for the first h heads lie: the first `cols` columns of its `rows`
// rows, `ld` floats apart (wo: its first h·e rows, whole).
struct HeadSlice {
  std::string name;
  std::vector<float>* x;
  int64_t rows, ld, cols;
};

template <class Buffers>  // Layer or Grads
std::vector<HeadSlice> head_slices(Buffers& x, const AttentionConfig& cfg) {
  const int64_t d = cfg.d, SE = qkv_row_stride(cfg), Sr = proj_row_stride(cfg);
  const int64_t HE = int64_t(cfg.heads) * cfg.head_dim, Hr = int64_t(cfg.heads) * cfg.rank;
  std::vector<HeadSlice> all = {{"wq", &x.wq, d, SE, HE},
                                {"wk", &x.wk, d, SE, HE},
                                {"wv", &x.wv, d, SE, HE},
                                {"wo", &x.wo, HE, d, d},
                                {"dconv_q", &x.dconv_q, 3, SE, HE},
                                {"dconv_k", &x.dconv_k, 3, SE, HE},
                                {"dconv_v", &x.dconv_v, 3, SE, HE},
                                {"proj_weight", &x.proj_weight, d, Sr, Hr},
                                {"proj_bias", &x.proj_bias, 1, Sr, Hr},
                                {"norm_window_gain", &x.nw_gain, 1, SE, HE},
                                {"norm_window_bias", &x.nw_bias, 1, SE, HE},
                                {"norm_global_gain", &x.ng_gain, 1, SE, HE},
                                {"norm_global_bias", &x.ng_bias, 1, SE, HE}};
  std::vector<HeadSlice> used;
  for (const HeadSlice& p : all)
    if (!p.x->empty()) used.push_back(p);
  return used;
}

std::vector<float> sliced(const HeadSlice& p) {
  std::vector<float> out(p.rows * p.cols);
  for (int64_t r = 0; r < p.rows; ++r)
    std::copy_n(p.x->begin() + r * p.ld, p.cols, out.begin() + r * p.cols);
  return out;
}

// Within 1e-6 (absolute and relative), not bit for bit: with S > h the layer runs the very
// kernels of h heads on the same numbers, but the projections' gemms read (and, for the weight
// gradients, write) their weight operand with a wider row stride (S·e, S·r), and the BLAS may
// pick another kernel, with another order of summation, for another leading dimension. oneDNN
// gives the same bits for most of the configurations below, but not for dproj_weight with
// h·r = 1 (a one-column product). The other heads' gradient entries are checked bit for bit.
constexpr double kPrefixTol = 1e-6;
void check_prefix_of_stored_heads(Backend& be, const AttentionConfig& cfg, int64_t n,
                                  uint64_t seed) {
  SCOPED_TRACE(describe(cfg));
  Layer wide(be, cfg, 2, n, seed);
  Layer narrow = wide;
  narrow.cfg.stored_heads = 0;
  Grads gw(wide);
  const std::vector<HeadSlice> params = head_slices(wide, cfg);
  std::vector<HeadSlice> grads = head_slices(gw, cfg);
  std::vector<std::vector<float>> grads0;  // gradients start from random values
  for (size_t i = 0; i < grads.size(); ++i) {
    *grads[i].x = testing::random_vector(int64_t(grads[i].x->size()), seed + 100 + i);
    grads0.push_back(*grads[i].x);
  }
  Grads gn(narrow);
  const std::vector<HeadSlice> narrow_params = head_slices(narrow, narrow.cfg);
  const std::vector<HeadSlice> narrow_grads = head_slices(gn, narrow.cfg);
  for (size_t i = 0; i < params.size(); ++i) {
    *narrow_params[i].x = sliced(params[i]);
    *narrow_grads[i].x = sliced(grads[i]);
  }
  wide.forward();
  wide.backward(gw);
  narrow.forward();
  narrow.backward(gn);
  testing::expect_close("out", wide.out, narrow.out, kPrefixTol, kPrefixTol);
  testing::expect_close("du", gw.du, gn.du, kPrefixTol, kPrefixTol);
  for (size_t i = 0; i < grads.size(); ++i) {
    const HeadSlice& g = grads[i];
    testing::expect_close("d" + g.name + " of the heads run", sliced(g), *narrow_grads[i].x,
                          kPrefixTol, kPrefixTol);
    int written = 0;  // entries of the heads not run that changed
    for (int64_t r = 0; r < g.rows; ++r)
      for (int64_t c = g.cols; c < g.ld; ++c)
        written += std::memcmp(&(*g.x)[r * g.ld + c], &grads0[i][r * g.ld + c], sizeof(float)) != 0;
    EXPECT_EQ(written, 0) << "d" << g.name << ": entries of the heads not run were written";
  }
  double sum_abs = 0;  // the comparison above is not between two zero gradients
  for (float x : *narrow_grads[0].x) sum_abs += std::fabs(x);
  EXPECT_GT(sum_abs, 0.0);
}

TEST_P(Attention, PrefixOfStoredHeadsIsTheSlicedLayer) {
  for (int rope = 0; rope < 2; ++rope)
    for (int dconv = 0; dconv < 2; ++dconv) {
      const uint64_t seed = 120 + 2 * rope + dconv;
      check_prefix_of_stored_heads(
          backend(), with_stored_heads(long_short(8, 2, 4, 6, 4, 2, rope, dconv), 4), 16, seed);
      check_prefix_of_stored_heads(backend(), with_stored_heads(full(8, 2, 4, rope, dconv), 4), 16,
                                   seed + 10);
    }
  // One head of three; all heads stored (S = h: the layer of old).
  check_prefix_of_stored_heads(
      backend(), with_stored_heads(long_short(8, 1, 4, 8, 4, 1, true, true), 3), 16, 140);
  check_prefix_of_stored_heads(backend(), with_stored_heads(full(8, 2, 4, true, true), 2), 16, 141);
}

TEST(AttentionCpu, StoredHeadsFewerThanHeadsIsAUsageError) {
  const AttentionConfig ok = with_stored_heads(long_short(8, 2, 4, 6, 4, 2, true, true), 2);
  EXPECT_NO_THROW(check_attention_config(ok, 16));
  for (int stored : {1, -1}) {
    const AttentionConfig bad = with_stored_heads(ok, stored);
    try {
      check_attention_config(bad, 16);
      ADD_FAILURE() << "stored_heads=" << stored << " < heads=2 accepted";
    } catch (const UsageError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("stored_heads=" + std::to_string(stored)), std::string::npos) << what;
      EXPECT_NE(what.find("heads=2"), std::string::npos) << what;
    }
    std::vector<float> out(2 * 16 * 8);
    AttentionCache cache;
    Layer l(cpu_backend(), ok, 2, 16, 150);  // parameters of 2 heads, a config that claims 1
    EXPECT_THROW(attention_forward(out.data(), cache, l.u.data(), l.params(), bad, 2, 16),
                 UsageError);
  }
}

// ---------------------------------------------------------------------------------------------
// 6. Long sequences: O(n·(w + n·r/l)) time and memory, no n×n matrix anywhere.

TEST_P(Attention, LongShortTrainsAtLength8192) {
  const int64_t n = 8192;
  Layer l(backend(), long_short(32, 2, 16, 512, 16, 1, true, true), 1, n, 100);
  const auto start = std::chrono::steady_clock::now();
  Grads g = run_backward(l);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("long_short n=8192 w=512 l=16 r=1 d=32 H=2: forward+backward %.3f s\n", seconds);
  // Stored probabilities: per query at most its block's w+31 window and n/l compressed keys
  // (the CPU cache's layout; another backend's cache is its own).
  if (device() == Device::Cpu) {
    EXPECT_LE(int64_t(l.cache.probs.size()), 2 * n * (512 + 32 + n / 16));
    EXPECT_LT(int64_t(l.cache.probs.size()), n * n / 4);
  }
  double sum_abs = 0;
  for (float x : g.du) {
    ASSERT_TRUE(std::isfinite(x));
    sum_abs += std::fabs(x);
  }
  for (float x : l.out) ASSERT_TRUE(std::isfinite(x));
  EXPECT_GT(sum_abs, 0.0);
  double proj_abs = 0;
  for (float x : g.proj_weight) proj_abs += std::fabs(x);
  EXPECT_GT(proj_abs, 0.0);  // the far past is reached through the compressed keys
}

// Reference-size timing (not a correctness test): run with --gtest_also_run_disabled_tests;
// HG_BENCH_BF16=1 runs it at bf16, HG_BENCH_REPS=N repeats it N times (5) for a profiler.
TEST(AttentionCpu, DISABLED_BenchReferenceSize) {
  MatmulPrecisionScope precision(std::getenv("HG_BENCH_BF16") ? MatmulPrecision::Bf16
                                                              : MatmulPrecision::Fp32);
  for (int64_t n : {int64_t(768), int64_t(256)}) {
    Layer l(cpu_backend(), long_short(256, 4, 64, 128, 16, 1, true, true), 8, n, 110);
    run_backward(l);  // warm up: caches and workspaces allocated
    const int reps = std::getenv("HG_BENCH_REPS") ? std::atoi(std::getenv("HG_BENCH_REPS")) : 5;
    double best = 1e30;
    for (int rep = 0; rep < reps; ++rep) {
      Grads g(l);
      const auto start = std::chrono::steady_clock::now();
      attention_forward(l.out.data(), l.cache, l.u.data(), l.params(), l.cfg, l.B, l.n);
      const auto mid = std::chrono::steady_clock::now();
      attention_backward(g.du.data(), g.params(), l.R.data(), l.cache, l.u.data(), l.params(),
                         l.cfg, l.B, l.n);
      const auto end = std::chrono::steady_clock::now();
      const double f = std::chrono::duration<double>(mid - start).count();
      const double b = std::chrono::duration<double>(end - mid).count();
      std::printf("n=%lld forward %.1f ms backward %.1f ms\n", (long long)n, f * 1e3, b * 1e3);
      best = std::min(best, f + b);
    }
    std::printf("B=8 n=%lld d=256 H=4 w=128 l=16 r=1: best forward+backward %.1f ms\n",
                (long long)n, best * 1e3);
  }
}

}  // namespace
}  // namespace hg
