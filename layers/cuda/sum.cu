// Whole-buffer sums in double with a host result (Backend::sum, sum_squares); kernels in
// sum_kernels.cuh. COMPILED, NOT RUN (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/ops.h"
#include "layers/cuda/sum_kernels.cuh"

namespace hg::cuda {

namespace {

template <bool kSquares>
double reduce_to_host(const float* x, int64_t n, const char* what) {
  if (n == 0) return 0.0;
  launch_sum<kSquares>(DeviceLaunch{}, x, n);
  // The synchronisation the contract asks for: the sum is a host value. (One __device__ slot
  // set: calls from several host threads at once would race on it; the backend is used from
  // one thread, cuda_backend.h.)
  double result = 0.0;
  check(cudaMemcpyFromSymbol(&result, sum_total, sizeof result), what);
  return result;
}

}  // namespace

double sum(const float* x, int64_t n) { return reduce_to_host<false>(x, n, "sum"); }
double sum_squares(const float* x, int64_t n) { return reduce_to_host<true>(x, n, "sum_squares"); }

}  // namespace hg::cuda
