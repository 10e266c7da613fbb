// One row group of LayerNorm (layernorm.cpp), shared with the code that fuses it into a pass of
// its own (the CPU attention's bf16 window copies, attention.cpp) so both compute the same bits.
#pragma once
#include <cmath>
#include <cstring>

#include "layers/layernorm.h"

namespace hg::layernorm_rows {

// Row sums use a fixed 16-lane split written with GCC vector types: the summation order is
// fixed by the code (bit-identical whatever the thread count), and it compiles to one zmm
// accumulator on AVX-512 (two ymm on AVX2). Plain loops over a float[16] accumulator were
// vectorised across the outer loop with permutes, 4x slower. Vector values are kept inside
// function bodies (never parameters or results) so the ABI does not depend on -march.
constexpr int kLanes = 16;
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));

inline void load_lanes(Lanes& v, const float* p) { std::memcpy(&v, p, sizeof v); }

inline float sum_lanes(const Lanes& v) {
  float a[kLanes];
  std::memcpy(a, &v, sizeof a);
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += a[l];
  return s;
}

// Σ x[c]
inline float row_sum(const float* x, int C) {
  Lanes acc = {}, v;
  int c = 0;
  for (; c + kLanes <= C; c += kLanes) {
    load_lanes(v, x + c);
    acc += v;
  }
  float tail[kLanes] = {};
  for (int l = 0; c < C; ++c, ++l) tail[l] = x[c];
  load_lanes(v, tail);
  acc += v;
  return sum_lanes(acc);
}

// Σ (x[c] - m)²
inline float row_sum_sq_dev(const float* x, float m, int C) {
  Lanes acc = {}, v;
  int c = 0;
  for (; c + kLanes <= C; c += kLanes) {
    load_lanes(v, x + c);
    v -= m;
    acc += v * v;
  }
  float tail[kLanes] = {};
  for (int l = 0; c < C; ++c, ++l) tail[l] = (x[c] - m) * (x[c] - m);
  load_lanes(v, tail);
  acc += v;
  return sum_lanes(acc);
}

// y = (x - mean)·rstd·w + b over one group x [C], each value handed to write(c, y_c); mean and
// rstd are set to the statistics used. Two passes (mean, then squared deviations): E[x²] - mean²
// cancels badly when |mean| >> std.
template <class Write>
inline void layernorm_group(const float* x, const float* w, const float* b, int C, float& mean,
                            float& rstd, Write write) {
  const float m = row_sum(x, C) / static_cast<float>(C);
  const float var = row_sum_sq_dev(x, m, C) / static_cast<float>(C);  // biased, as the spec says
  const float s = 1.0f / std::sqrt(var + kLayerNormEps);
  for (int c = 0; c < C; ++c) write(c, (x[c] - m) * s * w[c] + b[c]);
  mean = m;
  rstd = s;
}

}  // namespace hg::layernorm_rows
