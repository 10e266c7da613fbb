// Inverted dropout on the device (layers/dropout.h, ARCHITECTURE.md §1.6): element e of global
// sample g is kept iff uniform_from_bits(word 0 of Philox4x32-10(key, {step, g, site, e})) >= p,
// the CPU layer's counter and key, so the masks are identical bit for bit and are recomputed in
// the backward, never stored. With its launch plan (core/cuda/launch.cuh): compiled by nvcc in
// dropout.cu and by g++ against the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// First output word of Philox4x32-10 (Salmon et al. 2011; core/random.h's philox4x32) for the
// counter {c0, c1, c2, c3} under the 64-bit key: ten rounds, the key bumped by the Weyl
// constants after each. The 64-bit products give the high and low halves (mul.wide on a GPU).
__host__ __device__ uint32_t philox_word0(uint64_t key, uint32_t c0, uint32_t c1, uint32_t c2,
                                          uint32_t c3) {
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

// x [B, per_sample] in place (forward and backward are the same map). One thread per element,
// grid-stride; each element's draw depends on its own counter only, so no state is shared.
__global__ void dropout_kernel(float* x, uint64_t key, uint32_t step, uint32_t first_sample,
                               uint32_t site, float p, float scale, int64_t B, int64_t per_sample) {
  const int64_t total = B * per_sample;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const auto sample = static_cast<uint32_t>(first_sample + i / per_sample);
    const uint32_t bits =
        philox_word0(key, step, sample, site, static_cast<uint32_t>(i % per_sample));
    // core/random.h's uniform_from_bits: 24 bits, exact in float.
    const float u = static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
    x[i] = u >= p ? x[i] * scale : 0.0f;
  }
}

// key = random_key(seed, RandomPurpose::Dropout), scale = 1/(1-p) in float, both from the host
// (as the CPU computes them); the counters checked there to fit 32-bit words.
template <class Launch>
void launch_dropout(const Launch& launch, float* x, uint64_t key, uint32_t step,
                    uint32_t first_sample, uint32_t site, float p, float scale, int64_t B,
                    int64_t per_sample) {
  if (B * per_sample == 0) return;
  launch("dropout_kernel", dropout_kernel, dim3(grid_for(B * per_sample)), dim3(kThreads), 0, x,
         key, step, first_sample, site, p, scale, B, per_sample);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
