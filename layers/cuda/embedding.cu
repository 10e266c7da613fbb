// Token embedding on the device (layers/embedding.h); kernels in embedding_kernels.cuh.
// Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/embedding_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void embedding_forward(float* out, const int32_t* tokens, const float* weight, int64_t rows,
                       int d) {
  launch_embedding_forward(DeviceLaunch{}, out, tokens, weight, rows, d);
}

void embedding_backward(float* dweight, const float* dout, const int32_t* tokens, int64_t rows,
                        int d) {
  launch_embedding_backward(DeviceLaunch{}, dweight, dout, tokens, rows, d);
}

}  // namespace hg::cuda
