#include "core/random.h"

#include <cmath>

namespace hg {

PhiloxBlock philox4x32(uint64_t key, const PhiloxBlock& counter) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  PhiloxBlock c = counter;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
    uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k0, static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k1, static_cast<uint32_t>(p0)};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

uint64_t random_key(uint64_t seed, RandomPurpose purpose) {
  // splitmix64 of the pair, so nearby seeds and purposes give unrelated keys.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(purpose) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash_name(std::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 0x100000001B3ull;
  }
  return h;
}

float normal_at(uint64_t key, const PhiloxBlock& counter) {
  PhiloxBlock r = philox4x32(key, counter);
  // u1 in (0, 1], u2 in [0, 1): 32-bit resolution each.
  double u1 = (static_cast<double>(r[0]) + 1.0) / 4294967296.0;
  double u2 = static_cast<double>(r[1]) / 4294967296.0;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

uint64_t bits64_at(uint64_t key, const PhiloxBlock& counter) {
  PhiloxBlock r = philox4x32(key, counter);
  return (static_cast<uint64_t>(r[1]) << 32) | r[0];
}

}  // namespace hg
