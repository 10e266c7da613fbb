// The layers' caches and per-thread workspaces grow to the largest size asked for and never
// shrink: after the first step (the largest micro-batch seen) no layer allocates.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace hg {

// At least n elements of `v`; the values already there are kept.
template <class T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

// At least n floats of `v`, the first n set to zero (gradients that are accumulated into).
inline float* grow_zero(std::vector<float>& v, int64_t n) {
  float* p = grow(v, n);
  std::fill(p, p + n, 0.0f);
  return p;
}

}  // namespace hg
