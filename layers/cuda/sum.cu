// Whole-buffer sums in double with a host result (Backend::sum, sum_squares; the cross-entropy
// loss sum): the loss line and the gradient norm. COMPILED, NOT RUN (no GPU on this project's
// machines).
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "layers/cuda/ops.h"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {

namespace {

// Two passes, no atomics, so the order of summation depends on n alone and the result is the
// same bits on every run. Pass 1: a FIXED grid of kPartials blocks × 256 threads; thread t of
// block b sums elements b·256 + t, then every kPartials·256 after it, in double, and
// block_reduce combines the block's threads in warp order into partials[b]. Pass 2: one block
// adds the kPartials partials in block_reduce's order. 264 blocks fill an H100's 132 SMs twice
// for the large buffers (the gradient norm over every parameter); small buffers leave most
// threads idle, which costs microseconds. A fixed grid (not grid_for(n)) is what keeps the
// order independent of the device. Not measured (no GPU).
constexpr int kPartials = 264;
__device__ double partials[kPartials];
__device__ double total;

template <bool kSquares>
__global__ void partial_sums_kernel(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(kPartials) * blockDim.x) {
    const double v = x[i];
    s += kSquares ? v * v : v;  // the square in double, as the CPU's sum_squares
  }
  s = block_reduce(s, SumOp{});
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// 288 threads: kPartials rounded up to whole warps, one partial per thread.
constexpr int kFinalThreads = (kPartials + kWarp - 1) / kWarp * kWarp;
__global__ void total_kernel() {
  double s = threadIdx.x < kPartials ? partials[threadIdx.x] : 0.0;
  s = block_reduce(s, SumOp{});
  if (threadIdx.x == 0) total = s;
}

template <bool kSquares>
double reduce_to_host(const float* x, int64_t n, const char* what) {
  if (n == 0) return 0.0;
  partial_sums_kernel<kSquares><<<kPartials, kThreads>>>(x, n);
  check_launch(what);
  total_kernel<<<1, kFinalThreads>>>();
  check_launch(what);
  // The synchronisation the contract asks for: the sum is a host value. (One __device__ slot
  // set: calls from several host threads at once would race on it; the backend is used from
  // one thread, cuda_backend.h.)
  double result = 0.0;
  check(cudaMemcpyFromSymbol(&result, total, sizeof result), what);
  return result;
}

}  // namespace

double sum(const float* x, int64_t n) { return reduce_to_host<false>(x, n, "sum"); }
double sum_squares(const float* x, int64_t n) { return reduce_to_host<true>(x, n, "sum_squares"); }

}  // namespace hg::cuda
