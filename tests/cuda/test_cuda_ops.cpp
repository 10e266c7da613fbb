// The CUDA backend's ops against the CPU layers: same random inputs, forward and backward, within
// tolerances justified at each test. Every test skips when no device exists -- always, on this
// project's machines: these tests compile in CI and have NEVER RUN. A first run on a GPU may show
// a tolerance that needs a look before any op is trusted.
//
// Tolerances are |got - want| <= atol + rtol·|want|. Float32 unit roundoff is u = 6e-8; where
// the two sides sum in different orders (warp butterflies vs the CPU's 16 lanes or row chunks)
// or contract a·b + c into an FMA differently, results differ by a few ulp of the terms, and each
// tolerance below is ten or more times that estimate.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/cuda/device.h"
#include "core/gemm.h"
#include "layers/activation.h"
#include "layers/cross_entropy.h"
#include "layers/cuda/ops.h"
#include "layers/dconv.h"
#include "layers/embedding.h"
#include "layers/layernorm.h"
#include "model/params.h"
#include "parallel/nccl_comm.h"
#include "tests/support/gradcheck.h"
#include "trainer/config.h"
#include "trainer/optimizer.h"

namespace hg {
namespace {

#define SKIP_WITHOUT_DEVICE()                                                           \
  do {                                                                                  \
    std::string reason;                                                                 \
    if (cuda::device_count(&reason) == 0) GTEST_SKIP() << "no CUDA device: " << reason; \
  } while (0)

// A device copy of a host vector, freed at scope exit.
class DeviceFloats {
 public:
  explicit DeviceFloats(const std::vector<float>& host)
      : n_(static_cast<int64_t>(host.size())), p_(cuda::device_alloc(n_)) {
    cuda::copy_to_device(p_, host.data(), n_);
  }
  ~DeviceFloats() { cuda::device_free(p_); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  float* get() const { return p_; }
  std::vector<float> to_host() const {  // synchronises (cudaMemcpy)
    std::vector<float> host(static_cast<size_t>(n_));
    cuda::copy_to_host(host.data(), p_, n_);
    return host;
  }

 private:
  int64_t n_;
  float* p_;
};

class DeviceTokens {
 public:
  explicit DeviceTokens(const std::vector<int32_t>& host)
      : p_(cuda::device_alloc_int32(static_cast<int64_t>(host.size()))) {
    cuda::copy_to_device(p_, host.data(), static_cast<int64_t>(host.size()));
  }
  ~DeviceTokens() { cuda::device_free(p_); }
  DeviceTokens(const DeviceTokens&) = delete;
  DeviceTokens& operator=(const DeviceTokens&) = delete;
  const int32_t* get() const { return p_; }

