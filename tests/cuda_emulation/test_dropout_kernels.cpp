// layers/cuda/dropout_kernels.cuh under the CPU emulation of the CUDA thread model, against the
// CPU backend: the same Philox key and counters, so the masks (and the scaled values) must be
// identical bit for bit. NOT A GPU (docs/cuda.md).
#include <gtest/gtest.h>

// The emulation first, then the kernel headers that compile against it.
// clang-format off
#include "tests/cuda_emulation/cuda_emulation.h"
#include "layers/cuda/dropout_kernels.cuh"
// clang-format on

#include <vector>

#include "core/random.h"
#include "layers/backend.h"
#include "tests/cuda_emulation/compare.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_bits_equal;

const emu::Launch kEmulated;

TEST(EmulatedKernels, PhiloxWordMatchesCoreRandom) {
  const uint64_t key = random_key(42, RandomPurpose::Dropout);
  for (uint32_t e = 0; e < 100; ++e) {
    const PhiloxBlock want = philox4x32(key, {5, 1000 + e, 77, e * 7919});
    EXPECT_EQ(cuda::philox_word0(key, 5, 1000 + e, 77, e * 7919), want[0]);
  }
}

TEST(EmulatedKernels, DropoutMasksAreBitIdenticalToTheCpu) {
  const int64_t B = 3, per_sample = 1000;  // elements of one sample cross block boundaries
  const auto x = testing::random_vector(B * per_sample, 1);
  for (const float p : {0.1f, 0.5f, 0.9f}) {
    DropoutSite site;
    site.seed = 1234;
    site.step = 17;
    site.first_sample = 40;
    site.site = dropout_site_id("stacks/0/blocks/1/ffn");
    site.p = p;
    auto got = x, want = x;
    cuda::launch_dropout(kEmulated, got.data(), random_key(site.seed, RandomPurpose::Dropout), 17,
                         40, site.site, p, 1.0f / (1.0f - p), B, per_sample);
    cpu_backend().dropout_forward(want.data(), site, B, per_sample);
    expect_bits_equal("dropout p " + std::to_string(p), got, want);
  }
}

}  // namespace
}  // namespace hg
