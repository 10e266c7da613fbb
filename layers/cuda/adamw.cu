// AdamW step on the device (layers/adamw.h); the kernel is in adamw_kernels.cuh. Compiled,
// not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/adamw_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void adamw_step(float* value, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                const AdamWScalars& k, bool decay) {
  launch_adamw_step(DeviceLaunch{}, value, grad, exp_avg, exp_avg_sq, n, k, decay);
}

}  // namespace hg::cuda
