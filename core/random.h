// Counter-based randomness (Philox4x32-10, Salmon et al. 2011), ARCHITECTURE.md §1.6.
// Every random number is a pure function of (seed, purpose, identity...), never of a stream's
// position, so any rank layout draws the same numbers for the same meaning.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>

namespace hg {

enum class RandomPurpose : uint32_t {
  Init = 1,         // counter: (hash of canonical name, element index)
  Dropout = 2,      // counter: (step, global sample index, site, element)
  Sample = 3,       // counter: (step, global sample index): training window offsets
  Granularity = 4,  // counter: (step): MatFormer `sample` mode
  Generate = 5,     // counter: (position): `hourglass sample`
};

using PhiloxBlock = std::array<uint32_t, 4>;

// One Philox4x32-10 block: 128 random bits for a 128-bit counter under a 64-bit key.
PhiloxBlock philox4x32(uint64_t key, const PhiloxBlock& counter);

// The key of (seed, purpose).
uint64_t random_key(uint64_t seed, RandomPurpose purpose);

// FNV-1a 64-bit hash: names (parameters, dropout sites) to counter words.
uint64_t hash_name(std::string_view name);

// Uniform in [0, 1) with 24 random bits, from one 32-bit word.
inline float uniform_from_bits(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// A standard normal number from (key, counter): Box-Muller on the block's first two words,
// computed in double so that the result does not depend on the compiler's float contraction.
float normal_at(uint64_t key, const PhiloxBlock& counter);

// 64 uniform bits from (key, counter): sampler offsets.
uint64_t bits64_at(uint64_t key, const PhiloxBlock& counter);

inline PhiloxBlock counter_of(uint64_t hi, uint64_t lo) {
  return {static_cast<uint32_t>(lo), static_cast<uint32_t>(lo >> 32), static_cast<uint32_t>(hi),
          static_cast<uint32_t>(hi >> 32)};
}

}  // namespace hg
