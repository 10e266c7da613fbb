// bfloat16: the top 16 bits of a float32 (sign, 8-bit exponent, 7-bit mantissa). With
// train.precision bf16 the two operands of every matrix product are rounded to it
// (ARCHITECTURE.md §9.1); this is that rounding, one value at a time, in integer arithmetic so
// that every build rounds the same way and loops over it vectorise.
#pragma once
#include <bit>
#include <cstdint>

namespace hg {

// The bfloat16 nearest to x, ties to even. Denormals are rounded like any other number (the
// AVX512-BF16 instruction VCVTNEPS2BF16 would flush them to zero, hence no intrinsic); a float
// beyond the largest bfloat16 rounds to Inf, as round-to-nearest overflows; Inf stays Inf; a NaN
// stays a NaN of the same sign (made quiet, so truncating its payload cannot make it an Inf).
inline uint16_t bf16_bits(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  // Adding 0x7fff rounds up exactly the values above the halfway point; the low bit of the kept
  // half adds the one more that carries a tie up when the kept value is odd.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float bf16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// x rounded to bfloat16 and held as a float32 (exact: a bfloat16 is a float32 with zero low bits).
inline float round_to_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

}  // namespace hg
