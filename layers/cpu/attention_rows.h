// Row kernels of the blocked attention (attention_core.cpp and its bf16 path,
// attention_core_bf16.cpp): the masked softmax of one query row and the fixed-order reductions
// it and the backward's row sums use.
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>

namespace hg::attention_rows {

// Reductions use a fixed 16-lane split: the compiler vectorises them without -ffast-math and
// the summation order is fixed by the code (bit-identical for any thread count or ISA width).
constexpr int kLanes = 16;

// exp(x) for x <= 0 (softmax arguments after subtracting the max), Cephes' expf: Cody-Waite
// reduction and a degree-6 polynomial, within 2 ulp of the correctly rounded value. Written
// with plain arithmetic and bit casts so that the loops calling it vectorise (libm's expf does
// not without -ffast-math, and the softmax would then cost more than its score gemms).
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;  // exp(-87) ~ 1.6e-38: still normal, 2^k below stays valid
  // k = round(x·log2(e)) by the 1.5·2^23 trick: adding it leaves the rounded integer in the
  // low mantissa bits (vectorises where floor/round calls may not).
  constexpr float kRound = 12582912.0f;
  const float shifted = x * 1.44269504088896341f + kRound;
  const float k = shifted - kRound;
  x = x - k * 0.693359375f;
  x = x - k * -2.12194440e-4f;
  const float z = x * x;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const int32_t pow2 = (std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound) + 127)
                       << 23;
  return y * std::bit_cast<float>(pow2);
}

// max(m, x[0..n)). The 16 lane maxima are a GCC vector: the float[16] loop it replaces was
// vectorised across the lanes' scalar chains (16 vmaxss per 16 values), and max is exact, so
// neither the lanes nor their order change the result.
inline float row_max(const float* x, int64_t n, float m) {
  typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
  Lanes acc, v;
  for (int l = 0; l < kLanes; ++l) acc[l] = m;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    std::memcpy(&v, x + i, sizeof v);
    acc = acc < v ? v : acc;
  }
  for (; i < n; ++i) m = m < x[i] ? x[i] : m;
  for (int l = 0; l < kLanes; ++l) m = m < acc[l] ? acc[l] : m;
  return m;
}

// x[i] = exp(x[i] - m)
inline void exp_shift(float* x, int64_t n, float m) {
  for (int64_t i = 0; i < n; ++i) x[i] = exp_nonpositive(x[i] - m);
}

// acc[lane] += x[i] (fixed lane order).
inline void lane_accumulate(const float* x, int64_t n, float* acc) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += x[i];
}

inline float lane_total(const float* acc) {
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// acc[lane] += a[i]·b[i] (fixed lane order).
inline void lane_dot_accumulate(const float* a, const float* b, int64_t n, float* acc) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
}

inline float lane_dot(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  lane_dot_accumulate(a, b, n, acc);
  return lane_total(acc);
}

inline void zero(float* x, int64_t n) { std::fill(x, x + n, 0.0f); }

// xt[c, j] = x[j, c] for j < rows, c < e (row strides ldx and ldt).
inline void transpose(float* xt, int64_t ldt, const float* x, int64_t ldx, int64_t rows, int e) {
  constexpr int64_t kTile = 16;  // rows of x per pass: one cache line of each xt row
  for (int64_t j0 = 0; j0 < rows; j0 += kTile) {
    const int64_t j1 = std::min(rows, j0 + kTile);
    for (int c = 0; c < e; ++c)
      for (int64_t j = j0; j < j1; ++j) xt[c * ldt + j] = x[j * ldx + c];
  }
}

// y[j, c] = convert(x[j, c]) for j < rows, c < e (row strides ldx and e): an operand's rounded
// copy, as float32 holding bfloat16 values or as the bfloat16 bits.
template <class Out, class Convert>
inline void copy_converted(Out* y, const float* x, int64_t ldx, int64_t rows, int e,
                           Convert convert) {
  for (int64_t j = 0; j < rows; ++j)
    for (int c = 0; c < e; ++c) y[j * e + c] = convert(x[j * ldx + c]);
}

// Masked softmax of one row of a block, in place: [0, g_vis) of the G global columns and
// [lo, hi) of the window columns are visible, everything else becomes exactly 0 (so products
// with keys a row may not see add nothing, and causality holds bit for bit).
inline void masked_softmax_row(float* row, int64_t G, int64_t g_vis, int64_t W, int64_t lo,
                               int64_t hi) {
  float* win = row + G;
  float m = -std::numeric_limits<float>::infinity();
  m = row_max(row, g_vis, m);
  m = row_max(win + lo, hi - lo, m);
  exp_shift(row, g_vis, m);
  exp_shift(win + lo, hi - lo, m);
  float acc[kLanes] = {};
  lane_accumulate(row, g_vis, acc);
  lane_accumulate(win + lo, hi - lo, acc);
  const float inv = 1.0f / lane_total(acc);
  for (int64_t i = 0; i < g_vis; ++i) row[i] *= inv;
  for (int64_t i = lo; i < hi; ++i) win[i] *= inv;
  zero(row + g_vis, G - g_vis);
  zero(win, lo);
  zero(win + hi, W - hi);
}

}  // namespace hg::attention_rows
