// Softmax attention on the device for every attention of the model (layers/attention_core.h's
// two key segments under ONE softmax: full causal, long_short's window + compressed chunks, the
// resampling MHA's funnel masks), and RoPE; with their launch plans (core/cuda/launch.cuh):
// compiled by nvcc in attention.cu and by g++ against the CPU emulation of tests/cuda_emulation.
//
// Simple kernels, not tuned (no GPU to measure on): one warp per (query row, sequence·head) in
// the forward, an online (running-max) softmax over the visible keys, each lane owning the
// channels lane, lane+32, ... of the head (e <= 128). The forward keeps only the log-sum-exp of
// each row (O(rows) memory, never nq·nk); the backward recomputes the probabilities from it,
// one warp per query row for dQ and one warp per key for dK and dV, each summing over its
// queries in order: no atomics, the same bits on every run (not the CPU's bits: it sums blocks
// in another order).
#pragma once
#include "core/cuda/bf16_kernels.cuh"
#include "core/cuda/launch.cuh"
#include "layers/cuda/attention_operands.h"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

constexpr int kMaxHeadDim = kMaxAttentionHeadDim;  // attention_operands.h, checked on the host
constexpr int kChannelsPerLane = kMaxHeadDim / kWarp;
constexpr int kAttentionWarps = 4;  // rows (or keys) per 128-thread block

__device__ __forceinline__ int64_t window_lo(const KeyMask& m, int64_t t) {
  return m.kind == kCausalMask && t - m.window + 1 > 0 ? t - m.window + 1 : 0;
}
__device__ __forceinline__ int64_t window_hi(const KeyMask& m, int64_t t, int64_t nk) {
  const int64_t hi = m.kind == kCausalMask       ? t + 1
                     : m.kind == kFunnelDownMask ? (t + 1) * m.factor
                                                 : t / m.factor + 1;
  return hi < nk ? hi : nk;
}
__device__ __forceinline__ int64_t global_len(const KeyMask& m, int64_t t) {
  return m.rank > 0 ? t / m.chunk * m.rank : 0;
}
// The queries [first, last] that see window key j (the inverse of window_lo/hi).
__device__ __forceinline__ void window_queries(const KeyMask& m, int64_t j, int64_t nq,
                                               int64_t* first, int64_t* last) {
  *first = m.kind == kCausalMask ? j : m.kind == kFunnelDownMask ? j / m.factor : j * m.factor;
  *last = m.kind == kCausalMask && j + m.window - 1 < nq - 1 ? j + m.window - 1 : nq - 1;
}

// A product's operand: v, or v rounded to bfloat16 under train.precision bf16 (x.bf16).
__device__ __forceinline__ float operand(float v, bool bf16) {
  if (!bf16) return v;
  const uint32_t bits = static_cast<uint32_t>(bf16_bits_on_device(v)) << 16;
  float r;
  memcpy(&r, &bits, sizeof r);
  return r;
}

// The lane's channels of an e-vector (zeros past e), as operands (rounded under bf16).
__device__ __forceinline__ void load_lane(float (&dst)[kChannelsPerLane], const float* row, int e,
                                          bool bf16 = false) {
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  for (int i = 0; i < kChannelsPerLane; ++i) {
    const int c = lane + i * kWarp;
    dst[i] = c < e ? operand(row[c], bf16) : 0.0f;
  }
}
// a · b over the head's e channels, b read as an operand (a is one already); every lane gets the
// same bits (reduce.cuh's butterfly).
__device__ __forceinline__ float dot_lane(const float (&a)[kChannelsPerLane], const float* b, int e,
                                          bool bf16 = false) {
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  float s = 0.0f;
  for (int i = 0; i < kChannelsPerLane; ++i) {
    const int c = lane + i * kWarp;
    if (c < e) s += a[i] * operand(b[c], bf16);
  }
  return warp_reduce(s, SumOp{});
}

// Running softmax state of one query row: max m, Σ exp(s - m), Σ exp(s - m)·v (lane channels).
// Under bf16 the value product's operands are rounded: exp(s - m) unnormalised (the CPU rounds
// the normalised probability, so the two differ by the rounding of a scale), and v.
struct OnlineSoftmax {
  float m = -INFINITY, l = 0.0f;
  float o[kChannelsPerLane] = {};
  __device__ __forceinline__ void add(float s, const float* v, int e, bool bf16) {
    const int lane = static_cast<int>(threadIdx.x % kWarp);
    const float m_new = fmaxf(m, s);
    const float correction = expf(m - m_new);  // 0 on the first key (m = -inf)
    const float p = expf(s - m_new);
    l = l * correction + p;
    const float pv = operand(p, bf16);
    for (int i = 0; i < kChannelsPerLane; ++i) {
      const int c = lane + i * kWarp;
      o[i] = o[i] * correction + (c < e ? pv * operand(v[c], bf16) : 0.0f);
    }
    m = m_new;
  }
};

