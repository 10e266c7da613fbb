#include "tests/support/backends.h"

#include <cmath>

#include "tests/support/gradcheck.h"

namespace hg::testing {

const std::vector<Device>& all_devices() {
  static const std::vector<Device> devices = {Device::Cpu, Device::Cuda};
  return devices;
}

std::string device_test_name(const ::testing::TestParamInfo<Device>& info) {
  return device_name(info.param);
}

void OnEveryBackend::SetUp() {
  const std::string reason = unavailable_reason(GetParam());
  if (!reason.empty()) GTEST_SKIP() << device_name(GetParam()) << ": " << reason;
  // Made before the test's first Tensor: creating a device backend registers its memory
  // (core/device.h). Found by the emulated device; every /cuda test would fail on a GPU without it.
  backend_for(GetParam());
}

Tensor OnEveryBackend::on_device(const std::vector<float>& host) const {
  return testing::on_device(host, device());
}

Tensor on_device(const std::vector<float>& host, Device device) {
  Tensor t({static_cast<int64_t>(host.size())}, device);
  t.copy_from_host(host.data());
  return t;
}

Tensor OnEveryBackend::zeros_on_device(int64_t n) const { return Tensor({n}, device()); }

std::vector<float> to_host(const Tensor& t) {
  std::vector<float> host(static_cast<size_t>(t.numel()));
  t.copy_to_host(host.data());
  return host;
}

void expect_close(const std::string& what, const std::vector<float>& got,
                  const std::vector<float>& want, double atol, double rtol) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double excess = err - (atol + rtol * std::fabs(static_cast<double>(want[i])));
    if (excess > 0.0 || std::isnan(got[i]) != std::isnan(want[i])) {
      ++bad;
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " values outside atol "
                    << atol << " + rtol " << rtol << "; worst at " << worst << ": got "
                    << (worst >= 0 ? got[worst] : 0.0f) << ", want "
                    << (worst >= 0 ? want[worst] : 0.0f);
}

std::vector<int32_t> skewed_tokens(int64_t n, int V, uint64_t seed) {
  const auto u = random_vector(n, seed);  // [-1, 1)
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double x = 0.5 * (u[i] + 1.0);  // squared below: the skew
    t[i] = static_cast<int32_t>(x * x * V) % V;
  }
  return t;
}

}  // namespace hg::testing
