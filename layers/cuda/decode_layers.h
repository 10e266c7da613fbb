// Incremental decoding on the device (issue 17): layers/cpu/decode.cpp's attention_decode and
// mha_decode composed from device ops, with the CPU functions' contracts. The rows appended by a
// call go through the pieces of attention_layers.h's forward (projections, DConv, LNw, RoPE,
// chunk compression, LNg, the joint softmax, Wo); their window keys and values, DConv tails,
// running chunk and compressed keys stay in device tensors (the caches' `device` slots; their host
// vectors stay empty), so a decoding step moves nothing between host and device.
//
// Written over `Ops` as attention_layers.h is (the CUDA backend passes itself); besides that
// file's ops it uses attention_core_decode (ops.h). Transients live in the backend's workspace.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "layers/attention.h"
#include "layers/cuda/attention_layers.h"
#include "layers/mha.h"

namespace hg::cuda {

// Slots of AttentionDecodeCache::device.
enum DecodeSaved : int {
  kDecodeQTail,
  kDecodeKTail,
  kDecodeVTail,  // [B, 2, H·e] pre-DConv rows p-2, p-1 (zeros before 0)
  kDecodeKWindow,
  kDecodeVWindow,      // [B, capacity, H·e] the window operands
  kDecodeChunkLogits,  // [B, l, H·r] the running chunk's u Wp + bp
  kDecodeChunkK,
  kDecodeChunkV,  // [B, l, H·e] its post-DConv, pre-LN K and V
  kDecodeKComp,
  kDecodeVComp,  // [B, capacity/l·r, H·e] completed chunks after LNg
  kDecodeRopeCos,
  kDecodeRopeSin,  // [capacity, e/2] the host RopeTable's device copy
};
// Slots of MhaDecodeCache::device: [B, capacity, H·e] kv_in Wk, kv_in Wv.
enum MhaDecodeSaved : int { kMhaDecodeK, kMhaDecodeV };
// Slots of the backend's decoding workspace (transients of one call).
enum DecodeWork : int {
  kDecodeWorkQLin,
  kDecodeWorkKLin,
  kDecodeWorkVLin,  // [B, n, H·e] projections before DConv
  kDecodeWorkQ,
  kDecodeWorkK,
  kDecodeWorkV,  // [B, n, H·e] after DConv
  kDecodeWorkExt,
  kDecodeWorkExtOut,  // [B, 2 + n, H·e] a DConv input with its tail, and its output
  kDecodeWorkQRot,
  kDecodeWorkKAtt,
  kDecodeWorkVAtt,  // [B, n, H·e] the new rows' window operands
  kDecodeWorkMean,
  kDecodeWorkRstd,    // [B·n·H] or [B·r·H] LayerNorm statistics (not kept)
  kDecodeWorkLogits,  // [B, n, H·r]
  kDecodeWorkProbs,   // [B, l, H·r] one chunk's softmax
  kDecodeWorkCompRaw,
  kDecodeWorkComp,   // [B, r, H·e] one chunk compressed, before / after LNg
  kDecodeWorkHeads,  // [B, n, H·e] concat_h(O_h)
};

// dst[b, at + i, :] = src[b, from + i, :] for i < n, b < B; rows `width` floats, dst_rows and
// src_rows rows per sequence. One device copy per sequence (B is a decoding batch: a few).
template <class Ops>
void put_rows(Ops& ops, float* dst, int64_t dst_rows, int64_t at, const float* src,
              int64_t src_rows, int64_t from, int64_t B, int64_t n, int64_t width) {
  if (n * width == 0) return;
  for (int64_t b = 0; b < B; ++b)
    ops.copy(dst + (b * dst_rows + at) * width, src + (b * src_rows + from) * width, n * width);
}

// z [B, n, C] (=) DConv of the new pre-DConv rows `lin` (taps [3, ldt]) continuing the sequences
// whose last two rows are `tail` [B, 2, C], which become the last two rows. As on the CPU,
// dconv_forward over [tail; lin] gives each new row the expression of the whole sequence's
// forward (rows before position 0 are the tail's zeros).
template <class Ops>
void dconv_continue(Ops& ops, std::vector<Tensor>& work, float* z, float* tail, const float* lin,
                    const float* taps, int64_t B, int64_t n, int C, int64_t ldt) {
  const Device dev = ops.device();
  float* ext = slot(work, kDecodeWorkExt, B * (n + 2) * C, dev);
  float* ext_out = slot(work, kDecodeWorkExtOut, B * (n + 2) * C, dev);
  put_rows(ops, ext, n + 2, 0, tail, 2, 0, B, 2, C);
  put_rows(ops, ext, n + 2, 2, lin, n, 0, B, n, C);
  ops.dconv_forward(ext_out, ext, taps, B, n + 2, C, ldt);
  put_rows(ops, z, n, 0, ext_out, n + 2, 2, B, n, C);
  put_rows(ops, tail, 2, 0, ext, n + 2, n, B, 2, C);
}

// First call since reset(): the cache's tensors sized for its batch and capacity, the DConv tails
// zeroed, the RoPE table of positions [0, capacity) on the device.
template <class Ops>
void start_decoding(Ops& ops, AttentionDecodeCache& c, const AttentionConfig& cfg) {
  const Device dev = ops.device();
  const int64_t HE = static_cast<int64_t>(cfg.heads) * cfg.head_dim, B = c.batch;
  for (int i = 0; i < 3; ++i)
    ops.zero(slot(c.device, kDecodeQTail + i, B * 2 * HE, dev), B * 2 * HE);
  slot(c.device, kDecodeKWindow, B * c.capacity * HE, dev);
  slot(c.device, kDecodeVWindow, B * c.capacity * HE, dev);
  if (cfg.kind == AttentionKind::LongShort) {
    const int64_t comp = B * (c.capacity / cfg.chunk) * cfg.rank * HE;
    slot(c.device, kDecodeChunkLogits, B * cfg.chunk * cfg.heads * cfg.rank, dev);
    slot(c.device, kDecodeChunkK, B * cfg.chunk * HE, dev);
    slot(c.device, kDecodeChunkV, B * cfg.chunk * HE, dev);
    slot(c.device, kDecodeKComp, comp, dev);
    slot(c.device, kDecodeVComp, comp, dev);
  }
  // The host table records which positions and width the device copy holds.
  if (cfg.rope && (c.rope.n < c.capacity || c.rope.e != cfg.head_dim)) {
    c.rope = make_rope_table(c.capacity, cfg.head_dim);
    const auto size = static_cast<int64_t>(c.rope.cos.size());
    ops.upload(slot(c.device, kDecodeRopeCos, size, dev), c.rope.cos.data(), size);
    ops.upload(slot(c.device, kDecodeRopeSin, size, dev), c.rope.sin.data(), size);
  }
}

// RoPE of x [B, n, H·e] in place at positions [p0, p0 + n): the rows of the cache's table from p0.
template <class Ops>
void rope_from(Ops& ops, float* x, const AttentionDecodeCache& c, int64_t p0, int64_t B, int64_t n,
               int H, int e) {
  const int64_t half = e / 2;
  ops.rope(x, saved(c.device, kDecodeRopeCos) + p0 * half,
           saved(c.device, kDecodeRopeSin) + p0 * half, B, n, H, e, false);
}

// long_short: the new rows' logits [B, n, H·r] and post-DConv K, V [B, n, H·e] join the running
// chunk; each chunk they complete is compressed (chunk softmax, weighted sums, LNg) into the
// cache's compressed keys and values. The rows go in runs that stay within one chunk.
template <class Ops>
void compress_completed_chunks(Ops& ops, std::vector<Tensor>& work, AttentionDecodeCache& c,
                               const float* logits, const float* k, const float* v,
                               const AttentionParams& w, const AttentionConfig& cfg, int64_t n) {
  const Device dev = ops.device();
  const int H = cfg.heads, e = cfg.head_dim, l = cfg.chunk, r = cfg.rank;
  const int64_t HE = static_cast<int64_t>(H) * e, Hr = static_cast<int64_t>(H) * r, B = c.batch;
  const int64_t comp_rows = c.capacity / l * r;
  const float* const src[2] = {k, v};
  const int chunk_rows[2] = {kDecodeChunkK, kDecodeChunkV}, comp[2] = {kDecodeKComp, kDecodeVComp};
  for (int64_t i = 0; i < n;) {
    const int64_t p = c.rows + i, at = p % l, run = std::min<int64_t>(n - i, l - at);
    float* chunk_logits = c.device.at(kDecodeChunkLogits).data();
    put_rows(ops, chunk_logits, l, at, logits, n, i, B, run, Hr);
    for (int s = 0; s < 2; ++s)
      put_rows(ops, c.device.at(chunk_rows[s]).data(), l, at, src[s], n, i, B, run, HE);
    i += run;
    if (at + run < l) continue;  // the chunk is still running
    float* probs = slot(work, kDecodeWorkProbs, B * l * Hr, dev);
    ops.chunk_softmax_forward(probs, chunk_logits, B, l, l, static_cast<int>(Hr));
    for (int s = 0; s < 2; ++s) {
      float* raw = slot(work, kDecodeWorkCompRaw, B * r * HE, dev);
      ops.chunk_compress_forward(raw, saved(c.device, chunk_rows[s]), probs, B, l, l, H, r, e);
      float* normed = slot(work, kDecodeWorkComp, B * r * HE, dev);
      ops.layernorm_forward(normed, slot(work, kDecodeWorkMean, B * r * H, dev),
                            slot(work, kDecodeWorkRstd, B * r * H, dev), raw, w.norm_global_gain,
                            w.norm_global_bias, B * r, H, e);
      put_rows(ops, c.device.at(comp[s]).data(), comp_rows, p / l * r, normed, r, 0, B, r, HE);
    }
  }
}

// The window operands of the new rows (post-DConv q, k, v [B, n, H·e]) join the cache: long_short
// RoPE(LNw(K)), LNw(V); full RoPE(K) (or K), V. Returns the queries' window operand, RoPE(Q) or Q.
template <class Ops>
const float* append_window_rows(Ops& ops, std::vector<Tensor>& work, AttentionDecodeCache& c,
                                const float* q, const float* k, const float* v,
                                const AttentionParams& w, const AttentionConfig& cfg, int64_t n) {
  const Device dev = ops.device();
  const int H = cfg.heads, e = cfg.head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e, B = c.batch, rows = B * n;
  const float* q_window = q;
  if (cfg.rope) {
    float* q_rot = slot(work, kDecodeWorkQRot, rows * HE, dev);
    ops.copy(q_rot, q, rows * HE);
    rope_from(ops, q_rot, c, c.rows, B, n, H, e);
    q_window = q_rot;
  }
  const float* k_att = k;
  const float* v_att = v;
  if (cfg.kind == AttentionKind::LongShort || cfg.rope) {
    float* k_new = slot(work, kDecodeWorkKAtt, rows * HE, dev);
    if (cfg.kind == AttentionKind::LongShort) {  // one LN instance for K and V, per row and head
      float* v_new = slot(work, kDecodeWorkVAtt, rows * HE, dev);
      float* mean = slot(work, kDecodeWorkMean, rows * H, dev);
      float* rstd = slot(work, kDecodeWorkRstd, rows * H, dev);
      ops.layernorm_forward(k_new, mean, rstd, k, w.norm_window_gain, w.norm_window_bias, rows, H,
                            e);
      ops.layernorm_forward(v_new, mean, rstd, v, w.norm_window_gain, w.norm_window_bias, rows, H,
                            e);
      v_att = v_new;
    } else {
      ops.copy(k_new, k, rows * HE);
    }
    if (cfg.rope) rope_from(ops, k_new, c, c.rows, B, n, H, e);
    k_att = k_new;
  }
  put_rows(ops, c.device.at(kDecodeKWindow).data(), c.capacity, c.rows, k_att, n, 0, B, n, HE);
  put_rows(ops, c.device.at(kDecodeVWindow).data(), c.capacity, c.rows, v_att, n, 0, B, n, HE);
  return q_window;
}

// u [B, n, d] -> out [B, n, d] (=), layers/attention.h's attention_decode: the new rows (positions
// c.rows .. c.rows + n - 1) against every row appended since reset(), then appended.
template <class Ops>
void attention_decode(Ops& ops, std::vector<Tensor>& work, float* out, AttentionDecodeCache& c,
                      const float* u, const AttentionParams& w, const AttentionConfig& cfg,
                      int64_t B, int64_t n) {
  check_attention_decode(c, cfg, B, n);
  const bool ls = cfg.kind == AttentionKind::LongShort;
  const Device dev = ops.device();
  const int64_t HE = static_cast<int64_t>(cfg.heads) * cfg.head_dim, rows = B * n;
  const int64_t ld_qkv = qkv_row_stride(cfg);  // S·e: the heads run are a column prefix
  if (c.rows == 0) start_decoding(ops, c, cfg);
  const float* weights[3] = {w.wq, w.wk, w.wv};
  const float* taps[3] = {w.dconv_q, w.dconv_k, w.dconv_v};
  float* z[3];
  for (int i = 0; i < 3; ++i) {  // Q, K, V = DConv(u W) (or u W), as attention_forward
    z[i] = slot(work, kDecodeWorkQ + i, rows * HE, dev);
    float* lin = cfg.dconv ? slot(work, kDecodeWorkQLin + i, rows * HE, dev) : z[i];
    ops.linear_forward(lin, u, weights[i], nullptr, rows, cfg.d, HE, ld_qkv);
    if (cfg.dconv)
      dconv_continue(ops, work, z[i], c.device.at(kDecodeQTail + i).data(), lin, taps[i], B, n,
                     static_cast<int>(HE), ld_qkv);
  }
  AttentionOperands x = attention_operands(cfg, B, n);
  x.q_window = append_window_rows(ops, work, c, z[0], z[1], z[2], w, cfg, n);
  x.k_window = saved(c.device, kDecodeKWindow);
  x.v_window = saved(c.device, kDecodeVWindow);
  x.nk = c.rows + n;  // the window keys filled, these rows' included
  QueryPlacement at;
  at.q0 = c.rows;
  at.k_rows = c.capacity;
  if (ls) {
    const int64_t Hr = static_cast<int64_t>(cfg.heads) * cfg.rank;
    float* logits = slot(work, kDecodeWorkLogits, rows * Hr, dev);
    ops.linear_forward(logits, u, w.proj_weight, w.proj_bias, rows, cfg.d, Hr,
                       proj_row_stride(cfg));
    compress_completed_chunks(ops, work, c, logits, z[1], z[2], w, cfg, n);
    x.q_global = z[0];
    x.k_global = saved(c.device, kDecodeKComp);
    x.v_global = saved(c.device, kDecodeVComp);
    at.g_rows = c.capacity / cfg.chunk * cfg.rank;
  } else {
    x.mask.window = x.nk;  // causal: every earlier key
  }
  float* heads = slot(work, kDecodeWorkHeads, rows * HE, dev);
  ops.attention_core_decode(heads, x, at);
  c.rows += n;
  ops.linear_forward(out, heads, w.wo, nullptr, rows, HE, cfg.d, cfg.d);
}

// layers/mha.h's mha_decode: kv_in [B, nk_new, d] joins the keys (may be 0 rows), then the queries
// q_in [B, nq, d] (indices q0 .. q0 + nq - 1) attend to the keys `mask` lets them see -> out
// [B, nq, d] (=).
template <class Ops>
void mha_decode(Ops& ops, std::vector<Tensor>& work, float* out, MhaDecodeCache& c,
                const float* q_in, const float* kv_in, const MhaParams& w, int d, int heads,
                int head_dim, FunnelMask mask, int k, int64_t B, int64_t q0, int64_t nq,
                int64_t nk_new) {
  check_mha_decode(c, mask, k, B, q0, nq, nk_new);
  const Device dev = ops.device();
  const int64_t HE = static_cast<int64_t>(heads) * head_dim;
  if (c.keys == 0)
    for (int i = 0; i < 2; ++i) slot(c.device, kMhaDecodeK + i, B * c.capacity * HE, dev);
  const float* weights[2] = {w.wk, w.wv};
  for (int i = 0; i < 2 && nk_new > 0; ++i) {  // the new keys, then into the cache
    float* fresh = slot(work, kDecodeWorkK + i, B * nk_new * HE, dev);
    ops.linear_forward(fresh, kv_in, weights[i], nullptr, B * nk_new, d, HE, HE);
    put_rows(ops, c.device.at(kMhaDecodeK + i).data(), c.capacity, c.keys, fresh, nk_new, 0, B,
             nk_new, HE);
  }
  c.keys += nk_new;
  if (nq == 0) return;
  float* q = slot(work, kDecodeWorkQ, B * nq * HE, dev);
  ops.linear_forward(q, q_in, w.wq, nullptr, B * nq, d, HE, HE);
  AttentionOperands x = funnel_operands(heads, head_dim, mask, k, B, nq, c.keys);
  x.q_window = q;
  x.k_window = saved(c.device, kMhaDecodeK);
  x.v_window = saved(c.device, kMhaDecodeV);
  QueryPlacement at;
  at.q0 = q0;
  at.k_rows = c.capacity;
  float* heads_out = slot(work, kDecodeWorkHeads, B * nq * HE, dev);
  ops.attention_core_decode(heads_out, x, at);
  ops.linear_forward(out, heads_out, w.wo, nullptr, B * nq, HE, d, d);
}

}  // namespace hg::cuda
