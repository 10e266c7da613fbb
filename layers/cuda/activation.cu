// FFN activations on the device (layers/activation.h); kernels in activation_kernels.cuh.
// Compiled, not run (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/activation_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void activation_forward(float* out, const float* inp, int64_t n, Activation act) {
  launch_activation_forward(DeviceLaunch{}, out, inp, n, act == Activation::Relu2);
}

void activation_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                         Activation act) {
  launch_activation_backward(DeviceLaunch{}, dinp, dout, inp, n, act == Activation::Relu2);
}

}  // namespace hg::cuda
