// Inverted dropout on the device (layers/dropout.h); the kernel is in dropout_kernels.cuh.
// Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/dropout_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void dropout_apply(float* x, uint64_t key, uint32_t step, uint32_t first_sample, uint32_t site,
                   float p, int64_t B, int64_t per_sample) {
  launch_dropout(DeviceLaunch{}, x, key, step, first_sample, site, p, 1.0f / (1.0f - p), B,
                 per_sample);
}

}  // namespace hg::cuda
