// The hourglass's shortening and upsampling pieces (§1.1, §1.4). All sequences are [B, n, d].
#pragma once
#include <cstdint>
#include <string>

#include "core/error.h"

namespace hg {

// Throw UsageError naming `what` unless k >= 1 and n % k == 0 (pooling) / k >= 1 (upsampling);
// every backend checks these before its kernels.
// Inline: the CUDA backend (hg_cuda) calls them and links nothing of hg_layers.
inline void check_resample_factor(int64_t n, int k, const char* what) {
  require(k >= 1 && n % k == 0, std::string(what) + ": length " + std::to_string(n) +
                                    " is not a multiple of the shortening factor " +
                                    std::to_string(k));
}
inline void check_upsample_factor(int k, const char* what) {
  require(k >= 1, std::string(what) + ": factor " + std::to_string(k));
}

// ShiftRight(h, s)[t] = h[t-s] (t >= s) else 0, per sequence. out [B, n, d] (=).
void shift_right_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int s);
void shift_right_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int s);

// Linear pooling: concat(z[jk..jk+k-1]) [k·d] · pool/weight [k·d, d] + bias (position-major).
// A [B, n, d] sequence is, in memory, exactly [B·n/k, k·d] rows: this is linear_forward.
void pool_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                         int64_t B, int64_t n, int d, int k);
void pool_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, int64_t B, int64_t n, int d,
                          int k);
// Average pooling: mean of z[jk .. jk+k-1]. out [B, n/k, d].
void pool_avg_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int k);
void pool_avg_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int k);

// Linear upsampling: row j of (s up/linear/weight [d, k·d] + bias [k·d]) split into k rows.
// inp [B, m, d] -> out [B, m·k, d].
void upsample_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                             int64_t B, int64_t m, int d, int k);
void upsample_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                              const float* inp, const float* weight, int64_t B, int64_t m, int d,
                              int k);
// Repeat upsampling: row j copied to rows jk .. jk+k-1.
void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d, int k);
void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d, int k);

}  // namespace hg