 private:
  int32_t* p_;
};

// One failure per buffer, naming the mismatch count and the worst index (not one per element).
void expect_close(const std::string& what, const std::vector<float>& got,
                  const std::vector<float>& want, double atol, double rtol) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double excess = err - (atol + rtol * std::fabs(static_cast<double>(want[i])));
    if (excess > 0.0 || std::isnan(got[i]) != std::isnan(want[i])) {
      ++bad;
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " values outside atol "
                    << atol << " + rtol " << rtol << "; worst at " << worst << ": got "
                    << (worst >= 0 ? got[worst] : 0.0f) << ", want "
                    << (worst >= 0 ? want[worst] : 0.0f);
}

std::vector<int32_t> random_tokens(int64_t n, int V, uint64_t seed) {
  const auto u = testing::random_vector(n, seed);  // [-1, 1)
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    // Squared: low ids repeat far more often than high ones, like bytes of text, so the
    // embedding backward sees many repeated rows.
    const double x = 0.5 * (u[i] + 1.0);
    t[i] = static_cast<int32_t>(x * x * V) % V;
  }
  return t;
}

TEST(CudaGemm, MatchesCpuGemm) {
  SKIP_WITHOUT_DEVICE();
  const int64_t M = 33, N = 17, K = 65;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto A = testing::random_vector(M * K, 1), B = testing::random_vector(K * N, 2);
      std::vector<float> expected(M * N), got(M * N);
      int64_t lda = ta ? M : K, ldb = tb ? K : N;
      gemm(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, expected.data(), N);
      float *dA = cuda::device_alloc(M * K), *dB = cuda::device_alloc(K * N),
            *dC = cuda::device_alloc(M * N);
      cuda::copy_to_device(dA, A.data(), M * K);
      cuda::copy_to_device(dB, B.data(), K * N);
      cuda::gemm(ta, tb, M, N, K, 1.0f, dA, lda, dB, ldb, 0.0f, dC, N);
      cuda::copy_to_host(got.data(), dC, M * N);
      for (int64_t i = 0; i < M * N; ++i) EXPECT_NEAR(got[i], expected[i], 1e-4);
      cuda::device_free(dA);
      cuda::device_free(dB);
      cuda::device_free(dC);
    }
}

// Plain (groups 1) and grouped (per-head) forms; C values not multiples of 32 exercise the
// warps' tails. Inputs sit around +2 (|mean| > std) so a one-pass variance would show.
//   forward: mean and variance are sums of C <= 67 values of size ~2 in different orders, a few
//   ulp apart (~1e-6); out ~ |norm·gain + bias| <= ~6 -> atol 1e-5 + rtol 1e-5.
//   dinp: the same two row sums, times rstd ~ 1.7 -> atol 1e-5 + rtol 1e-5.
//   dgain, dbias: sums over 45 rows of terms <= ~3 (plus the random start value) in different
//   orders, ~1e-6 -> atol 5e-5 + rtol 1e-5.
TEST(CudaLayerNorm, MatchesCpuForwardAndBackward) {
  SKIP_WITHOUT_DEVICE();
  const int64_t rows = 45;
  const int shapes[][2] = {{1, 67}, {3, 20}, {4, 64}};  // {groups, C}
  for (const auto& shape : shapes) {
    const int groups = shape[0], C = shape[1];
    const int64_t width = static_cast<int64_t>(groups) * C, n = rows * width;
    const std::string what = "groups " + std::to_string(groups) + " C " + std::to_string(C);
    auto inp = testing::random_vector(n, 11);
    for (auto& x : inp) x += 2.0f;
    auto gain = testing::random_vector(width, 12, 0.5f);
    for (auto& w : gain) w += 1.0f;
    const auto bias = testing::random_vector(width, 13);
    const auto dout = testing::random_vector(n, 14);
    const auto dgain0 = testing::random_vector(width, 15),
               dbias0 = testing::random_vector(width, 16);

    std::vector<float> out(n), mean(rows * groups), rstd(rows * groups), dinp(n);
    std::vector<float> dgain = dgain0, dbias = dbias0;
    layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), gain.data(), bias.data(),
                      rows, groups, C);
    layernorm_backward(dinp.data(), dgain.data(), dbias.data(), dout.data(), inp.data(),
                       gain.data(), mean.data(), rstd.data(), rows, groups, C);

    DeviceFloats d_inp(inp), d_gain(gain), d_bias(bias), d_dout(dout), d_dgain(dgain0),
        d_dbias(dbias0);
    DeviceFloats d_out{std::vector<float>(n)}, d_mean{std::vector<float>(rows * groups)},
        d_rstd{std::vector<float>(rows * groups)}, d_dinp{std::vector<float>(n, 7.0f)};
    cuda::layernorm_forward(d_out.get(), d_mean.get(), d_rstd.get(), d_inp.get(), d_gain.get(),
                            d_bias.get(), rows, groups, C);
    cuda::layernorm_backward(d_dinp.get(), d_dgain.get(), d_dbias.get(), d_dout.get(), d_inp.get(),
                             d_gain.get(), d_mean.get(), d_rstd.get(), rows, groups, C);
    expect_close(what + " out", d_out.to_host(), out, 1e-5, 1e-5);
    expect_close(what + " mean", d_mean.to_host(), mean, 1e-5, 1e-5);
    expect_close(what + " rstd", d_rstd.to_host(), rstd, 1e-5, 1e-5);
    expect_close(what + " dinp", d_dinp.to_host(), dinp, 1e-5, 1e-5);
    expect_close(what + " dgain (+=)", d_dgain.to_host(), dgain, 5e-5, 1e-5);
    expect_close(what + " dbias (+=)", d_dbias.to_host(), dbias, 5e-5, 1e-5);
  }
}

