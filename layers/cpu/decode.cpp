// Incremental decoding (issue 17). Block self-attention (§1.3): the rows appended in one call go
// through the same pieces as attention_forward (projections, DConv, LNw, RoPE, chunk compression,
// LNg, the joint softmax, Wo) against the rows kept in an AttentionDecodeCache. Attention
// resampling (§1.4): mha_forward's projections and softmax against the keys kept in an
// MhaDecodeCache. The softmax of a prefill is the training forward's blocked kernel; that of a
// decoding step (a few rows) a row kernel that reads the cached keys in place.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/parallel_for.h"
#include "layers/attention.h"
#include "layers/cpu/attention_compress.h"
#include "layers/cpu/grow_buffer.h"
#include "layers/cpu/qkv_projection.h"
#include "layers/dconv.h"
#include "layers/layernorm.h"
#include "layers/linear.h"
#include "layers/mha.h"

namespace hg {

namespace {

// Query rows per kernel block: a prefill's rows in blocks as the training forward's long_short
// blocks are sized; a decoding step is one row, one block.
constexpr int64_t kDecodeBlockRows = 32;

// Per calling thread, shared by every block it decodes; buffers grow and never shrink.
struct Workspace {
  std::vector<float> q_lin, k_lin, v_lin;  // [B, n, H·e] this call's projections
  std::vector<float> ext, ext_out;         // [B, 2 + n, H·e] a DConv input with its two-row tail
  std::vector<float> q, k, v, q_rot;       // [B, n, H·e] post-DConv; RoPE(Q)
  std::vector<float> k_att, v_att;         // [B, n, H·e] window operands of the new rows
  std::vector<float> stats[2];             // [B·n·H] LNw / LNg mean and rstd (not kept)
  std::vector<float> logits;               // [B, n, H·r] u Wp + bp
  std::vector<float> probs;                // [B, l, H·r] one chunk's softmax
  std::vector<float> comp_raw, comp;       // [B, r, H·e] one chunk compressed, before/after LNg
  std::vector<float> heads_out;            // [B, n, H·e]
  std::vector<float> scores;               // [B, H, plan.probs_size]
  std::vector<float> mha_k, mha_v;         // [B, nk_new, H·e] resampling keys/values of the call
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

// Copies rows [0, n) of each of B sequences of `src` (row stride `width`, n rows per sequence)
// to rows [at, at + n) of `dst` (capacity rows per sequence).
void put_rows(float* dst, int64_t capacity, int64_t at, const float* src, int64_t B, int64_t n,
              int64_t width) {
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(dst + (b * capacity + at) * width, src + b * n * width, sizeof(float) * n * width);
}

// z (=) DConv of the new pre-DConv rows `lin` [B, n, C] (taps [3, ldt]), continuing the sequence
// whose last two rows are `tail` [B, 2, C]; the tail becomes the last two rows. dconv_forward over
// [tail; lin] computes each new row with the same expression as over the whole sequence (rows
// before position 0 are the tail's zeros).
void dconv_continue(float* z, std::vector<float>& tail, const float* lin, const float* taps,
                    int64_t B, int64_t n, int64_t C, int64_t ldt) {
  Workspace& ws = workspace();
  float* ext = grow(ws.ext, B * (n + 2) * C);
  float* ext_out = grow(ws.ext_out, B * (n + 2) * C);
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(ext + b * (n + 2) * C, tail.data() + b * 2 * C, sizeof(float) * 2 * C);
    std::memcpy(ext + (b * (n + 2) + 2) * C, lin + b * n * C, sizeof(float) * n * C);
  }
  dconv_forward(ext_out, ext, taps, B, n + 2, static_cast<int>(C), ldt);
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(z + b * n * C, ext_out + (b * (n + 2) + 2) * C, sizeof(float) * n * C);
    std::memcpy(tail.data() + b * 2 * C, ext + (b * (n + 2) + n) * C, sizeof(float) * 2 * C);
  }
}

// RoPE at positions [p0, p0 + n) of x [B, n, H·e] in place: a table of those rows of `table`.
void rope_from(float* x, const RopeTable& table, int64_t p0, int64_t B, int64_t n, int H, int e) {
  const int64_t half = e / 2;
  RopeTable rows;
  rows.n = n;
  rows.e = e;
  rows.cos.assign(table.cos.begin() + p0 * half, table.cos.begin() + (p0 + n) * half);
  rows.sin.assign(table.sin.begin() + p0 * half, table.sin.begin() + (p0 + n) * half);
  rope_forward(x, rows, B, n, H, e);
}

// Up to this many new rows per call run the row kernel below; a prefill runs the blocked one.
constexpr int64_t kRowKernelRows = 4;

// The joint softmax attention of a few query rows (a decoding step's one row) read straight from
// the keys' rows: per (sequence, head) a row costs ~(G + W)·e multiply-adds, less than the
// blocked kernel (attention_core) spends transposing every key it reads and dispatching its
// block products. Same masks and scale; the sums run in another order (rounding-level
// differences from the training forward, within the decoder's tolerance).
void few_rows_attention(float* heads_out, int64_t B, int H, int e, const AttentionPlan& plan,
                        const std::function<AttentionHead(int64_t b, int h)>& head) {
  const int64_t HE = static_cast<int64_t>(H) * e;
  const float scale = 1.0f / std::sqrt(static_cast<float>(e));
  parallel_for(B * H, [&](int64_t bh) {
    const int64_t b = bh / H;
    const int h = static_cast<int>(bh % H);
    const AttentionHead x = head(b, h);
    thread_local std::vector<float> scores;
    for (int64_t t = 0; t < plan.nq; ++t) {
      const int64_t G = plan.global_len[t], lo = plan.window_lo[t], W = plan.window_hi[t] - lo;
      float* p = grow(scores, G + W);
      const float* k_window = x.k_window + lo * x.ldw;
      const float* v_window = x.v_window + lo * x.ldw;
      // Eight independent partial sums: the loop vectorises without reassociation flags.
      auto dot = [e](const float* a, const float* c) {
        float acc[8] = {};
        int i = 0;
        for (; i + 8 <= e; i += 8)
          for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * c[i + l];
        for (; i < e; ++i) acc[0] += a[i] * c[i];
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      };
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < G; ++j)
        m = std::max(m, p[j] = scale * dot(x.q_global + t * x.ldq, x.k_global + j * x.ldg));
      for (int64_t j = 0; j < W; ++j)
        m = std::max(m, p[G + j] = scale * dot(x.q_window + t * x.ldq, k_window + j * x.ldw));
      float total = 0.0f;
      for (int64_t j = 0; j < G + W; ++j) total += p[j] = std::exp(p[j] - m);
      float* o = heads_out + (b * plan.nq + t) * HE + static_cast<int64_t>(h) * e;
      std::fill(o, o + e, 0.0f);
      for (int64_t j = 0; j < G + W; ++j) {
        const float* v = j < G ? x.v_global + j * x.ldg : v_window + (j - G) * x.ldw;
        const float a = p[j] / total;
        for (int i = 0; i < e; ++i) o[i] += a * v[i];
      }
    }
  });
}

