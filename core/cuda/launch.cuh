// What every kernel header (layers/cuda/*_kernels.cuh) includes: the CUDA runtime under nvcc, or
// nothing more under the CPU emulation of tests/cuda_emulation (which defines HG_CUDA_EMULATION,
// the builtins and dim3, and must be included first), so that the same kernel bodies compile
// both ways. Also the launch shapes shared by the element-wise kernels.
//
// A kernel header pairs each kernel with its launch plan, `template <class Launch> void
// launch_<op>(const Launch& launch, ...)`, which computes the grid and calls
// `launch(name, kernel, grid, block, shared_bytes, args...)`: check.h's DeviceLaunch (a real
// <<<>>> launch) in the .cu file, the emulation's hg::emu::Launch in the tests.
#pragma once
#if !defined(HG_CUDA_EMULATION) && !defined(__CUDACC__)
#error "kernel headers compile under nvcc, or under g++ after tests/cuda_emulation/cuda_emulation.h"
#endif
#ifndef HG_CUDA_EMULATION
#include <cuda_runtime.h>
// Dynamic shared memory of a launch, as an array of T (the emulation defines its own).
#define HG_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

#include <cmath>
#include <cstdint>

// Kernel headers put their code in `inline namespace HG_CUDA_KERNELS { namespace { ... } }`.
// The anonymous namespace gives each .cu file its own copy of the kernels it includes
// (linear.cu and elementwise.cu both launch the bias kernel) with no duplicate host stubs at
// link time (nvcc refuses an inline unnamed namespace around kernels, hence the named one).
// Under the emulation the name differs (`emulated`, `device` under nvcc), so the emulated twins
// never share a mangled name with the nvcc-compiled kernels that a test binary also links.
#ifdef HG_CUDA_EMULATION
#define HG_CUDA_KERNELS emulated
#else
#define HG_CUDA_KERNELS device
#endif

namespace hg::cuda {

// Element-wise kernels use 256-thread blocks (8 warps: enough to hide latency, small enough that
// several blocks share an SM) and a grid-stride loop, so the grid is capped and any n works.
constexpr int kThreads = 256;
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  constexpr int64_t kMaxBlocks = 1 << 16;  // 16M threads: every SM of an H100 full many times
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks < kMaxBlocks ? blocks : kMaxBlocks));
}

}  // namespace hg::cuda
