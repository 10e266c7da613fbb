// Inverted dropout (§1.6) with layout-independent masks: element `e` of global sample `g` at
// dropout site `site` in step `step` is kept iff uniform(seed, Dropout, (step, g, site, e)) >= p,
// and kept values are scaled by 1/(1-p). The mask is recomputed in backward, never stored.
// The Philox counter is the 32-bit words {step, g, site, e} in that order; the uniform is
// uniform_from_bits of the block's first word. Requires 0 <= p < 1.
#pragma once
#include <cstdint>
#include <string_view>

namespace hg {

struct DropoutSite {
  uint64_t seed = 0;
  int64_t step = 0;          // updates done before this one
  int64_t first_sample = 0;  // global sample index of the micro-batch's first sequence
  uint32_t site = 0;         // dropout_site_id(canonical name of the site)
  float p = 0.0f;
};
uint32_t dropout_site_id(std::string_view canonical_site_name);

// x [B, per_sample] in place. No-op when p == 0.
void dropout_forward(float* x, const DropoutSite& site, int64_t B, int64_t per_sample);
// dx [B, per_sample] in place: the same mask and scale.
void dropout_backward(float* dx, const DropoutSite& site, int64_t B, int64_t per_sample);

}  // namespace hg
