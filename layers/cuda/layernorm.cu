// LayerNorm forward/backward on the device (layers/layernorm.h): the kernels and their launch
// plans are in layernorm_kernels.cuh. Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/layernorm_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int64_t rows, int groups, int C) {
  launch_layernorm_forward(DeviceLaunch{}, out, mean, rstd, inp, gain, bias, rows, groups, C);
}

void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int64_t rows, int groups, int C) {
  launch_layernorm_backward(DeviceLaunch{}, dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows,
                            groups, C);
}

}  // namespace hg::cuda
