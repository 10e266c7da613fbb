// Shortening and upsampling on the device (layers/resample.h); kernels and the linear pool and
// upsampler in resample_kernels.cuh. Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "core/cuda/device.h"
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
void pool_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                         int64_t B, int64_t n, int d, int k) {
  run_pool_linear(DeviceLaunch{}, gemm, out, inp, weight, bias, B, n, d, k);
}
void pool_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, int64_t B, int64_t n, int d,
                          int k) {
  run_pool_linear_backward(DeviceLaunch{}, gemm, dinp, dweight, dbias, dout, inp, weight, B, n, d,
                           k);
}
void upsample_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                             int64_t B, int64_t m, int d, int k) {
  run_upsample_linear(DeviceLaunch{}, gemm, out, inp, weight, bias, B, m, d, k);
}
void upsample_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                              const float* inp, const float* weight, int64_t B, int64_t m, int d,
                              int k) {
  run_upsample_linear_backward(DeviceLaunch{}, gemm, dinp, dweight, dbias, dout, inp, weight, B, m,
                               d, k);
}
void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d, int k) {
  launch_upsample_repeat(DeviceLaunch{}, false, out, inp, B, m, d, k);
}
void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d, int k) {
  launch_upsample_repeat(DeviceLaunch{}, true, dinp, dout, B, m, d, k);
}

}  // namespace hg::cuda
