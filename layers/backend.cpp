#include "layers/backend.h"

#include "core/error.h"

namespace hg {

std::string unavailable_reason(Device device) {
  if (device == Device::Cpu) return "";
  return "this build has no CUDA backend";
}

Backend& backend_for(Device device) {
  if (device == Device::Cpu) return cpu_backend();
  throw UsageError("run.device " + std::string(device_name(device)) + ": " +
                   unavailable_reason(device) + "; use --run.device cpu");
}

std::vector<Device> available_devices() {
  std::vector<Device> devices;
  for (Device d : {Device::Cpu, Device::Cuda})
    if (unavailable_reason(d).empty()) devices.push_back(d);
  return devices;
}

}  // namespace hg
