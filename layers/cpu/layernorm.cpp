// LayerNorm forward/backward (ARCHITECTURE.md §1.2), llm.c style, with the grouped form used by
// long-short attention's per-head LNw / LNg.
#include "layers/layernorm.h"

#include <cmath>
#include <cstring>

#include "core/parallel_for.h"
#include "layers/cpu/layernorm_row.h"
#include "layers/cpu/row_reduce.h"

namespace hg {

using namespace layernorm_rows;

namespace {

// sum_d = Σ dy·w,  sum_dn = Σ dy·w·norm,  norm = (x - m)·s
inline void row_sums_backward(float& sum_d, float& sum_dn, const float* x, const float* dy,
                              const float* w, float m, float s, int C) {
  Lanes acc_d = {}, acc_dn = {}, xv, dyv, wv;
  int c = 0;
  for (; c + kLanes <= C; c += kLanes) {
    load_lanes(xv, x + c);
    load_lanes(dyv, dy + c);
    load_lanes(wv, w + c);
    const Lanes dnorm = dyv * wv;
    acc_d += dnorm;
    acc_dn += dnorm * ((xv - m) * s);
  }
  float tail_d[kLanes] = {}, tail_dn[kLanes] = {};
  for (int l = 0; c < C; ++c, ++l) {
    const float dnorm = dy[c] * w[c];
    tail_d[l] = dnorm;
    tail_dn[l] = dnorm * ((x[c] - m) * s);
  }
  load_lanes(xv, tail_d);
  acc_d += xv;
  load_lanes(xv, tail_dn);
  acc_dn += xv;
  sum_d = sum_lanes(acc_d);
  sum_dn = sum_lanes(acc_dn);
}

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
    layernorm_group(x, w, b, C, mean[rg], rstd[rg], [y](int c, float v) { y[c] = v; });
  });
}

void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int64_t rows, int groups, int C) {
  const int64_t width = static_cast<int64_t>(groups) * C;
  // One pass over the rows computes dinp and each chunk's partial dgain | dbias [2·width].
  reduce_rows(
      rows, 2 * width,
      [&](int64_t r0, int64_t r1, float* partial) {
        float* pg = partial;          // [width] Σ dout · norm
        float* pb = partial + width;  // [width] Σ dout
        for (int64_t r = r0; r < r1; ++r)
          for (int g = 0; g < groups; ++g) {
            const int64_t rg = r * groups + g;
            const int64_t off = r * width + static_cast<int64_t>(g) * C;
            const float* x = inp + off;
            const float* dy = dout + off;
            float* dx = dinp + off;
            const float* w = gain + static_cast<int64_t>(g) * C;
            float* pgg = pg + static_cast<int64_t>(g) * C;
            float* pbg = pb + static_cast<int64_t>(g) * C;
            const float m = mean[rg], s = rstd[rg];
            // dinp = rstd · (dnorm - mean(dnorm) - norm · mean(dnorm · norm)), dnorm = dout · gain
            float sum_d, sum_dn;
            row_sums_backward(sum_d, sum_dn, x, dy, w, m, s, C);
            const float mean_d = sum_d / static_cast<float>(C);
            const float mean_dn = sum_dn / static_cast<float>(C);
            // Two loops, not one: with three output streams the vectoriser runs out of
            // run-time alias checks and leaves the fused loop scalar.
            for (int cc = 0; cc < C; ++cc)
              dx[cc] = (dy[cc] * w[cc] - mean_d - (x[cc] - m) * s * mean_dn) * s;
            for (int cc = 0; cc < C; ++cc) {
              pgg[cc] += dy[cc] * ((x[cc] - m) * s);
              pbg[cc] += dy[cc];
            }
          }
      },
      [&](int64_t c, float total) {
        if (c < width)
          dgain[c] += total;
        else
          dbias[c - width] += total;
      });
}

}  // namespace hg