// The warp's (slice, row) coordinates: grid (ceil(rows / kAttentionWarps), B·H).
struct WarpRow {
  int64_t row, b;
  int h;
};
__device__ __forceinline__ WarpRow warp_row(int H) {
  WarpRow w;
  w.row = static_cast<int64_t>(blockIdx.x) * kAttentionWarps + threadIdx.x / kWarp;
  w.b = blockIdx.y / H;
  w.h = static_cast<int>(blockIdx.y % H);
  return w;
}

// out [B, nq, H·e] (=) = softmax(scores) · V over both segments; lse [B·H, nq] = log Σ exp(s)
// (skipped when null). Query row i is position at.q0 + i; `at` gives the keys' sequence strides.
__global__ void attention_forward_kernel(float* out, float* lse, AttentionOperands x,
                                         QueryPlacement at) {
  const WarpRow w = warp_row(x.H);
  if (w.row >= x.nq) return;  // whole warps: the shuffles stay full-mask
  const int64_t HE = static_cast<int64_t>(x.H) * x.e, head = static_cast<int64_t>(w.h) * x.e;
  const int64_t t = at.q0 + w.row, row = (w.b * x.nq + w.row) * HE + head;
  OnlineSoftmax acc;
  float q[kChannelsPerLane];
  const int64_t G = x.segments & kGlobalSegment ? global_len(x.mask, t) : 0;
  if (G > 0) {
    load_lane(q, x.q_global + row, x.e, x.bf16);
    const float* kg = x.k_global + w.b * at.g_rows * HE + head;
    const float* vg = x.v_global + w.b * at.g_rows * HE + head;
    for (int64_t g = 0; g < G; ++g)
      acc.add(dot_lane(q, kg + g * HE, x.e, x.bf16) * x.scale, vg + g * HE, x.e, x.bf16);
  }
  if (x.segments & kWindowSegment) {
    load_lane(q, x.q_window + row, x.e, x.bf16);
    const float* kw = x.k_window + w.b * at.k_rows * HE + head;
    const float* vw = x.v_window + w.b * at.k_rows * HE + head;
    for (int64_t j = window_lo(x.mask, t); j < window_hi(x.mask, t, x.nk); ++j)
      acc.add(dot_lane(q, kw + j * HE, x.e, x.bf16) * x.scale, vw + j * HE, x.e, x.bf16);
  }
  // A row that sees no key (only possible for the global segment alone, before the first whole
  // chunk): output 0 and log-sum-exp -inf, so the merge gives it weight 0.
  const bool seen = acc.l > 0.0f;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  for (int i = 0; i < kChannelsPerLane; ++i)
    if (lane + i * kWarp < x.e) out[row + lane + i * kWarp] = seen ? acc.o[i] / acc.l : 0.0f;
  if (lane == 0 && lse != nullptr)
    lse[blockIdx.y * x.nq + w.row] = seen ? acc.m + logf(acc.l) : -INFINITY;
}

