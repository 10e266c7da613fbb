// The CUDA runtime API the backend's .cu files call, for the emulated CUDA backend
// (HG_CUDA_EMULATION=ON, docs/cuda.md): the same sources (core/cuda, layers/cuda) compiled by g++
// against the thread-model emulation, so backend_for(Device::Cuda) exists on a machine without a
// GPU and the trainer's device path runs in tests. This is NOT a GPU and NOT the CUDA runtime:
// one emulated device, synchronous calls. Streams and events exist for NCCL's point-to-point ops,
// the only asynchronous work (nccl.cpp): a stream holds the ones not yet complete, an event
// recorded on it waits for those; everything else has finished when its call returns.
//
// "Device memory" is a guarded arena (device_memory.cpp): its pages are inaccessible to the host
// except while an emulated kernel, copy, memset or gemm runs, so host code that reads or writes
// device memory directly faults at once (with a message naming the address) instead of passing
// by luck as it would with plain host memory.
#pragma once
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

#include "tests/cuda_emulation/cuda_emulation.h"

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNotReady = 600,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};
using cudaStream_t = struct EmulatedStream*;
using cudaEvent_t = struct EmulatedEvent*;
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t event);  // cudaSuccess: the work before it is done
cudaError_t cudaEventDestroy(cudaEvent_t event);

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t error);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
// Stream-ordered allocation: cudaMalloc / cudaFree here (every call is complete on return).
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t stream);
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream);
using cudaMemPool_t = struct EmulatedMemPool*;
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attribute, void* value);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemset2D(void* p, size_t pitch, int value, size_t width, size_t height);
// The emulated device's size: HG_EMULATED_DEVICE_MIB MiB when set (tests of the memory check),
// else 16 GiB; cudaMalloc fails beyond it, as on a full GPU.
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

namespace hg::emu {

// Whether p points into the emulated device's memory.
bool on_device(const void* p);
// Throws naming `kernel` when a pointer argument (null aside) is host memory: on a GPU the kernel
// would fault with an illegal address. Pointers inside structs (AttentionOperands) go unchecked.
void require_device_pointer(const char* kernel, const void* p);
template <class A>
void check_kernel_argument(const char* kernel, const A& arg) {
  if constexpr (std::is_pointer_v<A>)
    if (arg != nullptr) require_device_pointer(kernel, static_cast<const void*>(arg));
}

// While one lives, the device arena is readable and writable by the host (nests).
class DeviceAccess {
 public:
  DeviceAccess();
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
};

// Work in flight on an emulated stream (nccl.cpp's sends and receives). complete() tests it
// without blocking and, once it is done, finishes it (a receive copies into device memory); it
// returns true from then on.
class AsyncWork {
 public:
  virtual ~AsyncWork() = default;
  virtual bool complete() = 0;
};
// Appends `work` to `stream` (not the default stream, nullptr, which runs nothing
// asynchronously): events recorded on it from now on wait for it.
void enqueue(cudaStream_t stream, std::shared_ptr<AsyncWork> work);

}  // namespace hg::emu

// A `__device__` variable is a host variable here (cuda_emulation.h).
template <class T>
cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t bytes, size_t offset = 0,
                                 cudaMemcpyKind = cudaMemcpyDeviceToHost) {
  std::memcpy(dst, reinterpret_cast<const char*>(&symbol) + offset, bytes);
  return cudaSuccess;
}

namespace hg::cuda {

// core/cuda/check.h's launcher under the emulation: the launch plan runs on the CPU with the
// device arena open.
struct DeviceLaunch {
  template <class... P, class... A>
  void operator()([[maybe_unused]] const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                  size_t shared_bytes, A&&... args) const {
    (emu::check_kernel_argument(name, std::decay_t<A>(args)), ...);
    emu::DeviceAccess open;
    emu::launch(kernel, grid, block, shared_bytes, std::forward<A>(args)...);
  }
};

}  // namespace hg::cuda
