// Element-wise kernels on host buffers (OpenMP inside): residual adds and the like.
#pragma once
#include <cstdint>

namespace hg {

void add_into(float* y, const float* x, int64_t n);               // y += x
void add(float* out, const float* a, const float* b, int64_t n);  // out = a + b
void copy(float* out, const float* x, int64_t n);                 // out = x
void scale_inplace(float* y, float s, int64_t n);                 // y *= s
double sum_squares(const float* x, int64_t n);                    // Σ x² in double

}  // namespace hg
