// Deterministic sums over rows, for parameter gradients that reduce over every row of a
// micro-batch (biases, LayerNorm gains, DConv taps).
//
// Rows are cut into chunks whose size depends only on the row count, never on the thread count.
// Each chunk accumulates its own partial sums in row order (one task, streaming row-major
// memory), then the partials are added in chunk order. So the result is bit-identical for any
// number of threads, and both passes run in parallel. (Walking columns down the rows instead
// strides through memory by the row pitch and defeats the hardware prefetchers.)
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/parallel_for.h"

namespace hg {

// Rows per chunk: at most 64 chunks, at least 32 rows each.
inline int64_t row_reduce_chunk_rows(int64_t rows) {
  const int64_t by_count = (rows + 63) / 64;
  return by_count > 32 ? by_count : 32;
}

// partial_body(r0, r1, partial) adds rows [r0, r1) into partial[cols] (zeroed before the call);
// then finish(c, total) receives Σ over chunks of partial[c], for every c < cols.
template <class PartialBody, class Finish>
void reduce_rows(int64_t rows, int64_t cols, PartialBody&& partial_body, Finish&& finish) {
  const int64_t chunk = row_reduce_chunk_rows(rows);
  const int64_t chunks = (rows + chunk - 1) / chunk;
  std::vector<float> partials(static_cast<size_t>(chunks * cols), 0.0f);  // [chunks, cols]
  parallel_for(chunks, [&](int64_t k) {
    const int64_t r0 = k * chunk;
    const int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
    partial_body(r0, r1, partials.data() + k * cols);
  });
  constexpr int64_t kColumnBlock = 256;
  parallel_for((cols + kColumnBlock - 1) / kColumnBlock, [&](int64_t blk) {
    const int64_t c0 = blk * kColumnBlock;
    const int64_t nc = c0 + kColumnBlock < cols ? kColumnBlock : cols - c0;
    float total[kColumnBlock] = {};
    for (int64_t k = 0; k < chunks; ++k) {
      const float* p = partials.data() + k * cols + c0;
      for (int64_t c = 0; c < nc; ++c) total[c] += p[c];
    }
    for (int64_t c = 0; c < nc; ++c) finish(c0 + c, total[c]);
  });
}

// sums[c] += Σ_r m[r·ld + c] for c < cols.
inline void add_column_sums(float* sums, const float* m, int64_t rows, int64_t cols, int64_t ld) {
  reduce_rows(
      rows, cols,
      [&](int64_t r0, int64_t r1, float* partial) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* row = m + r * ld;
          for (int64_t c = 0; c < cols; ++c) partial[c] += row[c];
        }
      },
      [&](int64_t c, float total) { sums[c] += total; });
}

}  // namespace hg
