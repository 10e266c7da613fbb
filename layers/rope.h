// Rotary positions (§1.3): pairs (z[2i], z[2i+1]) of each head's e-vector rotated by
// p·10000^(-2i/e), p = row index at the block's own resolution. Angles, cos and sin are computed
// in double and rounded to float32 (the spec says so: it keeps every implementation bit-close).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace hg {

struct RopeTable {
  int64_t n = 0;           // positions
  int e = 0;               // head width (even)
  std::vector<float> cos;  // [n, e/2]
  std::vector<float> sin;  // [n, e/2]
};
// Inline: the CUDA backend (hg_cuda) builds the same table and links nothing of hg_layers.
inline RopeTable make_rope_table(int64_t n, int e) {
  require(e > 0 && e % 2 == 0, "RoPE needs an even head width, got e = " + std::to_string(e));
  require(n >= 0, "RoPE table: negative length " + std::to_string(n));
  RopeTable table;
  table.n = n;
  table.e = e;
  const int half = e / 2;
  table.cos.resize(static_cast<size_t>(n) * half);
  table.sin.resize(static_cast<size_t>(n) * half);
  // Angles, cos and sin in double, rounded once to float: the spec fixes this so that every
  // implementation gets the same float tables (float angles lose ~p·2⁻²⁴ rad at large p).
  for (int i = 0; i < half; ++i) {
    const double inv_freq = std::pow(10000.0, -2.0 * i / static_cast<double>(e));
    for (int64_t p = 0; p < n; ++p) {
      const double angle = static_cast<double>(p) * inv_freq;
      table.cos[p * half + i] = static_cast<float>(std::cos(angle));
      table.sin[p * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

// x [B, n, heads·e] rotated in place (forward), or by the inverse rotation (backward: the
// gradient of a rotation is the transposed rotation).
void rope_forward(float* x, const RopeTable& table, int64_t B, int64_t n, int heads, int e);
// The forward into out (CPU): out = RoPE(x), x unchanged; the same numbers as copying x to out and
// rotating it in place, without the copy pass.
void rope_forward_into(float* out, const float* x, const RopeTable& table, int64_t B, int64_t n,
                       int heads, int e);
void rope_backward(float* dx, const RopeTable& table, int64_t B, int64_t n, int heads, int e);

}  // namespace hg
