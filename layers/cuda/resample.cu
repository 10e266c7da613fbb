// ShiftRight, average pooling and repeat upsampling on the device (layers/resample.h); kernels
// in resample_kernels.cuh. Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/ops.h"
#include "layers/cuda/resample_kernels.cuh"

namespace hg::cuda {

void shift_right_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int s) {
  launch_shift_right(DeviceLaunch{}, false, out, inp, B, n, d, s);
}
void shift_right_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int s) {
  launch_shift_right(DeviceLaunch{}, true, dinp, dout, B, n, d, s);
}
void pool_avg_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int k) {
  launch_pool_avg(DeviceLaunch{}, false, out, inp, B, n, d, k);
}
void pool_avg_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int k) {
  launch_pool_avg(DeviceLaunch{}, true, dinp, dout, B, n, d, k);
}
void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d, int k) {
  launch_upsample_repeat(DeviceLaunch{}, false, out, inp, B, m, d, k);
}
void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d, int k) {
  launch_upsample_repeat(DeviceLaunch{}, true, dinp, dout, B, m, d, k);
}

}  // namespace hg::cuda
