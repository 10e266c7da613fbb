// Inverted dropout (§1.6) with layout-independent masks: element `e` of global sample `g` at
// dropout site `site` in step `step` is kept iff uniform(seed, Dropout, (step, g, site, e)) >= p,
// and kept values are scaled by 1/(1-p). The mask is recomputed in backward, never stored.
// The Philox counter is the 32-bit words {step, g, site, e} in that order; the uniform is
// uniform_from_bits of the block's first word. Requires 0 <= p < 1.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "core/error.h"

namespace hg {

struct DropoutSite {
  uint64_t seed = 0;
  int64_t step = 0;          // updates done before this one
  int64_t first_sample = 0;  // global sample index of the micro-batch's first sequence
  uint32_t site = 0;         // dropout_site_id(canonical name of the site)
  float p = 0.0f;
};
uint32_t dropout_site_id(std::string_view canonical_site_name);
// Throws UsageError unless 0 <= p < 1 and step, the last global sample index and the last
// element index each fit a 32-bit counter word (every backend checks this before its mask;
// inline: the CUDA backend, hg_cuda, links nothing of hg_layers).
inline void check_dropout_site(const DropoutSite& site, int64_t B, int64_t per_sample) {
  require(site.p >= 0.0f && site.p < 1.0f,
          "dropout: probability " + std::to_string(site.p) + " outside [0, 1)");
  constexpr int64_t kMax = std::numeric_limits<uint32_t>::max();
  require(site.step >= 0 && site.step <= kMax && site.first_sample >= 0 &&
              site.first_sample + B - 1 <= kMax && per_sample - 1 <= kMax,
          "dropout: step, sample index or per-sample size does not fit a 32-bit counter word");
}

// x [B, per_sample] in place. No-op when p == 0.
void dropout_forward(float* x, const DropoutSite& site, int64_t B, int64_t per_sample);
// dx [B, per_sample] in place: the same mask and scale.
void dropout_backward(float* dx, const DropoutSite& site, int64_t B, int64_t per_sample);

}  // namespace hg