// Per query row: D = dO·O (the softmax backward's row term, saved to delta [B·H, nq]), then
// dq = scale · Σ_j p_j (dO·v_j - D) k_j over each segment's keys, p_j = exp(s_j - lse). Only the
// segments of x.segments: out and lse are the joint softmax's, so a segment alone gets its exact
// share (attention_split.h).
__global__ void attention_backward_query_kernel(AttentionGrads g, float* delta, const float* dout,
                                                const float* out, const float* lse,
                                                AttentionOperands x) {
  const WarpRow w = warp_row(x.H);
  if (w.row >= x.nq) return;
  const int64_t HE = static_cast<int64_t>(x.H) * x.e, head = static_cast<int64_t>(w.h) * x.e;
  const int64_t t = w.row, row = (w.b * x.nq + t) * HE + head;
  const int64_t nglobal = x.mask.rank > 0 ? x.nq / x.mask.chunk * x.mask.rank : 0;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  float dy[kChannelsPerLane], q[kChannelsPerLane];
  load_lane(dy, dout + row, x.e);
  const float D = dot_lane(dy, out + row, x.e);  // float32: a row sum, not a product's operand
  if (x.bf16) load_lane(dy, dout + row, x.e, true);
  const float L = lse[blockIdx.y * x.nq + t];
  if (lane == 0) delta[blockIdx.y * x.nq + t] = D;
  for (int segment = 0; segment < 2; ++segment) {  // 0: global keys, 1: window keys
    const bool global = segment == 0;
    if (!(x.segments & (global ? kGlobalSegment : kWindowSegment))) continue;
    if (global && global_len(x.mask, t) == 0) {
      if (g.dq_global != nullptr)
        for (int i = 0; i < kChannelsPerLane; ++i)
          if (lane + i * kWarp < x.e) g.dq_global[row + lane + i * kWarp] = 0.0f;
      continue;
    }
    const float* k =
        global ? x.k_global + w.b * nglobal * HE + head : x.k_window + w.b * x.nk * HE + head;
    const float* v =
        global ? x.v_global + w.b * nglobal * HE + head : x.v_window + w.b * x.nk * HE + head;
    const int64_t lo = global ? 0 : window_lo(x.mask, t);
    const int64_t hi = global ? global_len(x.mask, t) : window_hi(x.mask, t, x.nk);
    load_lane(q, (global ? x.q_global : x.q_window) + row, x.e, x.bf16);
    float dq[kChannelsPerLane] = {};
    for (int64_t j = lo; j < hi; ++j) {
      const float p = expf(dot_lane(q, k + j * HE, x.e, x.bf16) * x.scale - L);
      const float ds = operand(p * (dot_lane(dy, v + j * HE, x.e, x.bf16) - D), x.bf16);
      for (int i = 0; i < kChannelsPerLane; ++i)
        if (lane + i * kWarp < x.e) dq[i] += ds * operand(k[j * HE + lane + i * kWarp], x.bf16);
    }
    float* dst = global ? g.dq_global : g.dq_window;
    for (int i = 0; i < kChannelsPerLane; ++i)
      if (lane + i * kWarp < x.e) dst[row + lane + i * kWarp] = dq[i] * x.scale;
  }
}

// Per key (window keys j < nk, then global keys): over the queries that see it, in order,
// dv += p·dO_t and dk += scale · p (dO_t·v - D_t) q_t; added (+=) into the key's gradient rows.
__global__ void attention_backward_key_kernel(AttentionGrads g, const float* dout, const float* lse,
                                              const float* delta, AttentionOperands x) {
  const WarpRow w = warp_row(x.H);
  const int64_t nglobal = x.mask.rank > 0 ? x.nq / x.mask.chunk * x.mask.rank : 0;
  if (w.row >= x.nk + nglobal) return;
  const int64_t HE = static_cast<int64_t>(x.H) * x.e, head = static_cast<int64_t>(w.h) * x.e;
  const bool global = w.row >= x.nk;
  if (!(x.segments & (global ? kGlobalSegment : kWindowSegment))) return;  // the whole warp
  const int64_t j = global ? w.row - x.nk : w.row;
  const int64_t key = (w.b * (global ? nglobal : x.nk) + j) * HE + head;
  const float* q = (global ? x.q_global : x.q_window) + w.b * x.nq * HE + head;
  const float* dy = dout + w.b * x.nq * HE + head;
  int64_t first = 0, last = 0;
  if (global) {
    first = (j / x.mask.rank + 1) * x.mask.chunk;
    last = x.nq - 1;
  } else {
    window_queries(x.mask, j, x.nq, &first, &last);
  }
  float k[kChannelsPerLane], v[kChannelsPerLane], dk[kChannelsPerLane] = {},
                                                  dv[kChannelsPerLane] = {};
  load_lane(k, (global ? x.k_global : x.k_window) + key, x.e, x.bf16);
  load_lane(v, (global ? x.v_global : x.v_window) + key, x.e, x.bf16);
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  for (int64_t t = first; t <= last; ++t) {
    const float p =
        expf(dot_lane(k, q + t * HE, x.e, x.bf16) * x.scale - lse[blockIdx.y * x.nq + t]);
    const float ds = p * (dot_lane(v, dy + t * HE, x.e, x.bf16) - delta[blockIdx.y * x.nq + t]);
    const float pv = operand(p, x.bf16), dsv = operand(ds, x.bf16);
    for (int i = 0; i < kChannelsPerLane; ++i) {
      const int c = lane + i * kWarp;
      if (c < x.e) {
        dv[i] += pv * operand(dy[t * HE + c], x.bf16);
        dk[i] += dsv * operand(q[t * HE + c], x.bf16);
      }
    }
  }
  float* dkey = global ? g.dk_global : g.dk_window;
  float* dval = global ? g.dv_global : g.dv_window;
  for (int i = 0; i < kChannelsPerLane; ++i)
    if (lane + i * kWarp < x.e) {
      dkey[key + lane + i * kWarp] += dk[i] * x.scale;
      dval[key + lane + i * kWarp] += dv[i];
    }
}

