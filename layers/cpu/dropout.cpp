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

// Philox4x32-10 (the same function as core/random.h's philox4x32, tested bit-equal), written on
// scalars with the rounds unrolled so that the loop over elements vectorises: one out-of-line
// philox4x32 call per element made dropout ~50x slower than the layer it follows.
struct PhiloxKeys {
  uint32_t k0[10], k1[10];  // the key schedule of each round
};

PhiloxKeys philox_keys(uint64_t key) {
  PhiloxKeys ks;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int r = 0; r < 10; ++r) {
    ks.k0[r] = k0;
    ks.k1[r] = k1;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ks;
}

inline void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                         uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
  const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
  const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
  const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
  c1 = static_cast<uint32_t>(p1);
  c3 = static_cast<uint32_t>(p0);
  c0 = n0;
  c2 = n2;
}

// First output word of Philox4x32-10 for the counter {c0, c1, c2, c3}.
inline uint32_t philox_word0(const PhiloxKeys& ks, uint32_t c0, uint32_t c1, uint32_t c2,
                             uint32_t c3) {
  philox_round(c0, c1, c2, c3, ks.k0[0], ks.k1[0]);
  philox_round(c0, c1, c2, c3, ks.k0[1], ks.k1[1]);
  philox_round(c0, c1, c2, c3, ks.k0[2], ks.k1[2]);
  philox_round(c0, c1, c2, c3, ks.k0[3], ks.k1[3]);
  philox_round(c0, c1, c2, c3, ks.k0[4], ks.k1[4]);
  philox_round(c0, c1, c2, c3, ks.k0[5], ks.k1[5]);
  philox_round(c0, c1, c2, c3, ks.k0[6], ks.k1[6]);
  philox_round(c0, c1, c2, c3, ks.k0[7], ks.k1[7]);
  philox_round(c0, c1, c2, c3, ks.k0[8], ks.k1[8]);
  philox_round(c0, c1, c2, c3, ks.k0[9], ks.k1[9]);
  return c0;
}

// Applies the site's mask and scale to x [B, per_sample] in place. Counter words:
// (step, global sample index, site, element index within the sample); the first 32-bit word of
// the Philox block is the uniform draw.
void apply_mask(float* x, const DropoutSite& site, int64_t B, int64_t per_sample) {
  if (site.p == 0.0f) return;
  check_dropout_site(site, B, per_sample);
  const PhiloxKeys keys = philox_keys(random_key(site.seed, RandomPurpose::Dropout));
  const float p = site.p;
  const float scale = 1.0f / (1.0f - p);
  const int64_t chunks = (per_sample + kChunk - 1) / kChunk;
  parallel_for(B * chunks, [&](int64_t task) {
    const int64_t b = task / chunks;
    const int64_t e0 = (task % chunks) * kChunk;
    const int64_t e1 = e0 + kChunk < per_sample ? e0 + kChunk : per_sample;
    // Locals, not captured references: a store through `row` could alias a captured float, and
    // the reloads would keep the loop scalar.
    const float p_local = p, scale_local = scale;
    const uint32_t step = static_cast<uint32_t>(site.step);
    const uint32_t sample = static_cast<uint32_t>(site.first_sample + b);
    const uint32_t site_word = site.site;
    float* row = x + b * per_sample;
    for (int64_t e = e0; e < e1; ++e) {
      const uint32_t bits = philox_word0(keys, step, sample, site_word, static_cast<uint32_t>(e));
      const bool keep = uniform_from_bits(bits) >= p_local;
      row[e] = keep ? row[e] * scale_local : 0.0f;
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
