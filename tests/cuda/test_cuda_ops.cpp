// The CUDA kernels that are not Backend ops (cuBLAS gemm, the FFN activations, DConv) against
// their CPU twins, and NCCL. The Backend's ops are tested on every backend in tests/layers (one
// operation suite). Every device test skips when no device exists -- always, on this project's
// machines: these tests compile in CI and have NEVER RUN. A first run on a GPU may show a
// tolerance that needs a look before any op is trusted.
//
// Tolerances are |got - want| <= atol + rtol·|want|. Float32 unit roundoff is u = 6e-8; where
// the two sides sum in different orders (warp butterflies vs the CPU's 16 lanes or row chunks)
// or contract a·b + c into an FMA differently, results differ by a few ulp of the terms, and each
// tolerance below is ten or more times that estimate.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/cuda/device.h"
#include "core/gemm.h"
#include "layers/activation.h"
#include "layers/backend.h"
#include "layers/cuda/ops.h"
#include "layers/dconv.h"
#include "parallel/nccl_comm.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_close;

#define SKIP_WITHOUT_DEVICE()                                    \
  do {                                                           \
    const std::string reason = unavailable_reason(Device::Cuda); \
    if (!reason.empty()) GTEST_SKIP() << reason;                 \
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
  dconv_forward(out.data(), inp.data(), taps.data(), B, n, C, C);
  dconv_backward(dinp.data(), dtaps.data(), dout.data(), inp.data(), taps.data(), B, n, C, C);

  DeviceFloats d_inp(inp), d_taps(taps), d_dout(dout), d_dtaps(dtaps0),
      d_out{std::vector<float>(total)}, d_dinp{std::vector<float>(total, 7.0f)};
  cuda::dconv_forward(d_out.get(), d_inp.get(), d_taps.get(), B, n, C, C);
  cuda::dconv_backward(d_dinp.get(), d_dtaps.get(), d_dout.get(), d_inp.get(), d_taps.get(), B, n,
                       C, C);
  expect_close("out", d_out.to_host(), out, 1e-6, 1e-5);
  expect_close("dinp", d_dinp.to_host(), dinp, 1e-6, 1e-5);
  expect_close("dtaps (+=)", d_dtaps.to_host(), dtaps, 5e-5, 1e-5);
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
