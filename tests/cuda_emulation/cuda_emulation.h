// A CPU emulation of CUDA's thread model, so that the kernel bodies nvcc compiles
// (layers/cuda/*_kernels.cuh) are also compiled by g++ and run here, where no GPU exists
// (docs/cuda.md). Include this header BEFORE any kernel header.
//
// What it models: a launch runs its blocks one after another; each block's threads are
// cooperative fibers on the calling OS thread, so a `__shared__` variable (a function-local
// static here) is shared by the block's threads, and `__syncthreads()` is a real barrier: a thread
// stops there until every thread of its block has arrived. Warp shuffles are a barrier and an
// exchange among the lanes of the warp named in the mask. Dynamic shared memory
// (HG_DYNAMIC_SHARED) is a per-block buffer filled with 0xFF bytes (NaN as floats), so a read
// before any write shows. Misuse that costs nothing to detect fails the launch with an exception
// naming the thread: a thread that exits while others wait at a barrier, a barrier no thread can
// leave (deadlock), a shuffle whose mask names an absent or exited lane, lanes of one warp in
// different shuffles, more than 1024 threads or 48 KiB of dynamic shared memory per block, a
// grid beyond CUDA's limits.
//
// What it does NOT model (this is not a GPU): no memory model (every thread sees every store at
// once), no timing, no races beyond the barriers (two threads writing one address in the same
// phase are not detected), no FMA contraction rules or device math libraries (expf here is the
// host libm's), no streams, no device memory (kernels get host pointers), no limits on registers.
#pragma once
#define HG_CUDA_EMULATION 1

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>

// ---- the language extensions ---------------------------------------------------------------
// inline, not static: a kernel header included by several test files defines each kernel once
// (and `__device__` variables become C++17 inline variables).
#define __global__ inline
#define __device__ inline
#define __host__
#define __forceinline__
// A function-local static is one object for all the fibers of the block (and reused by the next
// block, as a GPU reuses shared memory, with no guarantee of its contents).
#define __shared__ static
#define HG_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::hg::emu::dynamic_shared_memory())

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace hg::emu {

// The running fiber's coordinates (valid only inside a launch).
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
int lane_id();  // linear thread index mod 32
void syncthreads();
// Waits until every lane of `mask` (in this thread's warp) has called it, then returns the bits
// lane `src_lane` passed (src_lane in this warp and in mask). Checks lane existence and mask.
uint64_t warp_exchange(unsigned mask, uint64_t bits, int src_lane);
void* dynamic_shared_memory();
// Runs body once per thread of every block of the grid (blocks in order, each block's threads as
// fibers). Throws std::runtime_error on misuse (see above).
void run_grid(dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body);

template <class T>
T exchange(unsigned mask, T v, int src_lane) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  bits = warp_exchange(mask, bits, src_lane);
  T r;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}

// The first lane of this thread's `width`-lane segment (width a power of two <= 32).
int segment_base(int width);

// kernel<<<grid, block, shared_bytes>>>(args...): arguments are converted to the kernel's
// parameter types and copied once, as CUDA copies them into constant memory.
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
  const std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(args)...);
  run_grid(grid, block, shared_bytes, [&] { std::apply(kernel, params); });
}

// The launcher the kernel headers' launch plans take (the device one is core/cuda/check.h's
// DeviceLaunch): the same call, the kernel's name unused.
struct Launch {
  template <class... P, class... A>
  void operator()(const char*, void (*kernel)(P...), dim3 grid, dim3 block, size_t shared_bytes,
                  A&&... args) const {
    launch(kernel, grid, block, shared_bytes, std::forward<A>(args)...);
  }
};

}  // namespace hg::emu

#define threadIdx (::hg::emu::thread_idx())
#define blockIdx (::hg::emu::block_idx())
#define blockDim (::hg::emu::block_dim())
#define gridDim (::hg::emu::grid_dim())

inline void __syncthreads() { ::hg::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::hg::emu::exchange(mask, 0, ::hg::emu::lane_id());
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return ::hg::emu::exchange(mask, v, ::hg::emu::segment_base(width) + src_lane % width);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ::hg::emu::lane_id(), base = ::hg::emu::segment_base(width);
  const int src = lane ^ lane_mask;
  return ::hg::emu::exchange(mask, v, src >= base && src < base + width ? src : lane);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::hg::emu::lane_id(), base = ::hg::emu::segment_base(width);
  const int src = lane + static_cast<int>(delta);
  return ::hg::emu::exchange(mask, v, src < base + width ? src : lane);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::hg::emu::lane_id(), base = ::hg::emu::segment_base(width);
  const int src = lane - static_cast<int>(delta);
  return ::hg::emu::exchange(mask, v, src >= base ? src : lane);
}
// Device intrinsics the kernels use, as host math (not bit-equal to the device's).
inline float __expf(float x) { return std::exp(x); }