// heads_out [B, plan.nq, H·e] (=): the row kernel for a few rows, else the training forward's.
void attend(float* heads_out, std::vector<float>& probs, int64_t B, int H, int e,
            const AttentionPlan& plan, const std::function<AttentionHead(int64_t b, int h)>& head) {
  if (plan.nq <= kRowKernelRows)
    few_rows_attention(heads_out, B, H, e, plan, head);
  else
    multihead_attention_forward(heads_out, grow(probs, B * H * plan.probs_size), B, H, e, plan,
                                head);
}

// long_short: the new rows' logits, K and V join the running chunk; each chunk they complete is
// compressed (chunk softmax, weighted sums, LNg) into the cache's compressed keys and values.
void compress_completed_chunks(AttentionDecodeCache& c, const float* logits, const float* k,
                               const float* v, const AttentionParams& w, const AttentionConfig& cfg,
                               int64_t B, int64_t n) {
  Workspace& ws = workspace();
  const int H = cfg.heads, e = cfg.head_dim, l = cfg.chunk, r = cfg.rank;
  const int64_t HE = static_cast<int64_t>(H) * e, Hr = static_cast<int64_t>(H) * r;
  const int64_t comp_capacity = c.capacity / l * r;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = c.rows + i, slot = p % l;
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(&c.chunk_logits[(b * l + slot) * Hr], logits + (b * n + i) * Hr,
                  sizeof(float) * Hr);
      std::memcpy(&c.chunk_k[(b * l + slot) * HE], k + (b * n + i) * HE, sizeof(float) * HE);
      std::memcpy(&c.chunk_v[(b * l + slot) * HE], v + (b * n + i) * HE, sizeof(float) * HE);
    }
    if (slot != l - 1) continue;
    const int64_t chunk = p / l;
    float* probs = grow(ws.probs, B * l * Hr);
    chunk_softmax_forward(probs, c.chunk_logits.data(), B, l, l, static_cast<int>(Hr));
    for (auto [rows, comp] : {std::pair(&c.chunk_k, &c.k_comp), std::pair(&c.chunk_v, &c.v_comp)}) {
      float* raw = grow(ws.comp_raw, B * r * HE);
      chunk_compress_forward(raw, rows->data(), probs, B, l, l, H, r, e);
      float* normed = grow(ws.comp, B * r * HE);
      layernorm_forward(normed, grow(ws.stats[0], B * r * H), grow(ws.stats[1], B * r * H), raw,
                        w.norm_global_gain, w.norm_global_bias, B * r, H, e);
      put_rows(comp->data(), comp_capacity, chunk * r, normed, B, r, HE);
    }
  }
}

