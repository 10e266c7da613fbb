// Hourglass shortening and upsampling (§1.1, §1.4): shift, linear/avg pooling, linear/repeat
// upsampling. All sequences are [B, n, d], row-major.
#include "layers/resample.h"

#include <cstring>
#include <string>

#include "core/error.h"
#include "core/parallel_for.h"
#include "layers/linear.h"

namespace hg {

// ---- ShiftRight -------------------------------------------------------------------------

void shift_right_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int s) {
  require(s >= 0, "shift_right: negative shift " + std::to_string(s));
  parallel_for(B * n, [&](int64_t bt) {
    const int64_t t = bt % n;
    float* y = out + bt * d;
    if (t >= s)
      std::memcpy(y, inp + (bt - s) * d, sizeof(float) * d);  // same sequence: t - s >= 0
    else
      std::memset(y, 0, sizeof(float) * d);
  });
}

void shift_right_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int s) {
  require(s >= 0, "shift_right: negative shift " + std::to_string(s));
  parallel_for(B * n, [&](int64_t bt) {
    const int64_t t = bt % n;
    float* dx = dinp + bt * d;
    if (t + s < n)
      std::memcpy(dx, dout + (bt + s) * d, sizeof(float) * d);
    else
      std::memset(dx, 0, sizeof(float) * d);  // rows shifted out of the sequence
  });
}

// ---- Pooling ----------------------------------------------------------------------------

void pool_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                         int64_t B, int64_t n, int d, int k) {
  check_resample_factor(n, k, "pool_linear");
  // [B, n, d] is [B·n/k, k·d] in memory, rows jk..jk+k-1 concatenated position-major.
  const int64_t kd = static_cast<int64_t>(k) * d;
  linear_forward(out, inp, weight, bias, B * (n / k), kd, d, d);
}

void pool_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, int64_t B, int64_t n, int d,
                          int k) {
  check_resample_factor(n, k, "pool_linear");
  const int64_t kd = static_cast<int64_t>(k) * d;
  linear_backward(dinp, dweight, dbias, dout, inp, weight, B * (n / k), kd, d, d);
}

void pool_avg_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int k) {
  check_resample_factor(n, k, "pool_avg");
  const float fk = static_cast<float>(k);
  parallel_for(B * (n / k), [&](int64_t bj) {
    // Output row bj averages input rows bj·k .. bj·k+k-1 (the same sequence, as n % k == 0).
    const float* z = inp + bj * k * d;
    float* y = out + bj * d;
    for (int c = 0; c < d; ++c) y[c] = z[c];
    for (int i = 1; i < k; ++i)
      for (int c = 0; c < d; ++c) y[c] += z[static_cast<int64_t>(i) * d + c];
    // Sum then divide, like a plain mean: k = 3 has no exact reciprocal.
    for (int c = 0; c < d; ++c) y[c] /= fk;
  });
}

void pool_avg_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int k) {
  check_resample_factor(n, k, "pool_avg");
  const float fk = static_cast<float>(k);
  parallel_for(B * n, [&](int64_t bt) {
    const float* g = dout + (bt / k) * d;
    float* dx = dinp + bt * d;
    for (int c = 0; c < d; ++c) dx[c] = g[c] / fk;
  });
}

// ---- Upsampling -------------------------------------------------------------------------

void upsample_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                             int64_t B, int64_t m, int d, int k) {
  check_upsample_factor(k, "upsample_linear");
  // [B·m, k·d] output rows are, in memory, [B, m·k, d]: row j's chunk i is output row jk + i.
  const int64_t kd = static_cast<int64_t>(k) * d;
  linear_forward(out, inp, weight, bias, B * m, d, kd, kd);
}

void upsample_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                              const float* inp, const float* weight, int64_t B, int64_t m, int d,
                              int k) {
  check_upsample_factor(k, "upsample_linear");
  const int64_t kd = static_cast<int64_t>(k) * d;
  linear_backward(dinp, dweight, dbias, dout, inp, weight, B * m, d, kd, kd);
}

void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d, int k) {
  check_upsample_factor(k, "upsample_repeat");
  parallel_for(B * m * k, [&](int64_t bt) {
    std::memcpy(out + bt * d, inp + (bt / k) * d, sizeof(float) * d);
  });
}

void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d, int k) {
  check_upsample_factor(k, "upsample_repeat");
  parallel_for(B * m, [&](int64_t bj) {
    const float* g = dout + bj * k * d;
    float* dx = dinp + bj * d;
    for (int c = 0; c < d; ++c) dx[c] = g[c];
    for (int i = 1; i < k; ++i)
      for (int c = 0; c < d; ++c) dx[c] += g[static_cast<int64_t>(i) * d + c];
  });
}

}  // namespace hg
