// Primer's causal depthwise convolution (§1.3), 3 taps, no bias, within each sequence:
//   out[t, c] = taps[0,c]·Z[t,c] + taps[1,c]·Z[t-1,c] + taps[2,c]·Z[t-2,c],  Z[<0] = 0.
#pragma once
#include <cstdint>

namespace hg {

// inp, out [B, n, C]; taps [3, C].
void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C);
// dinp [B, n, C] (=); dtaps [3, C] (+=).
void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C);

}  // namespace hg
