// LayerNorm, ARCHITECTURE.md §1.2: (x - mean) / sqrt(var + 1e-5) · gain + bias, biased variance.
// Grouped form: each row of `inp` holds `groups` independent C-wide vectors; group g is scaled by
// gain[g·C .. g·C+C-1]. groups = 1 is the ordinary LayerNorm over d; groups = H, C = e is the
// per-head LNw / LNg of long-short attention.
// Conventions (all layers): activation gradients are assigned (=), parameter gradients accumulate
// (+=); every pointer is host memory; `rows` counts rows across the micro-batch.
#pragma once
#include <cstdint>

namespace hg {

constexpr float kLayerNormEps = 1e-5f;

// inp, out [rows, groups·C]; gain, bias [groups·C]; mean, rstd [rows·groups] saved for backward.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int64_t rows, int groups, int C);
// dinp [rows, groups·C] (=); dgain, dbias [groups·C] (+=).
void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int64_t rows, int groups, int C);

}  // namespace hg
