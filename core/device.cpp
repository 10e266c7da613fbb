#include "core/device.h"

#include <cstdlib>
#include <new>
#include <stdexcept>

#include "core/bulk_memory.h"
#include "core/enum_names.h"

namespace hg {

const char* device_name(Device device) { return enum_name(device); }

namespace {

void* host_allocate(int64_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t rounded = ((static_cast<size_t>(bytes) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  zero_bytes(p, static_cast<int64_t>(rounded));
  return p;
}
void host_release(void* p) { std::free(p); }
void host_zero(void* p, int64_t bytes) { zero_bytes(p, bytes); }
void host_copy(void* dst, const void* src, int64_t bytes) { copy_bytes(dst, src, bytes); }

DeviceMemory g_memory[2] = {
    {host_allocate, host_release, host_zero, host_copy, host_copy, host_copy}, {}};

}  // namespace

void register_device_memory(Device device, const DeviceMemory& memory) {
  g_memory[static_cast<int>(device)] = memory;
}

const DeviceMemory& device_memory(Device device) {
  const DeviceMemory& m = g_memory[static_cast<int>(device)];
  if (!m.allocate)
    throw std::runtime_error(std::string("no memory registered for device ") + device_name(device) +
                             " (its backend was never created)");
  return m;
}

void copy_to_host(Device device, float* host, const float* src, int64_t n) {
  if (n > 0) device_memory(device).to_host(host, src, static_cast<int64_t>(sizeof(float)) * n);
}

void copy_from_host(Device device, float* dst, const float* host, int64_t n) {
  if (n > 0) device_memory(device).from_host(dst, host, static_cast<int64_t>(sizeof(float)) * n);
}

void copy_on_device(Device device, float* dst, const float* src, int64_t n) {
  if (n > 0) device_memory(device).copy(dst, src, static_cast<int64_t>(sizeof(float)) * n);
}

}  // namespace hg
