// Rotary position embedding (§1.3), applied to [B, n, heads·e] activations.
#include "layers/rope.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "core/parallel_for.h"
#include "layers/cpu/rope_row.h"

namespace hg {

namespace {

void check_table(const RopeTable& table, int64_t n, int e) {
  require(table.e == e && table.n >= n, "RoPE table built for n = " + std::to_string(table.n) +
                                            ", e = " + std::to_string(table.e) + " used with n = " +
                                            std::to_string(n) + ", e = " + std::to_string(e));
}

// out = x with every pair of each row rotated by +angle (sign = +1) or -angle (sign = -1); out
// may be x (in place).
template <int kSign>
void rope_apply(float* out, const float* x, const RopeTable& table, int64_t B, int64_t n, int heads,
                int e) {
  check_table(table, n, e);
  const int half = e / 2;
  const int64_t width = static_cast<int64_t>(heads) * e;
  parallel_for(B * n, [&](int64_t bt) {
    const int64_t p = bt % n;  // position at the block's own resolution, per sequence
    const float* cs = table.cos.data() + p * half;
    const float* sn = table.sin.data() + p * half;
    for (int h = 0; h < heads; ++h) {
      const float* z = x + bt * width + static_cast<int64_t>(h) * e;
      float* y = out + bt * width + static_cast<int64_t>(h) * e;
      rope_row<kSign>(z, cs, sn, half, [y](int j, float v) { y[j] = v; });
    }
  });
}

}  // namespace

void rope_forward(float* x, const RopeTable& table, int64_t B, int64_t n, int heads, int e) {
  rope_apply<1>(x, x, table, B, n, heads, e);
}

void rope_forward_into(float* out, const float* x, const RopeTable& table, int64_t B, int64_t n,
                       int heads, int e) {
  rope_apply<1>(out, x, table, B, n, heads, e);
}

// The Jacobian of a rotation is the rotation; its transpose is the rotation by -angle.
void rope_backward(float* dx, const RopeTable& table, int64_t B, int64_t n, int heads, int e) {
  rope_apply<-1>(dx, dx, table, B, n, heads, e);
}

}  // namespace hg
