// Inverted dropout (§1.6) whose mask is a pure function of (seed, step, global sample, site,
// element): the same on every rank layout and recomputed in backward instead of stored.
#include "layers/dropout.h"

#include <limits>
#include <string>

#include "core/error.h"
#include "core/parallel_for.h"
#include "core/random.h"

namespace hg {

uint32_t dropout_site_id(std::string_view canonical_site_name) {
  const uint64_t h = hash_name(canonical_site_name);
  return static_cast<uint32_t>(h ^ (h >> 32));
}

namespace {

constexpr int64_t kChunk = 2048;  // elements per task

// Applies the site's mask and scale to x [B, per_sample] in place. Counter words:
// (step, global sample index, site, element index within the sample); the first 32-bit word of
// the Philox block is the uniform draw.
void apply_mask(float* x, const DropoutSite& site, int64_t B, int64_t per_sample) {
  if (site.p == 0.0f) return;
  require(site.p > 0.0f && site.p < 1.0f,
          "dropout: probability " + std::to_string(site.p) + " outside [0, 1)");
  constexpr int64_t kMax = std::numeric_limits<uint32_t>::max();
  require(site.step >= 0 && site.step <= kMax && site.first_sample >= 0 &&
              site.first_sample + B - 1 <= kMax && per_sample - 1 <= kMax,
          "dropout: step, sample index or per-sample size does not fit a 32-bit counter word");
  const uint64_t key = random_key(site.seed, RandomPurpose::Dropout);
  const float p = site.p;
  const float scale = 1.0f / (1.0f - p);
  const int64_t chunks = (per_sample + kChunk - 1) / kChunk;
  parallel_for(B * chunks, [&](int64_t task) {
    const int64_t b = task / chunks;
    const int64_t e0 = (task % chunks) * kChunk;
    const int64_t e1 = e0 + kChunk < per_sample ? e0 + kChunk : per_sample;
    PhiloxBlock counter = {static_cast<uint32_t>(site.step),
                           static_cast<uint32_t>(site.first_sample + b), site.site, 0u};
    float* row = x + b * per_sample;
    for (int64_t e = e0; e < e1; ++e) {
      counter[3] = static_cast<uint32_t>(e);
      const bool keep = uniform_from_bits(philox4x32(key, counter)[0]) >= p;
      row[e] = keep ? row[e] * scale : 0.0f;
    }
  });
}

}  // namespace

void dropout_forward(float* x, const DropoutSite& site, int64_t B, int64_t per_sample) {
  apply_mask(x, site, B, per_sample);
}

// y = mask · x / (1-p) is linear in x with a diagonal Jacobian: the gradient gets the same mask
// and scale.
void dropout_backward(float* dx, const DropoutSite& site, int64_t B, int64_t per_sample) {
  apply_mask(dx, site, B, per_sample);
}

}  // namespace hg
