#include "layers/backend.h"

#include "core/error.h"
#ifdef HG_HAVE_CUDA
#include "core/cuda/device.h"
#include "layers/cuda/cuda_backend.h"
#endif

namespace hg {

std::string unavailable_reason(Device device) {
  if (device == Device::Cpu) return "";
#ifdef HG_HAVE_CUDA
  return cuda_unavailable_reason();
#else
  return "this build has no CUDA backend";
#endif
}

Backend& backend_for(Device device) {
  if (device == Device::Cpu) return cpu_backend();
#ifdef HG_HAVE_CUDA
  if (unavailable_reason(device).empty()) return cuda_backend();
#endif
  throw UsageError("run.device " + std::string(device_name(device)) + ": " +
                   unavailable_reason(device) + "; use --run.device cpu");
}

void select_device(Device device, int local_rank) {
  if (device == Device::Cpu) return;
#ifdef HG_HAVE_CUDA
  cuda::select_device(local_rank);
#else
  (void)local_rank;
#endif
}

int device_count(Device device) {
  if (device == Device::Cpu) return 1;
#ifdef HG_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

double device_memory_bytes(Device device) {
  if (device == Device::Cpu) return 0;
#ifdef HG_HAVE_CUDA
  return cuda::memory_bytes();
#else
  return 0;
#endif
}

std::vector<Device> available_devices() {
  std::vector<Device> devices;
  for (Device d : {Device::Cpu, Device::Cuda})
    if (unavailable_reason(d).empty()) devices.push_back(d);
  return devices;
}

}  // namespace hg
