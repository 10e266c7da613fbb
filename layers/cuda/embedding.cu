// Token embedding on the device (layers/embedding.h): a row gather, and its scatter-add backward.
// Compiled, not run (no GPU on this project's machines).
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "layers/cuda/ops.h"

namespace hg::cuda {

namespace {

// One thread per output element (grid-stride): consecutive threads copy consecutive columns of a
// row, so both the gather and the store are coalesced.
__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* weight,
                                         int64_t rows, int d) {
  const int64_t n = rows * d;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / d, c = i % d;
    out[i] = weight[static_cast<int64_t>(tokens[r]) * d + c];
  }
}

// Backward: deterministic and sort-free, NOT atomicAdd. With atomics the order in which repeated
// tokens add into a row of dweight depends on scheduling, so float sums (and the whole training
// run after them) would change from run to run; the project promises bit-identical results (same
// losses across layouts, bit-exact resume), so each dweight element has exactly one owner thread
// that adds its rows in row order -- the CPU layer's order, hence the same bits as the CPU.
//
// Owner of dweight[v, c]: thread (column c, bucket v mod kBuckets). Grid (ceil(d/256),
// kBuckets), 256 columns per block: every thread walks all rows and adds the ones whose token
// falls in its bucket. The bucket test is the same for a whole warp (one blockIdx.y), so there is
// no divergence and the token load is a broadcast; the matching dout rows are read coalesced.
// Parallelism d · kBuckets (24k threads for d = 768) instead of d for one column per thread, at
// the price of every thread scanning all `rows` tokens (cheap next to the head's gemm). Skewed
// token frequencies (bytes: spaces, 'e') load buckets unevenly. Not measured (no GPU).
constexpr int kBuckets = 32;

__global__ void embedding_backward_kernel(float* dweight, const float* dout, const int32_t* tokens,
                                          int64_t rows, int d) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int32_t bucket = static_cast<int32_t>(blockIdx.y);
  if (c >= d) return;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t v = tokens[r];
    if (v % kBuckets != bucket) continue;  // tokens are in [0, V): v % kBuckets >= 0
    dweight[static_cast<int64_t>(v) * d + c] += dout[r * d + c];
  }
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* weight, int64_t rows,
                       int d) {
  if (rows == 0) return;
  embedding_forward_kernel<<<grid_for(rows * d), kThreads>>>(out, tokens, weight, rows, d);
  check_launch("embedding_forward_kernel");
}

void embedding_backward(float* dweight, const float* dout, const int32_t* tokens, int64_t rows,
                        int d) {
  if (rows == 0) return;
  const dim3 grid(static_cast<unsigned>((d + kThreads - 1) / kThreads), kBuckets);
  embedding_backward_kernel<<<grid, kThreads>>>(dweight, dout, tokens, rows, d);
  check_launch("embedding_backward_kernel");
}

}  // namespace hg::cuda
