// The emulated CUDA device (HG_CUDA_EMULATION=ON; tests/cuda_emulation/runtime) must catch what a
// GPU would punish: host code touching device memory, a kernel given a host pointer, a copy in the
// wrong direction. Without these checks the trainer's device path could pass here by reading
// device pointers on the host. Built only in the emulated configuration (scripts/sanitizers.sh).
#ifdef HG_CUDA_EMULATED
#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

#include "core/tensor.h"
#include "layers/backend.h"

namespace hg {
namespace {

TEST(EmulatedDevice, HostAccessToDeviceMemoryFaults) {
  backend_for(Device::Cuda);  // registers the device's memory
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Tensor t({16}, Device::Cuda);
        t.data()[3] = 1.0f;
      },
      "emulated device memory");
  // Through the explicit crossings the same memory reads back.
  Tensor t({16}, Device::Cuda);
  std::vector<float> host(16, 2.5f), back(16);
  t.copy_from_host(host.data());
  t.copy_to_host(back.data());
  EXPECT_EQ(back, host);
}

TEST(EmulatedDevice, KernelsAndCopiesRefuseHostPointers) {
  Backend& cuda = backend_for(Device::Cuda);
  Tensor device({8}, Device::Cuda);
  std::vector<float> host(8, 1.0f);
  EXPECT_THROW(cuda.add_into(host.data(), device.data(), 8), std::runtime_error);
  EXPECT_THROW(cuda.add_into(device.data(), host.data(), 8), std::runtime_error);
  // A host -> device copy whose destination is host memory.
  EXPECT_THROW(copy_from_host(Device::Cuda, host.data(), host.data(), 8), std::runtime_error);
  cuda.add_into(device.data(), device.data(), 8);  // device pointers launch
}

}  // namespace
}  // namespace hg
#endif
