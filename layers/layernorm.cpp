// LayerNorm forward/backward (ARCHITECTURE.md §1.2), llm.c style, with the grouped form used by
// long-short attention's per-head LNw / LNg.
#include "layers/layernorm.h"

#include <cmath>

#include "core/parallel_for.h"

namespace hg {

namespace {

// Sums of C floats with a fixed 16-lane split: the compiler vectorises the lane loop without
// -ffast-math, and the summation order is fixed by the code, so results are bit-identical
// whatever the thread count or vector width.
constexpr int kLanes = 16;

inline float lane_sum(const float* x, int C) {
  float acc[kLanes] = {};
  int c = 0;
  for (; c + kLanes <= C; c += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[c + l];
  for (int l = 0; c < C; ++c, ++l) acc[l] += x[c];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

inline float lane_sum_sq_dev(const float* x, float m, int C) {
  float acc[kLanes] = {};
  int c = 0;
  for (; c + kLanes <= C; c += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      float dv = x[c + l] - m;
      acc[l] += dv * dv;
    }
  for (int l = 0; c < C; ++c, ++l) {
    float dv = x[c] - m;
    acc[l] += dv * dv;
  }
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// Columns per task when reducing parameter gradients over rows: every column is summed over the
// rows in row order by exactly one task, so the result does not depend on the thread count.
constexpr int64_t kColumnBlock = 64;

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int64_t rows, int groups, int C) {
  const int64_t width = static_cast<int64_t>(groups) * C;  // one row
  parallel_for(rows * groups, [&](int64_t rg) {
    const int64_t r = rg / groups;
    const int g = static_cast<int>(rg % groups);
    const float* x = inp + r * width + static_cast<int64_t>(g) * C;  // [C]
    float* y = out + r * width + static_cast<int64_t>(g) * C;        // [C]
    const float* w = gain + static_cast<int64_t>(g) * C;
    const float* b = bias + static_cast<int64_t>(g) * C;
    // Two passes (mean, then squared deviations): E[x²] - mean² cancels badly when |mean| >> std.
    const float m = lane_sum(x, C) / static_cast<float>(C);
    const float var = lane_sum_sq_dev(x, m, C) / static_cast<float>(C);  // biased, as the spec says
    const float s = 1.0f / std::sqrt(var + kLayerNormEps);
    for (int c = 0; c < C; ++c) y[c] = (x[c] - m) * s * w[c] + b[c];
    mean[rg] = m;
    rstd[rg] = s;
  });
}

void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int64_t rows, int groups, int C) {
  const int64_t width = static_cast<int64_t>(groups) * C;

  // dinp = rstd · (dnorm - mean(dnorm) - norm · mean(dnorm · norm)),  dnorm = dout · gain.
  parallel_for(rows * groups, [&](int64_t rg) {
    const int64_t r = rg / groups;
    const int g = static_cast<int>(rg % groups);
    const int64_t off = r * width + static_cast<int64_t>(g) * C;
    const float* x = inp + off;
    const float* dy = dout + off;
    float* dx = dinp + off;
    const float* w = gain + static_cast<int64_t>(g) * C;
    const float m = mean[rg], s = rstd[rg];
    float acc_d[kLanes] = {}, acc_dn[kLanes] = {};
    int c = 0;
    for (; c + kLanes <= C; c += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        float norm = (x[c + l] - m) * s;
        float dnorm = dy[c + l] * w[c + l];
        acc_d[l] += dnorm;
        acc_dn[l] += dnorm * norm;
      }
    for (int l = 0; c < C; ++c, ++l) {
      float norm = (x[c] - m) * s;
      float dnorm = dy[c] * w[c];
      acc_d[l] += dnorm;
      acc_dn[l] += dnorm * norm;
    }
    float sum_d = 0.0f, sum_dn = 0.0f;
    for (int l = 0; l < kLanes; ++l) {
      sum_d += acc_d[l];
      sum_dn += acc_dn[l];
    }
    const float mean_d = sum_d / static_cast<float>(C);
    const float mean_dn = sum_dn / static_cast<float>(C);
    for (int cc = 0; cc < C; ++cc) {
      float norm = (x[cc] - m) * s;
      dx[cc] = (dy[cc] * w[cc] - mean_d - norm * mean_dn) * s;
    }
  });

  // dgain += Σ_rows dout · norm, dbias += Σ_rows dout: one task per block of columns.
  const int64_t blocks = (width + kColumnBlock - 1) / kColumnBlock;
  parallel_for(blocks, [&](int64_t blk) {
    const int64_t c0 = blk * kColumnBlock;
    const int64_t c1 = c0 + kColumnBlock < width ? c0 + kColumnBlock : width;
    float sg[kColumnBlock] = {}, sb[kColumnBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = inp + r * width;
      const float* dy = dout + r * width;
      const float* m = mean + r * groups;
      const float* s = rstd + r * groups;
      // Walk the block in pieces that lie inside one group, so the inner loop has constant
      // mean/rstd and vectorises.
      for (int64_t c = c0; c < c1;) {
        const int64_t g = c / C;
        const int64_t end = (g + 1) * C < c1 ? (g + 1) * C : c1;
        const float mg = m[g], rg = s[g];
        for (; c < end; ++c) {
          sg[c - c0] += dy[c] * ((x[c] - mg) * rg);
          sb[c - c0] += dy[c];
        }
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      dgain[c] += sg[c - c0];
      dbias[c] += sb[c - c0];
    }
  });
}

}  // namespace hg
