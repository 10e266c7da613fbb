// Primer's causal depthwise convolution (§1.3): 3 taps per channel, within each sequence.
#include "layers/dconv.h"

#include "core/parallel_for.h"

namespace hg {

void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C) {
  const float* a0 = taps;          // multiplies Z[t]
  const float* a1 = taps + C;      // Z[t-1]
  const float* a2 = taps + 2 * C;  // Z[t-2]
  parallel_for(B * n, [&](int64_t bt) {
    const int64_t t = bt % n;  // position inside its sequence: Z[<0] = 0 at sequence starts
    const float* z0 = inp + bt * C;
    float* y = out + bt * C;
    if (t >= 2) {
      const float* z1 = z0 - C;
      const float* z2 = z0 - 2 * C;
      for (int c = 0; c < C; ++c) y[c] = a0[c] * z0[c] + a1[c] * z1[c] + a2[c] * z2[c];
    } else if (t == 1) {
      const float* z1 = z0 - C;
      for (int c = 0; c < C; ++c) y[c] = a0[c] * z0[c] + a1[c] * z1[c];
    } else {
      for (int c = 0; c < C; ++c) y[c] = a0[c] * z0[c];
    }
  });
}

void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C) {
  const float* a0 = taps;
  const float* a1 = taps + C;
  const float* a2 = taps + 2 * C;
  // dZ[t] = a0·dY[t] + a1·dY[t+1] + a2·dY[t+2], the terms past the sequence end absent.
  parallel_for(B * n, [&](int64_t bt) {
    const int64_t t = bt % n;
    const float* g0 = dout + bt * C;
    float* dz = dinp + bt * C;
    if (t + 2 < n) {
      const float* g1 = g0 + C;
      const float* g2 = g0 + 2 * C;
      for (int c = 0; c < C; ++c) dz[c] = a0[c] * g0[c] + a1[c] * g1[c] + a2[c] * g2[c];
    } else if (t + 1 < n) {
      const float* g1 = g0 + C;
      for (int c = 0; c < C; ++c) dz[c] = a0[c] * g0[c] + a1[c] * g1[c];
    } else {
      for (int c = 0; c < C; ++c) dz[c] = a0[c] * g0[c];
    }
  });

  // dtaps[a, c] += Σ_{b,t} dY[b,t,c] · Z[b,t-a,c]. One task per block of channels reduces over
  // all rows in a fixed order (bit-identical for any thread count).
  constexpr int kBlock = 64;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
  parallel_for(blocks, [&](int64_t blk) {
    const int c0 = static_cast<int>(blk) * kBlock;
    const int nc = c0 + kBlock < C ? kBlock : C - c0;
    float s0[kBlock] = {}, s1[kBlock] = {}, s2[kBlock] = {};
    for (int64_t b = 0; b < B; ++b) {
      const float* z = inp + b * n * C + c0;
      const float* g = dout + b * n * C + c0;
      for (int64_t t = 0; t < n; ++t) {
        const float* gt = g + t * C;
        const float* zt = z + t * C;
        for (int c = 0; c < nc; ++c) s0[c] += gt[c] * zt[c];
        if (t >= 1)
          for (int c = 0; c < nc; ++c) s1[c] += gt[c] * zt[c - C];
        if (t >= 2)
          for (int c = 0; c < nc; ++c) s2[c] += gt[c] * zt[c - 2 * C];
      }
    }
    for (int c = 0; c < nc; ++c) {
      dtaps[c0 + c] += s0[c];
      dtaps[C + c0 + c] += s1[c];
      dtaps[2 * C + c0 + c] += s2[c];
    }
  });
}

}  // namespace hg
