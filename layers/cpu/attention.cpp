// Self-attention inside blocks (§1.3), forward and backward side by side:
//   Q/K/V projections -> DConv -> (full) RoPE(Q), RoPE(K)
//                             -> (long_short) LNw + RoPE for the window, dynamic projection +
//                                chunk compression + LNg for the global keys
//   -> blocked joint-softmax attention (attention_core) -> Wo.
#include "layers/attention.h"

#include <algorithm>
#include <memory>
#include <string>

#include "core/bf16.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/cpu/attention_compress.h"
#include "layers/cpu/attention_core_bf16.h"
#include "layers/cpu/grow_buffer.h"
#include "layers/cpu/layernorm_row.h"
#include "layers/cpu/qkv_projection.h"
#include "layers/cpu/rope_row.h"
#include "layers/dconv.h"
#include "layers/layernorm.h"
#include "layers/linear.h"
#include "layers/weight_gradients.h"

namespace hg {

namespace {

// Query rows per block of the attention kernel. long_short blocks are whole chunks, so the
// rows of a block see the same compressed keys (no masked global columns); 32 rows against
// their w+31 window keys keep the score gemms efficient while wasting little on masked
// entries ((w + 31)/w extra work). Full attention wastes at most half a block per row.
// bf16 takes 64: each block product is a oneDNN matmul call with a fixed cost and operands
// rounded per block, and twice the rows halve the calls for (w + 63)/(w + 31) the work. A bf16
// reference step (bench_train_step --micro-batches 8, 2 threads, Zen 5) took 0.432 s at 32 rows,
// 0.410 s at 64 and 0.421 s at 128. fp32 stays at 32: its bits are pinned (and sgemm gained 1%).
constexpr int64_t kLongShortBlockTarget = 32;
constexpr int64_t kLongShortBlockTargetBf16 = 64;
constexpr int64_t kFullBlockRows = 64;

int64_t long_short_block_rows(int64_t chunk) {
  const int64_t target = matmul_precision() == MatmulPrecision::Bf16 ? kLongShortBlockTargetBf16
                                                                     : kLongShortBlockTarget;
  return chunk >= target ? chunk : chunk * (target / chunk);
}

bool same_plan(const AttentionConfig& a, const AttentionConfig& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == AttentionKind::Full) return true;
  return a.window == b.window && a.chunk == b.chunk && a.rank == b.rank;
}

void prepare(AttentionCache& c, const AttentionConfig& cfg, int64_t n) {
  const int64_t block_rows =
      cfg.kind == AttentionKind::Full ? kFullBlockRows : long_short_block_rows(cfg.chunk);
  if (c.plan_n != n || !same_plan(c.plan_cfg, cfg) || c.plan_block_rows != block_rows) {
    c.plan = cfg.kind == AttentionKind::Full
                 ? plan_causal(n, block_rows)
                 : plan_long_short(n, cfg.window, cfg.chunk, cfg.rank, block_rows);
    c.plan_cfg = cfg;
    c.plan_n = n;
    c.plan_block_rows = block_rows;
  }
  if (cfg.rope && (c.rope.n < n || c.rope.e != cfg.head_dim))
    c.rope = make_rope_table(n, cfg.head_dim);
}

// Window operands and backward temporaries, per calling thread and shared by every attention
// layer it runs. RoPE(Q), RoPE(LNw(K)) and LNw(V) are cheap elementwise functions of the cached
// Q, K, V: the backward recomputes them (bit-identically) instead of keeping three more
// [B, n, H·e] tensors per layer and micro-batch in flight; the gradient buffers live only
// during one backward.
struct Workspace {
  std::vector<float> q_rot, k_att, v_att;  // [B, n, H·e] the window operands, fp32 (sources())
  std::vector<float> win_mean_k, win_rstd_k, win_mean_v, win_rstd_v;  // [B·n·H] LNw statistics
  std::vector<float> dheads, dq, dq_rot, dk, dv, dk_att, dv_att;
  std::vector<float> dlin[3];       // [B, n, H·e] d(Q, K, V before DConv), fp32
  std::vector<uint16_t> dlin16[3];  // the same as bfloat16 only, bf16
  std::vector<float> dk_comp, dv_comp, dk_comp_raw, dv_comp_raw, dlogits;
  std::vector<float> dscores;    // [B, H, plan.probs_size] gradients of the attention scores
  std::vector<float> unused[4];  // gradients of parameters the caller did not ask for
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

// Fills the workspace's window operands from the cached post-DConv Q, K, V:
//   long_short: q_rot = RoPE(Q), k_att = RoPE(LNw(K)), v_att = LNw(V) (one LN instance for K
//               and V, statistics per row; keys rotated after the LayerNorm)
//   full:       q_rot = RoPE(Q), k_att = RoPE(K)
void window_operands(Workspace& ws, const AttentionCache& c, const AttentionParams& w,
                     const AttentionConfig& cfg, int64_t B, int64_t n) {
  const int H = cfg.heads, e = cfg.head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  // RoPE out of place (no copy pass) where its input is the cache's.
  if (cfg.rope) rope_forward_into(grow(ws.q_rot, rows * HE), c.q.data(), c.rope, B, n, H, e);
  if (cfg.kind == AttentionKind::LongShort) {
    layernorm_forward(grow(ws.k_att, rows * HE), grow(ws.win_mean_k, rows * H),
                      grow(ws.win_rstd_k, rows * H), c.k.data(), w.norm_window_gain,
                      w.norm_window_bias, rows, H, e);
    layernorm_forward(grow(ws.v_att, rows * HE), grow(ws.win_mean_v, rows * H),
                      grow(ws.win_rstd_v, rows * H), c.v.data(), w.norm_window_gain,
                      w.norm_window_bias, rows, H, e);
    if (cfg.rope) rope_forward(ws.k_att.data(), c.rope, B, n, H, e);
  } else if (cfg.rope) {
    rope_forward_into(grow(ws.k_att, rows * HE), c.k.data(), c.rope, B, n, H, e);
  }
}

// At bf16 the window operands exist only as the kernel's bfloat16 copies (AttentionCopies16,
// window_given): window_operands' values, computed row by row with the same per-row LayerNorm
// and RoPE code (layernorm_row.h, rope_row.h), rounded straight into the slices' rows, with no
// float32 q_rot, k_att, v_att and no copy pass over them; LNw's statistics go to the cache, for
// the backward.
void window_copies16(AttentionCache& c, const AttentionParams& w, const AttentionConfig& cfg,
                     int64_t B, int64_t n) {
  const int H = cfg.heads, e = cfg.head_dim, half = e / 2;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  const bool ls = cfg.kind == AttentionKind::LongShort;
  SliceCopies to = copies_layout(c.plan, e);
  require(to.nk == n && to.nq == n, "attention: the kernel's window copies are not [n, e]");
  to.base = grow(c.copies16.bits, B * H * to.per_slice);
  c.copies16.window_given = true;
  if (cfg.rope) require(c.rope.e == e && c.rope.n >= n, "attention: RoPE table of another shape");
  if (ls)
    for (auto* stats : {&c.win_mean_k, &c.win_rstd_k, &c.win_mean_v, &c.win_rstd_v})
      stats->resize(static_cast<size_t>(rows * H));
  parallel_for(rows, [&](int64_t bt) {
    const int64_t b = bt / n, t = bt % n;
    const float* cs = cfg.rope ? c.rope.cos.data() + t * half : nullptr;
    const float* sn = cfg.rope ? c.rope.sin.data() + t * half : nullptr;
    thread_local std::vector<float> normed;  // one head row of LNw(K), before its rotation
    float* kn = grow(normed, e);
    for (int h = 0; h < H; ++h) {
      const int64_t slice = b * H + h, at = bt * HE + static_cast<int64_t>(h) * e, rg = bt * H + h;
      const float *q = c.q.data() + at, *k = c.k.data() + at, *v = c.v.data() + at;
      auto into = [](uint16_t* row) { return [row](int j, float y) { row[j] = bf16_bits(y); }; };
      const auto q16 = into(to.q_window(slice) + t * e), k16 = into(to.k(slice) + t * e),
                 v16 = into(to.v(slice) + t * e);
      if (cfg.rope)
        rope_row<1>(q, cs, sn, half, q16);
      else
        for (int j = 0; j < e; ++j) q16(j, q[j]);
      if (ls) {
        const float *gain = w.norm_window_gain + h * e, *bias = w.norm_window_bias + h * e;
        layernorm_rows::layernorm_group(k, gain, bias, e, c.win_mean_k[rg], c.win_rstd_k[rg],
                                        [kn](int j, float y) { kn[j] = y; });
        k = kn;
        layernorm_rows::layernorm_group(v, gain, bias, e, c.win_mean_v[rg], c.win_rstd_v[rg], v16);
      } else {
        for (int j = 0; j < e; ++j) v16(j, v[j]);
      }
      if (cfg.rope)
        rope_row<1>(k, cs, sn, half, k16);
      else
        for (int j = 0; j < e; ++j) k16(j, k[j]);
    }
  });
}

// Pointers the kernel reads, selected by the configuration (shared by forward and backward).
struct Sources {
  const float* q_global;  // unrotated Q (long_short's compressed keys)
  const float* q_window;  // Q the window (or causal) keys are scored with
  const float* k_window;
  const float* v_window;
  const float* k_global;  // [B, n/l, r, H·e] (long_short)
  const float* v_global;
};

Sources sources(const AttentionCache& c, const Workspace& ws, const AttentionConfig& cfg) {
  const bool ls = cfg.kind == AttentionKind::LongShort;
  Sources s;
  s.q_global = c.q.data();
  s.q_window = cfg.rope ? ws.q_rot.data() : c.q.data();
  s.k_window = (ls || cfg.rope) ? ws.k_att.data() : c.k.data();
  s.v_window = ls ? ws.v_att.data() : c.v.data();
  s.k_global = ls ? c.k_comp.data() : nullptr;
  s.v_global = ls ? c.v_comp.data() : nullptr;
  return s;
}

// The same shapes from the cache alone: valid memory for the window pointers the bf16 kernel
// does not read (it reads the bfloat16 copies window_copies16 wrote, forward and backward).
Sources cached_sources(const AttentionCache& c, const AttentionConfig& cfg) {
  const bool ls = cfg.kind == AttentionKind::LongShort;
  return {c.q.data(),
          c.q.data(),
          c.k.data(),
          c.v.data(),
          ls ? c.k_comp.data() : nullptr,
          ls ? c.v_comp.data() : nullptr};
}

// The (sequence b, head h) slice of the kernel's operands: heads are column slices, ld = H·e.
AttentionHead head_view(const Sources& s, const AttentionConfig& cfg, int64_t n, int64_t b, int h) {
  const int64_t HE = static_cast<int64_t>(cfg.heads) * cfg.head_dim;
  const int64_t seq = b * n * HE + static_cast<int64_t>(h) * cfg.head_dim;
  AttentionHead x;
  x.q_global = s.q_global + seq;
  x.q_window = s.q_window + seq;
  x.ldq = HE;
  x.k_window = s.k_window + seq;
  x.v_window = s.v_window + seq;
  x.ldw = HE;
  if (s.k_global != nullptr) {
    const int64_t comp =
        b * (n / cfg.chunk) * cfg.rank * HE + static_cast<int64_t>(h) * cfg.head_dim;
    x.k_global = s.k_global + comp;
    x.v_global = s.v_global + comp;
    x.ldg = HE;
  }
  return x;
}

float* or_unused(float* p, std::vector<float>& unused, int64_t n) {
  return p != nullptr ? p : grow_zero(unused, n);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

void attention_forward(float* out, AttentionCache& c, const float* u, const AttentionParams& w,
                       const AttentionConfig& cfg, int64_t B, int64_t n) {
  check_attention_config(cfg, n);
  prepare(c, cfg, n);
  const bool ls = cfg.kind == AttentionKind::LongShort;
  const int H = cfg.heads, e = cfg.head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  const int64_t ld_qkv = qkv_row_stride(cfg);  // S·e: the heads run are a column prefix

  // Q = DConv(u Wq) etc. [rows, H·e]; without DConv the projections are Q, K, V themselves.
  const auto [q, k, v, q_lin, k_lin, v_lin] =
      self_qkv_projection_forward({c.q, c.k, c.v, c.q_lin, c.k_lin, c.v_lin}, u, w, cfg, rows);
  if (cfg.dconv) {
    dconv_forward(q, q_lin, w.dconv_q, B, n, static_cast<int>(HE), ld_qkv);
    dconv_forward(k, k_lin, w.dconv_k, B, n, static_cast<int>(HE), ld_qkv);
    dconv_forward(v, v_lin, w.dconv_v, B, n, static_cast<int>(HE), ld_qkv);
  }

  Workspace& ws = workspace();
  const bool bf16 = matmul_precision() == MatmulPrecision::Bf16;
  if (bf16)
    window_copies16(c, w, cfg, B, n);
  else
    window_operands(ws, c, w, cfg, B, n);
  if (ls) {
    // Global keys/values: P = u Wp + bp, softmax within each chunk, weighted sums of the
    // post-DConv pre-LN rows, then LNg.
    const int l = cfg.chunk, r = cfg.rank, Hr = H * r;
    const int64_t comp_rows = B * (n / l) * r;
    float* chunk_probs = grow(c.chunk_probs, rows * Hr);
    linear_forward(chunk_probs, u, w.proj_weight, w.proj_bias, rows, cfg.d, Hr,
                   proj_row_stride(cfg));
    chunk_softmax_forward(chunk_probs, chunk_probs, B, n, l, Hr);
    chunk_compress_forward(grow(c.k_comp_raw, comp_rows * HE), k, chunk_probs, B, n, l, H, r, e);
    chunk_compress_forward(grow(c.v_comp_raw, comp_rows * HE), v, chunk_probs, B, n, l, H, r, e);
    layernorm_forward(grow(c.k_comp, comp_rows * HE), grow(c.comp_mean_k, comp_rows * H),
                      grow(c.comp_rstd_k, comp_rows * H), c.k_comp_raw.data(), w.norm_global_gain,
                      w.norm_global_bias, comp_rows, H, e);
    layernorm_forward(grow(c.v_comp, comp_rows * HE), grow(c.comp_mean_v, comp_rows * H),
                      grow(c.comp_rstd_v, comp_rows * H), c.v_comp_raw.data(), w.norm_global_gain,
                      w.norm_global_bias, comp_rows, H, e);
  }

  // Joint softmax attention over every (sequence, head). At bf16 the kernel reads the window
  // operands from their copies, written above: the cache's tensors stand in for them.
  const Sources src = bf16 ? cached_sources(c, cfg) : sources(c, ws, cfg);
  float* probs = grow(c.probs, B * H * c.plan.probs_size);
  auto head = [&](int64_t b, int h) { return head_view(src, cfg, n, b, h); };
  // out [rows, d] = concat_h(O_h) Wo (a partial sum under tensor parallelism). At bf16 the heads'
  // output is kept only as the bfloat16 copy its two products (this one and dWo) read: the
  // kernel writes it so, and no product rounds it again.
  if (bf16) {
    if (c.heads_out16.size() < static_cast<size_t>(rows * HE)) c.heads_out16.resize(rows * HE);
    multihead_attention_forward_bf16(c.heads_out16.data(), probs, B, H, e, c.plan, head,
                                     &c.copies16);
    linear_forward_bf16(out, c.heads_out16.data(), w.wo, nullptr, rows, HE, cfg.d, cfg.d);
  } else {
    float* heads_out = grow(c.heads_out, rows * HE);
    multihead_attention_forward(heads_out, probs, B, H, e, c.plan, head);
    linear_forward(out, heads_out, w.wo, nullptr, rows, HE, cfg.d, cfg.d);
  }
}

namespace {

// Gradients w.r.t. the attention kernel's operands, [rows, H·e] unless said:
//   dq: unrotated Q (global scores; full: the window queries when there is no RoPE)
//   dq_window: the window queries when they are a separate tensor
//   dk/dv (full) or dk_window/dv_window (long_short): the window keys/values
//   dk_comp/dv_comp [comp_rows, H·e]: long_short's compressed keys/values (null for full)
// They live in the workspace: pointers into it, valid until the next backward on this thread.
struct OperandGrads {
  float* dq;
  float* dk;
  float* dv;
  float* dq_window;
  float* dk_window;
  float* dv_window;
  float* dk_comp;
  float* dv_comp;
  int64_t comp_rows;  // B·(n/l)·r (long_short), 0 (full)
};

// The blocked joint-softmax kernel's backward from dheads [rows, H·e]. The window and global
// key/value gradients are zeroed first: the kernel accumulates them over the query blocks.
OperandGrads kernel_backward(Workspace& ws, const float* dheads, const AttentionCache& c,
                             const AttentionConfig& cfg, int64_t B, int64_t n) {
  const bool ls = cfg.kind == AttentionKind::LongShort;
  const int H = cfg.heads, e = cfg.head_dim, l = cfg.chunk, r = cfg.rank;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  OperandGrads d;
  d.dq = grow(ws.dq, rows * HE);
  d.dk = grow(ws.dk, rows * HE);
  d.dv = grow(ws.dv, rows * HE);
  d.dq_window = (ls || cfg.rope) ? grow(ws.dq_rot, rows * HE) : d.dq;
  d.dk_window = grow_zero(ls ? ws.dk_att : ws.dk, rows * HE);
  d.dv_window = grow_zero(ls ? ws.dv_att : ws.dv, rows * HE);
  d.comp_rows = ls ? B * (n / l) * r : 0;
  d.dk_comp = ls ? grow_zero(ws.dk_comp, d.comp_rows * HE) : nullptr;
  d.dv_comp = ls ? grow_zero(ws.dv_comp, d.comp_rows * HE) : nullptr;

  // bf16: the kernel reads the forward's bfloat16 copies, not these (the cache's float32 tensors
  // stand in for the window operands, which the backward did not recompute).
  const bool bf16 = matmul_precision() == MatmulPrecision::Bf16;
  const Sources src = bf16 ? cached_sources(c, cfg) : sources(c, ws, cfg);
  multihead_attention_backward(
      dheads, c.probs.data(), bf16 ? nullptr : grow(ws.dscores, B * H * c.plan.probs_size), B, H, e,
      c.plan, [&](int64_t b, int h) { return head_view(src, cfg, n, b, h); },
      [&](int64_t b, int h) {
        const int64_t seq = b * n * HE + static_cast<int64_t>(h) * e;
        AttentionHeadGrad g;
        g.ldq = HE;
        g.dq_global = ls ? d.dq + seq : nullptr;
        g.dq_window = d.dq_window + seq;
        g.ldw = HE;
        g.dk_window = d.dk_window + seq;
        g.dv_window = d.dv_window + seq;
        if (ls) {
          const int64_t comp = b * (n / l) * r * HE + static_cast<int64_t>(h) * e;
          g.dk_global = d.dk_comp + comp;
          g.dv_global = d.dv_comp + comp;
          g.ldg = HE;
        }
        return g;
      },
      bf16 ? &c.copies16 : nullptr);
  return d;
}

// long_short's window path: the (unrotated) window queries are Q itself, so their gradient adds
// to dq; LNw's backward turns the window key/value gradients into dK, dV (assigned).
void window_norms_backward(Workspace& ws, const OperandGrads& d, const AttentionParams& g,
                           const AttentionCache& c, const AttentionParams& w,
                           const AttentionConfig& cfg, int64_t rows) {
  const int H = cfg.heads, e = cfg.head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e;
  parallel_for(rows, [&](int64_t t) {
    for (int64_t i = t * HE; i < (t + 1) * HE; ++i) d.dq[i] += d.dq_window[i];
  });
  float* dgain_w = or_unused(g.norm_window_gain, ws.unused[0], HE);
  float* dbias_w = or_unused(g.norm_window_bias, ws.unused[1], HE);
  // LNw's statistics: kept by the forward at bf16, recomputed with the window operands at fp32.
  const bool kept = matmul_precision() == MatmulPrecision::Bf16;
  layernorm_backward(d.dk, dgain_w, dbias_w, d.dk_window, c.k.data(), w.norm_window_gain,
                     (kept ? c.win_mean_k : ws.win_mean_k).data(),
                     (kept ? c.win_rstd_k : ws.win_rstd_k).data(), rows, H, e);
  layernorm_backward(d.dv, dgain_w, dbias_w, d.dv_window, c.v.data(), w.norm_window_gain,
                     (kept ? c.win_mean_v : ws.win_mean_v).data(),
                     (kept ? c.win_rstd_v : ws.win_rstd_v).data(), rows, H, e);
}

// long_short's global path: LNg, then the weighted sums (into dK, dV, which hold the window
// path's gradients already, and the chunk probabilities), then the chunk softmax and the
// projection. Leaves the projection's input gradient dP in ws.dlogits [rows, H·r] for du.
void global_keys_backward(Workspace& ws, const OperandGrads& d, const AttentionParams& g,
                          const AttentionCache& c, const float* u, const AttentionParams& w,
                          const AttentionConfig& cfg, int64_t B, int64_t n) {
  const int H = cfg.heads, e = cfg.head_dim, l = cfg.chunk, r = cfg.rank, Hr = H * r;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n, comp_rows = d.comp_rows;
  float* dgain_g = or_unused(g.norm_global_gain, ws.unused[2], HE);
  float* dbias_g = or_unused(g.norm_global_bias, ws.unused[3], HE);
  float* dk_comp_raw = grow(ws.dk_comp_raw, comp_rows * HE);
  float* dv_comp_raw = grow(ws.dv_comp_raw, comp_rows * HE);
  layernorm_backward(dk_comp_raw, dgain_g, dbias_g, d.dk_comp, c.k_comp_raw.data(),
                     w.norm_global_gain, c.comp_mean_k.data(), c.comp_rstd_k.data(), comp_rows, H,
                     e);
  layernorm_backward(dv_comp_raw, dgain_g, dbias_g, d.dv_comp, c.v_comp_raw.data(),
                     w.norm_global_gain, c.comp_mean_v.data(), c.comp_rstd_v.data(), comp_rows, H,
                     e);
  float* dlogits = grow_zero(ws.dlogits, rows * Hr);
  chunk_compress_backward(d.dk, dlogits, dk_comp_raw, c.k.data(), c.chunk_probs.data(), B, n, l, H,
                          r, e);
  chunk_compress_backward(d.dv, dlogits, dv_comp_raw, c.v.data(), c.chunk_probs.data(), B, n, l, H,
                          r, e);
  chunk_softmax_backward(dlogits, dlogits, c.chunk_probs.data(), B, n, l, Hr);
  if (g.proj_weight != nullptr || g.proj_bias != nullptr)
    linear_backward(nullptr, g.proj_weight, g.proj_bias, dlogits, u, w.proj_weight, rows, cfg.d, Hr,
                    proj_row_stride(cfg));
}

// DConv, then the projections: du = dQ' Wqᵀ + dK' Wkᵀ + dV' Wvᵀ (+ dP Wpᵀ, long_short).
void projections_backward(float* du, Workspace& ws, const float* dq, const float* dk,
                          const float* dv, const AttentionParams& g, const AttentionCache& c,
                          const float* u, const AttentionParams& w, const AttentionConfig& cfg,
                          int64_t B, int64_t n) {
  const int64_t HE = static_cast<int64_t>(cfg.heads) * cfg.head_dim, rows = B * n;
  const int64_t ld_qkv = qkv_row_stride(cfg);  // S·e: the heads run are a column prefix
  const QkvWeights grads{g.wq, g.wk, g.wv}, weights{w.wq, w.wk, w.wv};
  if (!cfg.dconv) {
    qkv_projection_backward(du, du, grads, dq, dk, dv, u, u, weights, cfg.d, HE, ld_qkv, rows,
                            rows);
  } else {
    const int C = static_cast<int>(HE);
    const float* dz[3] = {dq, dk, dv};
    const float* lin[3] = {c.q_lin.data(), c.k_lin.data(), c.v_lin.data()};
    const float* taps[3] = {w.dconv_q, w.dconv_k, w.dconv_v};
    float* dtaps[3] = {g.dconv_q, g.dconv_k, g.dconv_v};
    if (matmul_precision() == MatmulPrecision::Bf16) {
      // The projections' gradients exist only as the bfloat16 their products read.
      uint16_t* dlin16[3];
      for (int i = 0; i < 3; ++i) {
        dlin16[i] = grow(ws.dlin16[i], rows * HE);
        dconv_backward_bf16(dlin16[i], or_unused(dtaps[i], ws.unused[1], 3 * ld_qkv), dz[i], lin[i],
                            taps[i], B, n, C, ld_qkv);
      }
      const QkvGrads16 given16{dlin16[0], dlin16[1], dlin16[2]};
      qkv_projection_backward(du, du, grads, nullptr, nullptr, nullptr, u, u, weights, cfg.d, HE,
                              ld_qkv, rows, rows, &given16);
    } else {
      float* dlin[3];
      for (int i = 0; i < 3; ++i) {
        dlin[i] = grow(ws.dlin[i], rows * HE);
        dconv_backward(dlin[i], or_unused(dtaps[i], ws.unused[1], 3 * ld_qkv), dz[i], lin[i],
                       taps[i], B, n, C, ld_qkv);
      }
      qkv_projection_backward(du, du, grads, dlin[0], dlin[1], dlin[2], u, u, weights, cfg.d, HE,
                              ld_qkv, rows, rows);
    }
  }
  if (cfg.kind == AttentionKind::LongShort && du != nullptr) {
    const int Hr = cfg.heads * cfg.rank;
    gemm(false, true, rows, cfg.d, Hr, 1.0f, ws.dlogits.data(), Hr, w.proj_weight,
         proj_row_stride(cfg), 1.0f, du, cfg.d);
  }
}

}  // namespace

void attention_backward(float* du, const AttentionParams& g, const float* dout,
                        const AttentionCache& c, const float* u, const AttentionParams& w,
                        const AttentionConfig& cfg, int64_t B, int64_t n) {
  check_attention_config(cfg, n);
  require(c.plan_n == n && same_plan(c.plan_cfg, cfg),
          "attention_backward: the cache was filled by a forward with another configuration");
  const int H = cfg.heads, e = cfg.head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  // fp32: the forward's window operands are recomputed here, bit-identically (see Workspace);
  // bf16: the kernel reads the forward's bfloat16 copies instead (AttentionCache::copies16).
  Workspace& ws = workspace();
  if (matmul_precision() != MatmulPrecision::Bf16) window_operands(ws, c, w, cfg, B, n);

  // Wo: dheads [rows, H·e] = dout Woᵀ, dWo += concat_h(O_h)ᵀ dout
  float* dheads = grow(ws.dheads, rows * HE);
  if (matmul_precision() == MatmulPrecision::Bf16) {
    // dout rounded once for both products (unless zbh1 defers dWo), the heads' output as kept.
    std::unique_ptr<uint16_t[]> dout16;
    if (g.wo != nullptr && deferred_weight_gradients() == nullptr)
      dout16 = bf16_copy_of(dout, rows, cfg.d, cfg.d);
    linear_backward_bf16(dheads, g.wo, nullptr, dout, dout16.get(), nullptr, c.heads_out16.data(),
                         w.wo, rows, HE, cfg.d, cfg.d);
  } else {
    gemm(false, true, rows, HE, cfg.d, 1.0f, dout, cfg.d, w.wo, cfg.d, 0.0f, dheads, HE);
    if (g.wo != nullptr)
      linear_backward(nullptr, g.wo, nullptr, dout, c.heads_out.data(), w.wo, rows, HE, cfg.d,
                      cfg.d);
  }

  OperandGrads d = kernel_backward(ws, dheads, c, cfg, B, n);

  // Undo the rotations (the gradient of a rotation is the inverse rotation), then the norms.
  if (cfg.rope) {
    rope_backward(d.dq_window, c.rope, B, n, H, e);
    rope_backward(d.dk_window, c.rope, B, n, H, e);
  }
  if (cfg.kind == AttentionKind::LongShort) {
    window_norms_backward(ws, d, g, c, w, cfg, rows);
    global_keys_backward(ws, d, g, c, u, w, cfg, B, n);
  } else if (cfg.rope) {
    std::swap(d.dq, d.dq_window);  // full: the rotated queries are the only queries
  }

  projections_backward(du, ws, d.dq, d.dk, d.dv, g, c, u, w, cfg, B, n);
}

}  // namespace hg