// x [B, n, H·e] rotated in place by +angle (sign 1) or -angle (sign -1, the backward); cos/sin
// [n, e/2] (make_rope_table's float tables, copied to the device). One thread per pair.
__global__ void rope_kernel(float* x, const float* cos_table, const float* sin_table, int64_t B,
                            int64_t n, int H, int e, float sign) {
  const int half = e / 2;
  const int64_t pairs = B * n * H * half;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < pairs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = i / (static_cast<int64_t>(H) * half) % n;  // position in its sequence
    const int pair = static_cast<int>(i % half);
    float* z = x + 2 * i;  // pairs are consecutive: row, head, pair
    const float x0 = z[0], x1 = z[1];
    const float c = cos_table[p * half + pair], s = sign * sin_table[p * half + pair];
    z[0] = x0 * c - x1 * s;  // the CPU layer's expressions
    z[1] = x0 * s + x1 * c;
  }
}

// The forward's launch for any placement: a warp per query row, a grid row per (sequence, head).
template <class Launch>
void launch_attention_rows(const Launch& launch, float* out, float* lse, const AttentionOperands& x,
                           const QueryPlacement& at) {
  if (x.B * x.nq == 0) return;
  check_attention_operands(x);
  const dim3 grid(static_cast<unsigned>((x.nq + kAttentionWarps - 1) / kAttentionWarps),
                  static_cast<unsigned>(x.B * x.H));
  launch("attention_forward_kernel", attention_forward_kernel, grid, dim3(kAttentionWarps * kWarp),
         0, out, lse, x, at);
}

// The training forward's placement: every sequence's own rows, from position 0.
template <class Launch>
void launch_attention_forward(const Launch& launch, float* out, float* lse,
                              const AttentionOperands& x) {
  QueryPlacement at;
  at.k_rows = x.nk;
  at.g_rows = x.mask.rank > 0 ? x.nq / x.mask.chunk * x.mask.rank : 0;
  launch_attention_rows(launch, out, lse, x, at);
}

// delta [B·H, nq]: the backward's workspace. Key gradients are added (+=): zero them first for =.
template <class Launch>
void launch_attention_backward(const Launch& launch, const AttentionGrads& g, float* delta,
                               const float* dout, const float* out, const float* lse,
                               const AttentionOperands& x) {
  if (x.B * x.nq == 0) return;
  check_attention_operands(x);
  const auto slices = static_cast<unsigned>(x.B * x.H);
  const dim3 rows(static_cast<unsigned>((x.nq + kAttentionWarps - 1) / kAttentionWarps), slices);
  launch("attention_backward_query_kernel", attention_backward_query_kernel, rows,
         dim3(kAttentionWarps * kWarp), 0, g, delta, dout, out, lse, x);
  const int64_t keys = x.nk + (x.mask.rank > 0 ? x.nq / x.mask.chunk * x.mask.rank : 0);
  const dim3 key_grid(static_cast<unsigned>((keys + kAttentionWarps - 1) / kAttentionWarps),
                      slices);
  launch("attention_backward_key_kernel", attention_backward_key_kernel, key_grid,
         dim3(kAttentionWarps * kWarp), 0, g, dout, lse, delta, x);
}

template <class Launch>
void launch_rope(const Launch& launch, float* x, const float* cos_table, const float* sin_table,
                 int64_t B, int64_t n, int H, int e, bool inverse) {
  const int64_t pairs = B * n * H * (e / 2);
  if (pairs == 0) return;
  launch("rope_kernel", rope_kernel, dim3(grid_for(pairs)), dim3(kThreads), 0, x, cos_table,
         sin_table, B, n, H, e, inverse ? -1.0f : 1.0f);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
