#include "core/elementwise.h"

#include "core/bulk_memory.h"

namespace hg {

// Small buffers stay on one thread: waking a team costs more than adding a few thousand floats.
static constexpr int64_t kParallelThreshold = 1 << 15;

void add_into(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void copy(float* out, const float* x, int64_t n) { copy_bytes(out, x, sizeof(float) * n); }

void scale_inplace(float* y, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

double sum_squares(const float* x, int64_t n) {
  // Serial on purpose: the grad-norm must not depend on the thread count.
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

}  // namespace hg
