// Token embedding: a row lookup in embed/weight [V, d]. No scaling, no positions (§1.1).
#pragma once
#include <cstdint>

namespace hg {

// tokens [rows] -> out [rows, d] (=).
void embedding_forward(float* out, const int32_t* tokens, const float* weight, int64_t rows, int d);
// dweight [V, d] (+=).
void embedding_backward(float* dweight, const float* dout, const int32_t* tokens, int64_t rows, int d);

}  // namespace hg
