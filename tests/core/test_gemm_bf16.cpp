// The bfloat16 rounding (core/bf16.h) against a reference written here independently: one that
// compares the dropped half with the halfway point.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "core/bf16.h"
#include "core/random.h"

namespace hg {
namespace {

uint32_t bits_of(float x) { return std::bit_cast<uint32_t>(x); }
float float_of(uint32_t u) { return std::bit_cast<float>(u); }

// Round to nearest even by looking at the 16 bits that are dropped. NaNs are the caller's.
uint16_t reference_bf16(float x) {
  const uint32_t u = bits_of(x);
  uint32_t kept = u >> 16;
  const uint32_t dropped = u & 0xffffu;
  if (dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u))) ++kept;
  return static_cast<uint16_t>(kept);
}

TEST(Bf16Rounding, TiesToEvenInfNanAndDenormals) {
  const struct {
    uint32_t in;
    uint16_t out;
  } cases[] = {
      {0x3f800000, 0x3f80},  // 1
      {0x3f808000, 0x3f80},  // 1 + 2^-8: a tie, 0x3f80 is even
      {0x3f818000, 0x3f82},  // a tie above an odd value rounds up to the even one
      {0x3f807fff, 0x3f80},  // just below the tie
      {0x3f808001, 0x3f81},  // just above it
      {0xbf808000, 0xbf80},  // -(1 + 2^-8)
      {0x3f7fffff, 0x3f80},  // carries into the exponent
      {0x7f7f7fff, 0x7f7f},  // the largest bfloat16 stays
      {0x7f7fffff, 0x7f80},  // the largest float rounds to Inf
      {0x7f800000, 0x7f80},  // Inf
      {0xff800000, 0xff80},  // -Inf
      {0x00000000, 0x0000},  // 0
      {0x80000000, 0x8000},  // -0
      {0x00000001, 0x0000},  // the smallest denormal rounds to 0, not flushed by rule
      {0x00008000, 0x0000},  // a denormal tie to even (0)
      {0x00018000, 0x0002},  // a denormal tie to even (2)
      {0x00010001, 0x0001},  // a denormal kept, not flushed
      {0x807fffff, 0x8080},  // the largest denormal rounds up to the smallest normal
  };
  for (const auto& c : cases) {
    EXPECT_EQ(bf16_bits(float_of(c.in)), c.out) << std::hex << c.in;
    EXPECT_EQ(bits_of(round_to_bf16(float_of(c.in))), static_cast<uint32_t>(c.out) << 16);
  }
  // NaNs stay NaNs with their sign, including one whose payload lies only in the dropped half.
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const float rounded = round_to_bf16(float_of(nan));
    EXPECT_TRUE(std::isnan(rounded)) << std::hex << nan;
    EXPECT_EQ(std::signbit(rounded), (nan >> 31) != 0) << std::hex << nan;
  }
  // Random bit patterns of every class against the independent rounding.
  const uint64_t key = random_key(14, RandomPurpose::Init);
  for (uint64_t i = 0; i < 200000; ++i) {
    const uint32_t u = philox4x32(key, counter_of(1, i))[0];
    if (std::isnan(float_of(u))) continue;
    ASSERT_EQ(bf16_bits(float_of(u)), reference_bf16(float_of(u))) << std::hex << u;
  }
}

}  // namespace
}  // namespace hg