// Which keys each new row sees, indices relative to `base`, the first window key it reads.
AttentionPlan decode_plan(const AttentionDecodeCache& c, const AttentionConfig& cfg, int64_t n,
                          int64_t base) {
  const bool ls = cfg.kind == AttentionKind::LongShort;
  AttentionPlan plan;
  plan.nq = n;
  plan.global_len.resize(n);
  plan.window_lo.resize(n);
  plan.window_hi.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = c.rows + i;
    plan.global_len[i] = ls ? (p / cfg.chunk) * cfg.rank : 0;
    plan.window_lo[i] = (ls ? std::max<int64_t>(0, p - cfg.window + 1) : 0) - base;
    plan.window_hi[i] = p + 1 - base;
  }
  finalize_attention_plan(plan, kDecodeBlockRows);
  return plan;
}

}  // namespace

void AttentionDecodeCache::reset(int64_t new_batch, int64_t new_capacity) {
  batch = new_batch;
  capacity = new_capacity;
  rows = 0;
  for (auto* tail : {&q_tail, &k_tail, &v_tail}) tail->clear();  // refilled with zeros on use
}

void attention_decode(float* out, AttentionDecodeCache& c, const float* u, const AttentionParams& w,
                      const AttentionConfig& cfg, int64_t B, int64_t n) {
  check_attention_decode(c, cfg, B, n);
  const bool ls = cfg.kind == AttentionKind::LongShort;
  const int H = cfg.heads, e = cfg.head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e, rows = B * n;
  const int64_t ld_qkv = qkv_row_stride(cfg);  // S·e: the heads run are a column prefix
  if (c.rows == 0) {  // first call since reset: size the cache, zero the DConv tails
    for (auto* tail : {&c.q_tail, &c.k_tail, &c.v_tail}) tail->assign(B * 2 * HE, 0.0f);
    grow(c.k_window, B * c.capacity * HE);
    grow(c.v_window, B * c.capacity * HE);
    if (ls) {
      grow(c.chunk_logits, B * cfg.chunk * H * cfg.rank);
      grow(c.chunk_k, B * cfg.chunk * HE);
      grow(c.chunk_v, B * cfg.chunk * HE);
      grow(c.k_comp, B * (c.capacity / cfg.chunk) * cfg.rank * HE);
      grow(c.v_comp, B * (c.capacity / cfg.chunk) * cfg.rank * HE);
    }
    if (cfg.rope && (c.rope.n < c.capacity || c.rope.e != e))
      c.rope = make_rope_table(c.capacity, e);
  }
  Workspace& ws = workspace();

  // Q, K, V of the new rows [B, n, H·e], as attention_forward makes them.
  const auto [q, k, v, q_lin, k_lin, v_lin] = self_qkv_projection_forward(
      {ws.q, ws.k, ws.v, ws.q_lin, ws.k_lin, ws.v_lin}, u, w, cfg, rows);
  if (cfg.dconv) {
    dconv_continue(q, c.q_tail, q_lin, w.dconv_q, B, n, HE, ld_qkv);
    dconv_continue(k, c.k_tail, k_lin, w.dconv_k, B, n, HE, ld_qkv);
    dconv_continue(v, c.v_tail, v_lin, w.dconv_v, B, n, HE, ld_qkv);
  }

  // The window operands (attention.cpp's window_operands, for these rows) join the cache.
  float* q_window = q;
  if (cfg.rope) {
    q_window = grow(ws.q_rot, rows * HE);
    std::copy(q, q + rows * HE, q_window);
    rope_from(q_window, c.rope, c.rows, B, n, H, e);
  }
  float* k_att = k;
  float* v_att = v;
  if (ls) {
    float* kn = grow(ws.k_att, rows * HE);
    float* vn = grow(ws.v_att, rows * HE);
    float* mean = grow(ws.stats[0], rows * H);
    float* rstd = grow(ws.stats[1], rows * H);
    layernorm_forward(kn, mean, rstd, k, w.norm_window_gain, w.norm_window_bias, rows, H, e);
    layernorm_forward(vn, mean, rstd, v, w.norm_window_gain, w.norm_window_bias, rows, H, e);
    k_att = kn;
    v_att = vn;
  } else if (cfg.rope) {
    k_att = grow(ws.k_att, rows * HE);
    std::copy(k, k + rows * HE, k_att);
  }
  if (cfg.rope) rope_from(k_att, c.rope, c.rows, B, n, H, e);
  put_rows(c.k_window.data(), c.capacity, c.rows, k_att, B, n, HE);
  put_rows(c.v_window.data(), c.capacity, c.rows, v_att, B, n, HE);

  if (ls) {
    const int64_t Hr = static_cast<int64_t>(H) * cfg.rank;
    float* logits = grow(ws.logits, rows * Hr);
    linear_forward(logits, u, w.proj_weight, w.proj_bias, rows, cfg.d, Hr, proj_row_stride(cfg));
    compress_completed_chunks(c, logits, k, v, w, cfg, B, n);
  }

  // The joint softmax of the new rows over the window keys from `base` on and the completed
  // chunks: the training forward's kernel, planned for these rows.
  const int64_t base = ls ? std::max<int64_t>(0, c.rows - cfg.window + 1) : 0;
  const AttentionPlan plan = decode_plan(c, cfg, n, base);
  const int64_t comp_capacity = ls ? c.capacity / cfg.chunk * cfg.rank : 0;
  float* heads_out = grow(ws.heads_out, rows * HE);
  attend(heads_out, ws.scores, B, H, e, plan, [&](int64_t b, int h) {
    const int64_t row = b * n * HE + static_cast<int64_t>(h) * e;
    const int64_t key = (b * c.capacity + base) * HE + static_cast<int64_t>(h) * e;
    AttentionHead x;
    x.q_global = q + row;
    x.q_window = q_window + row;
    x.ldq = HE;
    x.k_window = c.k_window.data() + key;
    x.v_window = c.v_window.data() + key;
    x.ldw = HE;
    if (ls) {
      const int64_t comp = b * comp_capacity * HE + static_cast<int64_t>(h) * e;
      x.k_global = c.k_comp.data() + comp;
      x.v_global = c.v_comp.data() + comp;
      x.ldg = HE;
    }
    return x;
  });
  c.rows += n;
  linear_forward(out, heads_out, w.wo, nullptr, rows, HE, cfg.d, cfg.d);
}

