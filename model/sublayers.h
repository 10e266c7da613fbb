// Pre-LN residual sublayers shared by stack blocks and attention resampling (§1.2, §1.4):
//   ffn sublayer:        y = x + Dropout(FFN_w(LN(x)))
//   attention sublayer:  y = x + Dropout(Attn(LN(x)))
// Dropout sits on the branch output, before the residual add (§1.6).
//
// Tensor parallelism (tensor_parallel.h): the attention and FFN parameters are this rank's
// slices, the branch output is all-reduced over the group before dropout (so dropout, the residual
// and everything after see the full d-vector, identical on every rank), and in the backward the
// gradient of the LN output is all-reduced before the LN backward (Megatron's f and g operators).
//
// Every function computes through the Backend it is given (the store's, layers/backend.h); the
// caches' Tensors are allocated on that backend's device.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/activation.h"
#include "layers/attention.h"
#include "layers/backend.h"
#include "layers/dropout.h"
#include "layers/ffn.h"
#include "model/params.h"
#include "model/tensor_parallel.h"

namespace hg {

struct Param;
class ParamStore;

// A LayerNorm's parameters and its per-call statistics.
struct NormParams {
  Param* gain = nullptr;
  Param* bias = nullptr;
};
NormParams add_norm(ParamStore& store, const std::string& prefix, int width);

struct NormCache {
  Tensor out;   // [rows, d]
  Tensor mean;  // [rows]
  Tensor rstd;  // [rows]
};
// out = LN(x) into cache.out; x must stay alive (and unchanged) until norm_backward.
void norm_forward(Backend& be, NormCache& cache, const float* x, const NormParams& p, int64_t rows,
                  int d);
// dx (=) from dout; accumulates the gain/bias gradients.
void norm_backward(Backend& be, float* dx, const float* dout, const NormCache& cache,
                   const float* x, const NormParams& p, int64_t rows, int d);

struct FfnParams {
  Param* w1 = nullptr;  // [d, F] (this rank's [d, F/tp] under tensor parallelism)
  Param* b1 = nullptr;  // [F]
  Param* w2 = nullptr;  // [F, d]
  Param* b2 = nullptr;  // [d], replicated
  int F = 0;            // stored width held here (local hidden units)
  int canonical_F = 0;  // stored width of the canonical tensors (model.ffn, or the extracted width)
  std::vector<int> granularities = {1};  // band boundaries F/g of the tensor-parallel split
};
// Registers the FFN of `prefix` split over store.tensor_parallel() in bands at the widths
// canonical_F / g for g in `granularities` ({1}: one band).
FfnParams add_ffn(ParamStore& store, const std::string& prefix, int d, int F, float w2_std,
                  const std::vector<int>& granularities = {1});
// The local active width for canonical width `width`.
int local_width(const FfnParams& ffn, const TensorParallel& tp, int width);

struct FfnSublayerCache {
  const float* x = nullptr;  // [rows, d] the sublayer input: the caller's, not a copy
  NormCache norm;
  FfnCache ffn;
  int width = 0;
};
// out = x + Dropout(FFN_width(LN(x))). out may not alias x. `width` is local (local_width).
// The caller keeps x unchanged until the backward (every caller has it in its own cache: the
// block's h between its sublayers, the resampling tail's a), so the cache holds no copy of it.
void ffn_sublayer_forward(Backend& be, float* out, FfnSublayerCache& cache, const float* x,
                          const NormParams& norm, const FfnParams& ffn, int64_t B, int64_t n, int d,
                          int width, Activation act, const DropoutSite& drop,
                          const TensorParallel& tp = {});
// dx (=) = dout + the branch's gradient.
void ffn_sublayer_backward(Backend& be, float* dx, const float* dout, FfnSublayerCache& cache,
                           const NormParams& norm, const FfnParams& ffn, int64_t B, int64_t n,
                           int d, Activation act, const DropoutSite& drop,
                           const TensorParallel& tp = {});

struct AttentionSublayerCache {
  Tensor x;  // [rows, d]
  NormCache norm;
  AttentionCache attn;
};
void attention_sublayer_forward(Backend& be, float* out, AttentionSublayerCache& cache,
                                const float* x, const NormParams& norm, const AttentionParams& w,
                                const AttentionConfig& cfg, int64_t B, int64_t n,
                                const DropoutSite& drop, const TensorParallel& tp = {});
void attention_sublayer_backward(Backend& be, float* dx, const float* dout,
                                 AttentionSublayerCache& cache, const NormParams& norm,
                                 const AttentionParams& w, const AttentionParams& g,
                                 const AttentionConfig& cfg, int64_t B, int64_t n,
                                 const DropoutSite& drop, const TensorParallel& tp = {});

// The backend's scratch slots (Backend::scratch) that model/ uses, one purpose each.
constexpr int kBranchGradientSlot = 0;  // [rows, d] a branch gradient through dropout's mask
constexpr int kNormGradientSlot = 1;    // [rows, d] gradient w.r.t. a sublayer's LN output
constexpr int kBlockGradientSlot = 2;   // [rows, d] a block's dh between its two sublayers
constexpr int kTokenLossSlot = 3;       // [rows] the head's per-token losses

// Reshapes `t` (on be's device) only on a shape change: callers overwrite every element
// (activations and their gradients are assigned), so Tensor::reset's zero-fill would be wasted
// work in the steady state.
void ensure_shape(Backend& be, Tensor& t, const Shape& shape);

// t (=) a zero-filled tensor of `shape` on be's device (Tensor::reset there).
void reset_on(Backend& be, Tensor& t, const Shape& shape);

// The dropout site of `canonical_site` for a slot's micro-batch.
DropoutSite make_dropout_site(uint64_t seed, int64_t step, int64_t first_sample, float p,
                              const std::string& canonical_site);

}  // namespace hg
