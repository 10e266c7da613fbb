// Primer's causal depthwise convolution (§1.3), 3 taps, no bias, within each sequence:
//   out[t, c] = taps[0,c]·Z[t,c] + taps[1,c]·Z[t-1,c] + taps[2,c]·Z[t-2,c],  Z[<0] = 0.
// `ldt` is the taps' row stride: the first C columns of wider taps (the heads a MatFormer
// sub-model runs of dconv_* [3, S·e], ARCHITECTURE.md §9.6) are C with ldt = S·e.
#pragma once
#include <cstdint>

namespace hg {

// inp, out [B, n, C]; taps [3, ldt], columns [0, C) used.
void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C,
                   int64_t ldt);
// dinp [B, n, C] (=); dtaps [3, ldt] (+=, columns [0, C) only; the others are left untouched).
void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C, int64_t ldt);
// The same, with dinp written only as its bfloat16 (bf16_bits, core/bf16.h): at
// train.precision bf16 the CPU attention's projection products read nothing else of it.
void dconv_backward_bf16(uint16_t* dinp16, float* dtaps, const float* dout, const float* inp,
                         const float* taps, int64_t B, int64_t n, int C, int64_t ldt);

}  // namespace hg
