// Error checks and launch shapes shared by the CUDA backend's .cu files (not its public interface:
// it includes <cuda_runtime.h>, which host-only code including device.h does not need).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/cuda/launch.cuh"

namespace hg::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// After a kernel launch: reports a bad launch configuration at once. cudaGetLastError does not
// wait for the kernel, so ops stay asynchronous; a fault inside a kernel surfaces at the next
// synchronising call (a copy to the host, in the tests).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// The launcher of the kernel headers' launch plans (launch.cuh) in a .cu file: a real launch on
// the default stream, then check_launch. Arguments convert to the kernel's parameter types.
#ifdef __CUDACC__
struct DeviceLaunch {
  template <class... P, class... A>
  void operator()(const char* kernel_name, void (*kernel)(P...), dim3 grid, dim3 block,
                  size_t shared_bytes, A&&... args) const {
    kernel<<<grid, block, shared_bytes>>>(std::forward<A>(args)...);
    check_launch(kernel_name);
  }
};
#endif

}  // namespace hg::cuda