void MhaDecodeCache::reset(int64_t new_batch, int64_t new_capacity) {
  batch = new_batch;
  capacity = new_capacity;
  keys = 0;
}

void mha_decode(float* out, MhaDecodeCache& c, const float* q_in, const float* kv_in,
                const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                int64_t B, int64_t q0, int64_t nq, int64_t nk_new) {
  check_mha_decode(c, mask, k, B, q0, nq, nk_new);
  const int64_t keys = c.keys + nk_new;
  Workspace& ws = workspace();
  const int H = heads, e = head_dim;
  const int64_t HE = static_cast<int64_t>(H) * e;
  if (c.keys == 0) {
    grow(c.k, B * c.capacity * HE);
    grow(c.v, B * c.capacity * HE);
  }
  // mha_forward's projections (qkv_projection_forward), each skipped when it has no rows.
  if (nk_new > 0) {
    float* k_new = grow(ws.mha_k, B * nk_new * HE);
    float* v_new = grow(ws.mha_v, B * nk_new * HE);
    linear_forward(k_new, kv_in, w.wk, nullptr, B * nk_new, d, HE, HE);
    linear_forward(v_new, kv_in, w.wv, nullptr, B * nk_new, d, HE, HE);
    put_rows(c.k.data(), c.capacity, c.keys, k_new, B, nk_new, HE);
    put_rows(c.v.data(), c.capacity, c.keys, v_new, B, nk_new, HE);
  }
  c.keys = keys;
  if (nq == 0) return;
  float* q = grow(ws.q, B * nq * HE);
  linear_forward(q, q_in, w.wq, nullptr, B * nq, d, HE, HE);

  AttentionPlan plan;
  plan.nq = nq;
  plan.global_len.assign(nq, 0);
  plan.window_lo.assign(nq, 0);
  plan.window_hi.resize(nq);
  for (int64_t i = 0; i < nq; ++i)
    plan.window_hi[i] = mask == FunnelMask::Down ? (q0 + i + 1) * k : (q0 + i) / k + 1;
  finalize_attention_plan(plan, kDecodeBlockRows);
  float* heads_out = grow(ws.heads_out, B * nq * HE);
  attend(heads_out, ws.scores, B, H, e, plan, [&](int64_t b, int h) {
    AttentionHead x;
    x.q_window = q + b * nq * HE + static_cast<int64_t>(h) * e;
    x.ldq = HE;
    x.k_window = c.k.data() + b * c.capacity * HE + static_cast<int64_t>(h) * e;
    x.v_window = c.v.data() + b * c.capacity * HE + static_cast<int64_t>(h) * e;
    x.ldw = HE;
    return x;
  });
  linear_forward(out, heads_out, w.wo, nullptr, B * nq, HE, d, d);
}

}  // namespace hg
