// exp(x) for float loops that must vectorise: glibc's expf is a scalar call that g++ will not
// vectorise without -ffast-math. Cephes-style: x = n·ln2 + r with |r| <= ln2/2 (ln2 split in a
// hi/lo pair so the reduction is exact enough), a degree-6 polynomial for e^r, and 2^n built in
// the exponent bits. Branch-free, so a loop calling it compiles to AVX-512/AVX2 code.
// Accuracy: within 2 ulp of exp over the clamped range (tested). Inputs are clamped to
// [-87.3, 88.3]: below, the result is ~1e-38 instead of a denormal or 0; above, ~2.4e38 instead
// of inf. Callers use it where that does not matter (sigmoids, shifted softmax numerators).
#pragma once
#include <bit>
#include <cstdint>

namespace hg {

inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  // round(x / ln2) by the 1.5·2²³ trick: floorf does not vectorise without -ffast-math, and
  // without it the compiler may not fold the add/subtract pair away.
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;  // ln2 hi: exact product
  r = r - n * -2.12194440e-4f;     // ln2 lo
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  return y * std::bit_cast<float>(bits);
}

}  // namespace hg
