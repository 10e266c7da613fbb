// Token embedding (§1.1): a row lookup, and its scatter-add backward.
#include "layers/embedding.h"

#include <cstring>

#include "core/parallel_for.h"

namespace hg {

void embedding_forward(float* out, const int32_t* tokens, const float* weight, int64_t rows,
                       int d) {
  parallel_for(rows, [&](int64_t r) {
    std::memcpy(out + r * d, weight + static_cast<int64_t>(tokens[r]) * d, sizeof(float) * d);
  });
}

void embedding_backward(float* dweight, const float* dout, const int32_t* tokens, int64_t rows,
                        int d) {
  // Repeated tokens hit the same row of dweight. Splitting the columns (not the rows) across
  // tasks means every element is updated by one task, in row order: no races and bit-identical
  // sums for any thread count.
  constexpr int kBlock = 64;
  const int64_t blocks = (d + kBlock - 1) / kBlock;
  parallel_for(blocks, [&](int64_t blk) {
    const int c0 = static_cast<int>(blk) * kBlock;
    const int nc = c0 + kBlock < d ? kBlock : d - c0;
    for (int64_t r = 0; r < rows; ++r) {
      float* dw = dweight + static_cast<int64_t>(tokens[r]) * d + c0;
      const float* g = dout + r * d + c0;
      for (int c = 0; c < nc; ++c) dw[c] += g[c];
    }
  });
}

}  // namespace hg
