// Primer's causal depthwise convolution (§1.3): 3 taps per channel, within each sequence.
#include "layers/dconv.h"

#include "core/bf16.h"
#include "core/parallel_for.h"
#include "layers/cpu/row_reduce.h"

namespace hg {

void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C,
                   int64_t ldt) {
  const float* a0 = taps;            // multiplies Z[t]
  const float* a1 = taps + ldt;      // Z[t-1]
  const float* a2 = taps + 2 * ldt;  // Z[t-2]
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

namespace {

// The backward's one pass over the rows: write(i, dZ[i]) with dZ[t] = a0·dY[t] + a1·dY[t+1] +
// a2·dY[t+2] (terms past the sequence end absent), and each chunk's partial
// dtaps[a, c] = Σ dY[t, c] · Z[t-a, c] (Z[<0] = 0).
template <class Write>
void dconv_backward_rows(float* dtaps, const float* dout, const float* inp, const float* taps,
                         int64_t B, int64_t n, int C, int64_t ldt, Write write) {
  const float* a0 = taps;
  const float* a1 = taps + ldt;
  const float* a2 = taps + 2 * ldt;
  reduce_rows(
      B * n, 3 * static_cast<int64_t>(C),
      [&](int64_t r0, int64_t r1, float* partial) {
        float* s0 = partial;
        float* s1 = partial + C;
        float* s2 = partial + 2 * C;
        for (int64_t bt = r0; bt < r1; ++bt) {
          const int64_t t = bt % n;
          const float* g0 = dout + bt * C;
          const float* z0 = inp + bt * C;
          const int64_t row = bt * C;
          if (t + 2 < n) {
            const float* g1 = g0 + C;
            const float* g2 = g0 + 2 * C;
            for (int c = 0; c < C; ++c)
              write(row + c, a0[c] * g0[c] + a1[c] * g1[c] + a2[c] * g2[c]);
          } else if (t + 1 < n) {
            const float* g1 = g0 + C;
            for (int c = 0; c < C; ++c) write(row + c, a0[c] * g0[c] + a1[c] * g1[c]);
          } else {
            for (int c = 0; c < C; ++c) write(row + c, a0[c] * g0[c]);
          }
          for (int c = 0; c < C; ++c) s0[c] += g0[c] * z0[c];
          if (t >= 1)
            for (int c = 0; c < C; ++c) s1[c] += g0[c] * z0[c - C];
          if (t >= 2)
            for (int c = 0; c < C; ++c) s2[c] += g0[c] * z0[c - 2 * C];
        }
      },
      [&](int64_t i, float total) { dtaps[(i / C) * ldt + i % C] += total; });  // i = tap·C + c
}

}  // namespace

void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C, int64_t ldt) {
  dconv_backward_rows(dtaps, dout, inp, taps, B, n, C, ldt,
                      [dinp](int64_t i, float g) { dinp[i] = g; });
}

void dconv_backward_bf16(uint16_t* dinp16, float* dtaps, const float* dout, const float* inp,
                         const float* taps, int64_t B, int64_t n, int C, int64_t ldt) {
  dconv_backward_rows(dtaps, dout, inp, taps, B, n, C, ldt,
                      [dinp16](int64_t i, float g) { dinp16[i] = bf16_bits(g); });
}

}  // namespace hg
