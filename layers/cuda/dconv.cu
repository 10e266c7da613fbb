// Primer's causal depthwise convolution on the device (layers/dconv.h); kernels in
// dconv_kernels.cuh. Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/dconv_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C,
                   int64_t ldt) {
  launch_dconv_forward(DeviceLaunch{}, out, inp, taps, B, n, C, ldt);
}

void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C, int64_t ldt) {
  launch_dconv_backward(DeviceLaunch{}, dinp, dtaps, dout, inp, taps, B, n, C, ldt);
}

}  // namespace hg::cuda
