// Where a buffer lives (ARCHITECTURE.md §7). Host memory is always there; device memory comes from
// the allocator a device library registers (the CUDA backend registers Device::Cuda when it is
// created), so core/ never depends on a device library.
#pragma once
#include <cstdint>
#if __cplusplus >= 202002L
#include <span>
#endif

namespace hg {

enum class Device { Cpu, Cuda };
#if __cplusplus >= 202002L  // the CUDA sources (hg_cuda) compile as C++17: no std::span there
inline std::span<const char* const> enum_names(Device) {  // core/enum_names.h
  static constexpr const char* names[] = {"cpu", "cuda"};
  return names;
}
#endif
const char* device_name(Device device);  // "cpu", "cuda"

// One device's memory, as plain functions. Sizes are bytes; `allocate` returns zero-filled,
// 64-byte aligned memory (nullptr for 0 bytes).
struct DeviceMemory {
  void* (*allocate)(int64_t bytes) = nullptr;
  void (*release)(void* p) = nullptr;
  void (*zero)(void* p, int64_t bytes) = nullptr;
  void (*copy)(void* dst, const void* src, int64_t bytes) = nullptr;        // device -> device
  void (*to_host)(void* host, const void* src, int64_t bytes) = nullptr;    // device -> host
  void (*from_host)(void* dst, const void* host, int64_t bytes) = nullptr;  // host -> device
};
void register_device_memory(Device device, const DeviceMemory& memory);
// Throws std::runtime_error when `device` has no registered memory (its backend was never made).
const DeviceMemory& device_memory(Device device);

// n floats from a buffer on `device` to the host / from the host into one (memcpy on the CPU):
// the explicit crossings of host-staged communication and checkpoints.
void copy_to_host(Device device, float* host, const float* src, int64_t n);
void copy_from_host(Device device, float* dst, const float* host, int64_t n);
// n floats from one buffer on `device` to another on the same device.
void copy_on_device(Device device, float* dst, const float* src, int64_t n);

}  // namespace hg
