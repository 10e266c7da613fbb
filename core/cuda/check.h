// Error checks and launch shapes shared by the CUDA backend's .cu files (not its public interface:
// it includes <cuda_runtime.h>, which host-only code including device.h does not need).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace hg::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// After a kernel launch: reports a bad launch configuration at once. cudaGetLastError does not
// wait for the kernel, so ops stay asynchronous; a fault inside a kernel surfaces at the next
// synchronising call (a copy to the host, in the tests).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// Element-wise kernels use 256-thread blocks (8 warps: enough to hide latency, small enough that
// several blocks share an SM) and a grid-stride loop, so the grid is capped and any n works.
constexpr int kThreads = 256;
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  constexpr int64_t kMaxBlocks = 1 << 16;  // 16M threads: every SM of an H100 full many times
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks < kMaxBlocks ? blocks : kMaxBlocks));
}

}  // namespace hg::cuda
