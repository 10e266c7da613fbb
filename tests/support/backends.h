// One operation suite over every backend (tests/layers): a test written once against
// backend_for(device) on device buffers runs as Suite.Test/cpu and Suite.Test/cuda. A device this
// build or machine lacks is reported Skipped with unavailable_reason(device), never silently
// absent (here: every /cuda instance, "no CUDA device: ..."). The CPU backend is the reference.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/backend.h"

namespace hg::testing {

// {Cpu, Cuda}: every device, available here or not.
const std::vector<Device>& all_devices();
// device_name(info.param): the /cpu, /cuda suffix of a test's name.
std::string device_test_name(const ::testing::TestParamInfo<Device>& info);

// Fixture of the parameterised operation tests: SetUp skips (with the reason) when the device is
// unavailable, so a test body may assume backend() works.
class OnEveryBackend : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override;
  Device device() const { return GetParam(); }
  Backend& backend() const { return backend_for(GetParam()); }
  // Host values into a new Tensor [n] on this test's device / back again (the explicit, named
  // crossings of STYLE.md; they synchronise on a device).
  Tensor on_device(const std::vector<float>& host) const;
  Tensor zeros_on_device(int64_t n) const;
};

// The fixture's crossings for code outside it (a test's layer struct).
Tensor on_device(const std::vector<float>& host, Device device);
std::vector<float> to_host(const Tensor& t);

// Instantiates Suite's TEST_Ps over all_devices(), named Suite.Test/cpu and Suite.Test/cuda.
#define HG_TEST_ON_EVERY_BACKEND(Suite)                                                \
  INSTANTIATE_TEST_SUITE_P(, Suite, ::testing::ValuesIn(::hg::testing::all_devices()), \
                           ::hg::testing::device_test_name)

// |got - want| <= atol + rtol·|want| for every element, NaN where NaN; one failure per buffer
// naming the mismatch count and the worst index (not one per element).
void expect_close(const std::string& what, const std::vector<float>& got,
                  const std::vector<float>& want, double atol, double rtol);

// n token ids in [0, V), low ids far more often than high ones (like bytes of text), so an
// embedding backward sees many repeated rows.
std::vector<int32_t> skewed_tokens(int64_t n, int V, uint64_t seed);

}  // namespace hg::testing
