// The emulation itself (cuda_emulation.h): barriers, shuffles, shared memory and the misuse it
// must turn into a failed launch instead of a hang. Kernels here are written as CUDA code.
#include <gtest/gtest.h>

// The emulation first, then the kernel headers that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "layers/cuda/reduce.cuh"
// clang-format on

// The emulation first: the kernel headers compile against it.
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace hg {
namespace {

using cuda::kFullMask;

// out[t] = what thread t+1 wrote to shared memory, read after the barrier (or, with_barrier false,
// before it: a planted missing-barrier bug).
__global__ void rotate_kernel(int* out, bool with_barrier) {
  __shared__ int slots[1024];
  const unsigned t = threadIdx.x;
  slots[t] = static_cast<int>(t + 1000 * blockIdx.x);
  if (with_barrier) __syncthreads();
  out[blockIdx.x * blockDim.x + t] = slots[(t + 1) % blockDim.x];
}

TEST(CudaEmulation, SyncthreadsIsABarrierOfTheBlock) {
  const unsigned blocks = 3, threads = 100;  // not a multiple of the warp
  std::vector<int> out(blocks * threads, -1);
  emu::launch(rotate_kernel, dim3(blocks), dim3(threads), 0, out.data(), true);
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t)
      EXPECT_EQ(out[b * threads + t], static_cast<int>((t + 1) % threads + 1000 * b));
}

// Fibers run in order: without the barrier thread 0 reads slot 1 before thread 1 has written
// it, so a missing barrier shows as a wrong value rather than passing by luck.
TEST(CudaEmulation, AMissingBarrierShowsAsAWrongValue) {
  std::vector<int> out(64, -1);
  emu::launch(rotate_kernel, dim3(1), dim3(64), 0, out.data(), false);
  int wrong = 0;
  for (unsigned t = 0; t < 64; ++t) wrong += out[t] != static_cast<int>((t + 1) % 64);
  EXPECT_GT(wrong, 0);
}

__global__ void shuffle_kernel(int* out, int op, int param, int width) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int v = 100 + static_cast<int>(threadIdx.x);
  int r = 0;
  if (op == 0) r = __shfl_xor_sync(kFullMask, v, param, width);
  if (op == 1) r = __shfl_down_sync(kFullMask, v, static_cast<unsigned>(param), width);
  if (op == 2) r = __shfl_sync(kFullMask, v, param, width);
  if (op == 3) r = __shfl_up_sync(kFullMask, v, static_cast<unsigned>(param), width);
  out[threadIdx.x] = r - 100 - static_cast<int>(threadIdx.x) + lane;  // the source lane
}

// CUDA's documented source lanes (Programming Guide, warp shuffle functions).
int source_lane(int lane, int op, int param, int width) {
  const int base = lane / width * width;
  if (op == 0) return (lane ^ param) / width == lane / width ? lane ^ param : lane;
  if (op == 1) return lane - base + param < width ? lane + param : lane;
  if (op == 2) return base + param % width;
  return lane - base >= param ? lane - param : lane;
}

TEST(CudaEmulation, ShufflesReadTheDocumentedLanes) {
  for (int op = 0; op < 4; ++op)
    for (int width : {32, 16, 4})
      for (int param : {1, 2, 5, 16}) {
        std::vector<int> out(64);
        emu::launch(shuffle_kernel, dim3(1), dim3(64), 0, out.data(), op, param, width);
        for (int t = 0; t < 64; ++t)
          ASSERT_EQ(out[t], source_lane(t % 32, op, param, width))
              << "op " << op << " width " << width << " param " << param << " thread " << t;
      }
}

__global__ void block_sum_kernel(double* out, int n) {
  double v = 0.0;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) v += i;
  v = cuda::block_reduce(v, cuda::SumOp{});
  out[threadIdx.x] = v;
  v = cuda::block_reduce(v, cuda::MaxOp{});  // twice: the trailing barrier protects the slots
  out[blockDim.x + threadIdx.x] = v;
}

TEST(CudaEmulation, BlockReduceGivesEveryThreadTheTotal) {
  std::vector<double> out(2 * 256);
  emu::launch(block_sum_kernel, dim3(1), dim3(256), 0, out.data(), 1000);
  for (int t = 0; t < 512; ++t) EXPECT_EQ(out[t], 999.0 * 1000 / 2) << t;
}

__global__ void dynamic_shared_kernel(float* out) {
  HG_DYNAMIC_SHARED(float, buf);
  out[threadIdx.x] = buf[threadIdx.x];  // before any write: the emulation's NaN fill
  __syncthreads();
  buf[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[blockDim.x + threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}

TEST(CudaEmulation, DynamicSharedMemoryStartsAsNaN) {
  std::vector<float> out(2 * 40);
  emu::launch(dynamic_shared_kernel, dim3(2), dim3(40), 40 * sizeof(float), out.data());
  for (int t = 0; t < 40; ++t) {
    EXPECT_TRUE(std::isnan(out[t]));
    EXPECT_EQ(out[40 + t], static_cast<float>(39 - t));
  }
}

// ---- misuse fails the launch, never hangs ----

__global__ void early_exit_kernel(int exiting_thread) {
  if (static_cast<int>(threadIdx.x) == exiting_thread) return;
  __syncthreads();
}

__global__ void half_warp_shuffle_kernel() {
  if (threadIdx.x >= 16) return;
  (void)__shfl_xor_sync(kFullMask, 1.0f, 1);
}

__global__ void full_mask_in_partial_warp_kernel() { (void)__shfl_xor_sync(kFullMask, 1, 1); }

__global__ void barrier_against_shuffle_kernel() {
  if (threadIdx.x < 16)
    (void)__shfl_xor_sync(kFullMask, 1, 1);
  else
    __syncthreads();
}

template <class F>
std::string launch_error(F&& launch) {
  try {
    launch();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(CudaEmulation, MisuseFailsTheLaunch) {
  EXPECT_NE(launch_error([] { emu::launch(early_exit_kernel, dim3(1), dim3(64), 0, 5); })
                .find("thread (5,0,0) exited while other threads of its block wait at "
                      "__syncthreads"),
            std::string::npos);
  EXPECT_NE(launch_error([] {
              emu::launch(half_warp_shuffle_kernel, dim3(1), dim3(32), 0);
            }).find("exited while lanes of its warp wait in a shuffle"),
            std::string::npos);
  EXPECT_NE(launch_error([] {
              emu::launch(full_mask_in_partial_warp_kernel, dim3(1), dim3(40), 0);
            }).find("which does not exist"),
            std::string::npos);
  EXPECT_NE(launch_error([] {
              emu::launch(barrier_against_shuffle_kernel, dim3(1), dim3(32), 0);
            }).find("never reaches"),
            std::string::npos);
  EXPECT_NE(launch_error([] {
              emu::launch(early_exit_kernel, dim3(1), dim3(2048), 0, -1);
            }).find("invalid launch shape"),
            std::string::npos);
  // A failed launch leaves the emulation usable.
  std::vector<int> out(32);
  emu::launch(rotate_kernel, dim3(1), dim3(32), 0, out.data(), true);
  EXPECT_EQ(out[31], 0);
}

}  // namespace
}  // namespace hg