// relu2 is bit-identical: relu, one product r·r forward and (2·r)·dout backward, all exactly
// rounded and with no add that an FMA could absorb, on both sides. gelu: the CPU's exp_approx
// and CUDA's expf are each within 2 ulp, so σ(2u) differs by a few ulp (~5e-7 relative) and so do
// its products; inputs in [-3, 3) -> atol 1e-6 + rtol 1e-5. The backward is also run in place
// (dinp = dout), which the contract allows.
TEST(CudaActivation, MatchesCpuForwardAndBackward) {
  SKIP_WITHOUT_DEVICE();
  const int64_t n = 10007;  // not a multiple of the block
  const auto inp = testing::random_vector(n, 21, 3.0f);
  const auto dout = testing::random_vector(n, 22);
  const struct {
    Activation cpu;
    cuda::Activation gpu;
    const char* name;
    double atol, rtol;
  } cases[] = {{Activation::Relu2, cuda::Activation::Relu2, "relu2", 0.0, 0.0},
               {Activation::Gelu, cuda::Activation::Gelu, "gelu", 1e-6, 1e-5}};
  for (const auto& k : cases) {
    std::vector<float> out(n), dinp(n);
    activation_forward(out.data(), inp.data(), n, k.cpu);
    activation_backward(dinp.data(), dout.data(), inp.data(), n, k.cpu);
    DeviceFloats d_inp(inp), d_out{std::vector<float>(n)}, d_grad(dout);
    cuda::activation_forward(d_out.get(), d_inp.get(), n, k.gpu);
    cuda::activation_backward(d_grad.get(), d_grad.get(), d_inp.get(), n, k.gpu);  // in place
    expect_close(std::string(k.name) + " out", d_out.to_host(), out, k.atol, k.rtol);
    expect_close(std::string(k.name) + " dinp", d_grad.to_host(), dinp, k.atol, k.rtol);
  }
}

// Byte-sized and larger vocabularies (V not a multiple of the 256-thread block), logits in
// [-4, 4). Both sides take exp within 2 ulp per term and sum in double, so log Σ differs by
// ~1e-7 and the float loss (~log V ~ 6) by an ulp or two -> losses atol 1e-5 + rtol 1e-5; their
// sum over 19 rows within 19·1e-5. dlogits = scale·p (relative error a few ulp) except at the
// target, scale·(p - 1), whose error is a few ulp of scale -> atol 1e-5·scale + rtol 1e-5. The
// backward is run once out of place and once in place (dlogits = logits).
TEST(CudaCrossEntropy, MatchesCpuForwardAndBackward) {
  SKIP_WITHOUT_DEVICE();
  const int64_t rows = 19;
  for (int V : {257, 1000}) {
    const std::string what = "V " + std::to_string(V);
    const auto logits = testing::random_vector(rows * V, 31, 4.0f);
    const auto targets = random_tokens(rows, V, 32);
    const float scale = 1.0f / static_cast<float>(rows);
    std::vector<float> losses(rows), dlogits(rows * V);
    cross_entropy_forward(losses.data(), logits.data(), targets.data(), rows, V);
    cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), scale, rows, V);
    double loss_sum = 0.0;
    for (float l : losses) loss_sum += l;

    DeviceFloats d_logits(logits), d_losses{std::vector<float>(rows)},
        d_dlogits{std::vector<float>(rows * V, 7.0f)}, d_inplace(logits);
    DeviceTokens d_targets(targets);
    cuda::cross_entropy_forward(d_losses.get(), d_logits.get(), d_targets.get(), rows, V);
    const double d_loss_sum = cuda::cross_entropy_loss_sum(d_losses.get(), rows);
    cuda::cross_entropy_backward(d_dlogits.get(), d_logits.get(), d_targets.get(), scale, rows, V);
    cuda::cross_entropy_backward(d_inplace.get(), d_inplace.get(), d_targets.get(), scale, rows, V);
    expect_close(what + " losses", d_losses.to_host(), losses, 1e-5, 1e-5);
    EXPECT_NEAR(d_loss_sum, loss_sum, rows * 1e-5) << what;
    expect_close(what + " dlogits", d_dlogits.to_host(), dlogits, 1e-5 * scale, 1e-5);
    expect_close(what + " dlogits in place", d_inplace.to_host(), dlogits, 1e-5 * scale, 1e-5);
  }
}

