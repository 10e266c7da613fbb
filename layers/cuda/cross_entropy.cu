// Softmax cross-entropy on the device (layers/cross_entropy.h); kernels in
// cross_entropy_kernels.cuh. Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/cross_entropy_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                           int V) {
  launch_cross_entropy_forward(DeviceLaunch{}, losses, logits, targets, rows, V);
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int V) {
  launch_cross_entropy_backward(DeviceLaunch{}, dlogits, logits, targets, scale, rows, V);
}

}  // namespace hg::cuda
