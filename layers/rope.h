// Rotary positions (§1.3): pairs (z[2i], z[2i+1]) of each head's e-vector rotated by
// p·10000^(-2i/e), p = row index at the block's own resolution. Angles, cos and sin are computed
// in double and rounded to float32 (the spec says so: it keeps every implementation bit-close).
#pragma once
#include <cstdint>
#include <vector>

namespace hg {

struct RopeTable {
  int64_t n = 0;           // positions
  int e = 0;               // head width (even)
  std::vector<float> cos;  // [n, e/2]
  std::vector<float> sin;  // [n, e/2]
};
RopeTable make_rope_table(int64_t n, int e);

// x [B, n, heads·e] rotated in place (forward), or by the inverse rotation (backward: the
// gradient of a rotation is the transposed rotation).
void rope_forward(float* x, const RopeTable& table, int64_t B, int64_t n, int heads, int e);
void rope_backward(float* dx, const RopeTable& table, int64_t B, int64_t n, int heads, int e);

}  // namespace hg