// Bit-identical both ways: the forward copies rows; the backward gives each dweight element one
// owner thread that adds its rows in row order, the CPU layer's order (embedding.cu), onto the
// same starting values. Many repeated tokens (random_tokens is skewed); d = 300 spans two
// 256-column blocks.
TEST(CudaEmbedding, MatchesCpuForwardAndBackwardBitForBit) {
  SKIP_WITHOUT_DEVICE();
  const int V = 50, d = 300;
  const int64_t rows = 500;
  const auto weight = testing::random_vector(static_cast<int64_t>(V) * d, 41);
  const auto tokens = random_tokens(rows, V, 42);
  const auto dout = testing::random_vector(rows * d, 43);
  const auto dweight0 = testing::random_vector(static_cast<int64_t>(V) * d, 44);
  std::vector<float> out(rows * d), dweight = dweight0;
  embedding_forward(out.data(), tokens.data(), weight.data(), rows, d);
  embedding_backward(dweight.data(), dout.data(), tokens.data(), rows, d);

  DeviceFloats d_weight(weight), d_out{std::vector<float>(rows * d)}, d_dout(dout),
      d_dweight(dweight0);
  DeviceTokens d_tokens(tokens);
  cuda::embedding_forward(d_out.get(), d_tokens.get(), d_weight.get(), rows, d);
  cuda::embedding_backward(d_dweight.get(), d_dout.get(), d_tokens.get(), rows, d);
  expect_close("out", d_out.to_host(), out, 0.0, 0.0);
  expect_close("dweight (+=)", d_dweight.to_host(), dweight, 0.0, 0.0);
}

// Three sequences (the causal boundary at each start), C = 45 (a partial 32-column tile).
//   out, dinp: three products summed; an FMA may round differently on the two sides, an ulp or
//   two of terms <= ~1 -> atol 1e-6 + rtol 1e-5.
//   dtaps: sums over 111 rows of terms <= 1 (plus the random start value) in different orders,
//   ~1e-6 -> atol 5e-5 + rtol 1e-5.
TEST(CudaDConv, MatchesCpuForwardAndBackward) {
  SKIP_WITHOUT_DEVICE();
  const int64_t B = 3, n = 37;
  const int C = 45;
  const int64_t total = B * n * C;
  const auto inp = testing::random_vector(total, 51);
  const auto taps = testing::random_vector(3 * C, 52);
  const auto dout = testing::random_vector(total, 53);
  const auto dtaps0 = testing::random_vector(3 * C, 54);
  std::vector<float> out(total), dinp(total), dtaps = dtaps0;
  dconv_forward(out.data(), inp.data(), taps.data(), B, n, C);
  dconv_backward(dinp.data(), dtaps.data(), dout.data(), inp.data(), taps.data(), B, n, C);

  DeviceFloats d_inp(inp), d_taps(taps), d_dout(dout), d_dtaps(dtaps0),
      d_out{std::vector<float>(total)}, d_dinp{std::vector<float>(total, 7.0f)};
  cuda::dconv_forward(d_out.get(), d_inp.get(), d_taps.get(), B, n, C);
  cuda::dconv_backward(d_dinp.get(), d_dtaps.get(), d_dout.get(), d_inp.get(), d_taps.get(), B, n,
                       C);
  expect_close("out", d_out.to_host(), out, 1e-6, 1e-5);
  expect_close("dinp", d_dinp.to_host(), dinp, 1e-6, 1e-5);
  expect_close("dtaps (+=)", d_dtaps.to_host(), dtaps, 5e-5, 1e-5);
}

// Three updates of a matrix (decayed) and a bias (not) against trainer/optimizer.cpp's
// adamw_update, fresh gradients each step, lr 1e-2 so every step moves the values visibly. Same
// scalars, same statement order; only FMA contraction may differ, by an ulp or two per step:
//   exp_avg ~ 0.1, exp_avg_sq ~ 0.01 -> atol 1e-7 + rtol 1e-5;
//   value moves by <= ~lr per step with a ratio a few ulp apart -> atol 1e-6 + rtol 1e-5.
TEST(CudaAdamW, MatchesCpuOptimizerOverThreeSteps) {
  SKIP_WITHOUT_DEVICE();
  TrainConfig train;
  train.lr = 1e-2;
  ParamStore store;
  store.add("stacks/0/blocks/0/ffn/w1", {33, 17}, ParamInit::Normal, 0.02f);
  store.add("stacks/0/blocks/0/ffn/b1", {17}, ParamInit::Zero);
  ASSERT_TRUE(store.at("stacks/0/blocks/0/ffn/w1").decay);
  ASSERT_FALSE(store.at("stacks/0/blocks/0/ffn/b1").decay);
  uint64_t seed = 61;
  for (auto& [name, p] : store.all())
    testing::fill_uniform(p.value.data(), p.value.numel(), seed++);

  struct OnDevice {
    std::unique_ptr<DeviceFloats> value, grad, exp_avg, exp_avg_sq;
  };
  std::map<std::string, OnDevice> device;
  auto host = [](const Tensor& t) { return std::vector<float>(t.data(), t.data() + t.numel()); };
  for (auto& [name, p] : store.all()) {
    OnDevice& d = device[name];
    d.value = std::make_unique<DeviceFloats>(host(p.value));
    d.grad = std::make_unique<DeviceFloats>(host(p.grad));
    d.exp_avg = std::make_unique<DeviceFloats>(host(p.exp_avg));
    d.exp_avg_sq = std::make_unique<DeviceFloats>(host(p.exp_avg_sq));
  }
  const cuda::AdamWHyper hyper{train.beta1, train.beta2, train.eps, train.weight_decay};
  for (int64_t t = 1; t <= 3; ++t) {
    const double lr = learning_rate(train, t - 1);
    for (auto& [name, p] : store.all()) {
      testing::fill_uniform(p.grad.data(), p.grad.numel(), seed++);
      const int64_t n = p.value.numel();
      cuda::copy_to_device(device[name].grad->get(), p.grad.data(), n);
      OnDevice& d = device[name];
      cuda::adamw_step(d.value->get(), d.grad->get(), d.exp_avg->get(), d.exp_avg_sq->get(), n,
                       hyper, p.decay, t, lr);
    }
    adamw_update(store, train, t, lr);
  }
  for (auto& [name, p] : store.all()) {
    expect_close(name + " value", device[name].value->to_host(), host(p.value), 1e-6, 1e-5);
    expect_close(name + " exp_avg", device[name].exp_avg->to_host(), host(p.exp_avg), 1e-7, 1e-5);
    expect_close(name + " exp_avg_sq", device[name].exp_avg_sq->to_host(), host(p.exp_avg_sq), 1e-7,
                 1e-5);
  }
}

// Runs here, without a GPU: libnccl.so.2 loads (dlopen) and draws an id, which is all a rank
// needs before it broadcasts the id over MPI.
TEST(CudaNccl, LoadsAndDrawsUniqueId) {
  EXPECT_GE(cuda::nccl_version(), 20000);  // 2.x codes are major·10000 + minor·100 + patch
  const cuda::NcclId id = cuda::nccl_unique_id();
  bool any_set = false;
  for (char b : id.bytes) any_set = any_set || b != 0;
  EXPECT_TRUE(any_set);
}

// The all-reduce over every rank of the world (tests/cuda/CMakeLists.txt runs it under mpirun -np
// 2), one device per rank, id broadcast over MPI as the trainer will. Rank r contributes
// (r+1)·x with small integers x, so the sum ranks(ranks+1)/2 · x is exact in float32 whatever
// NCCL's reduction order: compared exactly.
TEST(CudaNcclMpi, AllReduceSumsOverRanks) {
  SKIP_WITHOUT_DEVICE();
  int ranks = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (cuda::device_count() < ranks)
    GTEST_SKIP() << ranks << " ranks need as many devices; " << cuda::device_count() << " found";
  cuda::select_device(rank);
  cuda::NcclId id{};
  if (rank == 0) id = cuda::nccl_unique_id();
  MPI_Bcast(id.bytes, sizeof id.bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
  cuda::NcclComm* comm = cuda::nccl_init(id, ranks, rank);
  const int64_t n = 1000;
  std::vector<float> mine(n), want(n);
  for (int64_t i = 0; i < n; ++i) {
    mine[i] = static_cast<float>((i % 7) * (rank + 1));
    want[i] = static_cast<float>((i % 7) * ranks * (ranks + 1) / 2);
  }
  DeviceFloats buf(mine);
  cuda::nccl_all_reduce_sum(comm, buf.get(), n);
  expect_close("all-reduced", buf.to_host(), want, 0.0, 0.0);  // to_host waits for the stream
  cuda::nccl_finalize(comm);
}

}  // namespace
}  // namespace hg
