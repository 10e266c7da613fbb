// Cached incremental decoding (decoder.h): level(i) mirrors §1.1's recursion for the rows appended
// in one call, every piece through the Backend with the training units' parameters (read from
// the store by canonical name, §2).
#include "model/decoder.h"

#include <string>

#include "core/error.h"
#include "layers/backend.h"
#include "model/sublayers.h"
#include "model/unit_factories.h"

namespace hg {

namespace {

NormParams norm_of(ParamStore& store, const std::string& prefix) {
  return {&store.at(prefix + "/gain"), &store.at(prefix + "/bias")};
}

float* value_of(ParamStore& store, const std::string& name) {
  return store.contains(name) ? store.at(name).value.data() : nullptr;
}

FfnParams ffn_of(ParamStore& store, const std::string& prefix) {
  FfnParams p;
  p.w1 = &store.at(prefix + "/w1");
  p.b1 = &store.at(prefix + "/b1");
  p.w2 = &store.at(prefix + "/w2");
  p.b2 = &store.at(prefix + "/b2");
  p.F = p.canonical_F = static_cast<int>(p.w1->value.dim(1));
  return p;
}

// Null for the parameters the configuration does not have (dconv = false, full attention).
AttentionParams attention_of(ParamStore& store, const std::string& prefix) {
  AttentionParams w;
  w.wq = value_of(store, prefix + "/wq");
  w.wk = value_of(store, prefix + "/wk");
  w.wv = value_of(store, prefix + "/wv");
  w.wo = value_of(store, prefix + "/wo");
  w.dconv_q = value_of(store, prefix + "/dconv_q");
  w.dconv_k = value_of(store, prefix + "/dconv_k");
  w.dconv_v = value_of(store, prefix + "/dconv_v");
  w.proj_weight = value_of(store, prefix + "/proj/weight");
  w.proj_bias = value_of(store, prefix + "/proj/bias");
  w.norm_window_gain = value_of(store, prefix + "/norm_window/gain");
  w.norm_window_bias = value_of(store, prefix + "/norm_window/bias");
  w.norm_global_gain = value_of(store, prefix + "/norm_global/gain");
  w.norm_global_bias = value_of(store, prefix + "/norm_global/bias");
  return w;
}

struct BlockStep {
  NormParams norm1, norm2;
  AttentionParams attn;
  FfnParams ffn;
  int width = 0;             // active FFN width
  AttentionConfig attn_cfg;  // at the active heads
  AttentionDecodeCache cache;
};

// The attention block of down/i or up/i (model.resampling = attention).
struct ResampleStep {
  NormParams norm_a, norm_b, norm_c;
  MhaParams mha;
  FfnParams ffn;
  MhaDecodeCache cache;
};

// down/i and up/i.
struct LevelStep {
  int k = 0;
  Param* pool_w = nullptr;  // linear pooling [k·d, d], else avg
  Param* pool_b = nullptr;
  Param* up_w = nullptr;  // linear upsampling [d, k·d], else repeat
  Param* up_b = nullptr;
  NormParams norm_out;
  bool attention = false;
  ResampleStep down, up;
  Tensor pool_tail;  // [B, k-1, d] the last k-1 rows pooling reads (z, or LNa(z))
  Tensor last_up;    // [B, k, d] Upsample of the latest shortened output row
};

// Rows [src_at, src_at + count) of each of B sequences of src (src_rows per sequence) to rows
// [dst_at, ...) of dst (dst_rows per sequence); d floats a row.
void copy_rows(Backend& be, float* dst, int64_t dst_rows, int64_t dst_at, const float* src,
               int64_t src_rows, int64_t src_at, int64_t count, int64_t B, int d) {
  for (int64_t b = 0; b < B; ++b)
    be.copy(dst + (b * dst_rows + dst_at) * d, src + (b * src_rows + src_at) * d, count * d);
}

}  // namespace

struct Decoder::State {
  State(StageModel& model, int64_t batch, const SubmodelWidths* widths);
  Tensor level(int i, const Tensor& x, int64_t p0);
  void run_stack(int i, Tensor& h);
  Tensor down(LevelStep& lv, const Tensor& h, int64_t p0, int64_t& j0);
  Tensor up(LevelStep& lv, const Tensor& s_out, const Tensor& h, int64_t p0, int64_t j0);
  void resample_tail(ResampleStep& r, Tensor& q, int64_t nq, const float* kv, int64_t nk,
                     FunnelMask mask, int k, int64_t q0, Tensor& out);
  Tensor norm(const NormParams& p, const float* x, int64_t n);  // x [B, n, d] -> LN(x) [B, n, d]

  Backend& be;
  ModelConfig m;
  int seq_len;
  int64_t B;
  int64_t position = 0;
  std::vector<std::vector<BlockStep>> stacks;
  std::vector<NormParams> stack_norms;
  std::vector<LevelStep> levels;
  Param* embed = nullptr;
  Param* head_w = nullptr;
  Param* head_b = nullptr;
  NormCache norm_cache;  // temporaries of one sublayer at a time
  FfnSublayerCache ffn_cache;
};

Decoder::State::State(StageModel& model, int64_t batch, const SubmodelWidths* widths)
    : be(model.params().backend()), m(model.config()), seq_len(model.seq_len()), B(batch) {
  ParamStore& store = model.params();
  require(model.first_unit() == 0 && model.last_unit() == static_cast<int>(model.plans().size()) &&
              !store.tensor_parallel().active(),
          "Decoder: the model must hold every unit on one process, without tensor parallelism");
  require(batch >= 1, "Decoder: batch must be at least 1");
  const int S = static_cast<int>(m.stacks.size());
  stacks.resize(S);
  levels.resize(m.middle());
  for (const UnitPlan& p : model.plans()) {
    if (p.kind == UnitKind::Block) {
      BlockStep s;
      s.norm1 = norm_of(store, p.name + "/norm1");
      s.norm2 = norm_of(store, p.name + "/norm2");
      s.attn = attention_of(store, p.name + "/attn");
      s.ffn = ffn_of(store, p.name + "/ffn");
      s.width = widths ? widths->ffn.at(p.global_block) : s.ffn.F;
      require(s.width >= 1 && s.width <= s.ffn.F, "Decoder: FFN width " + std::to_string(s.width) +
                                                      " of " + p.name + " is outside [1, " +
                                                      std::to_string(s.ffn.F) + "]");
      s.attn_cfg = block_attention_config(m, {}, p.global_block);
      if (widths) s.attn_cfg.heads = widths->heads.at(p.global_block);
      require(s.attn_cfg.heads >= 1 && s.attn_cfg.heads <= s.attn_cfg.stored_heads,
              "Decoder: head count " + std::to_string(s.attn_cfg.heads) + " of " + p.name +
                  " is outside [1, " + std::to_string(s.attn_cfg.stored_heads) + "]");
      stacks[p.stack].push_back(std::move(s));
    } else if (p.kind == UnitKind::StackNorm) {
      stack_norms.push_back(norm_of(store, p.name));
    } else if (p.kind == UnitKind::Down || p.kind == UnitKind::Up) {
      LevelStep& lv = levels.at(p.stack);
      lv.k = level_factor(m, p.stack);
      lv.attention = m.resampling == Resampling::Attention;
      const bool is_down = p.kind == UnitKind::Down;
      if (lv.attention) {
        ResampleStep& r = is_down ? lv.down : lv.up;
        r.norm_a = norm_of(store, p.name + "/norma");
        r.norm_b = norm_of(store, p.name + "/normb");
        r.norm_c = norm_of(store, p.name + "/normc");
        r.mha = {value_of(store, p.name + "/attn/wq"), value_of(store, p.name + "/attn/wk"),
                 value_of(store, p.name + "/attn/wv"), value_of(store, p.name + "/attn/wo")};
        r.ffn = ffn_of(store, p.name + "/ffn");
      }
      if (is_down && store.contains(p.name + "/pool/weight")) {
        lv.pool_w = &store.at(p.name + "/pool/weight");
        lv.pool_b = &store.at(p.name + "/pool/bias");
      }
      if (!is_down) {
        if (store.contains(p.name + "/linear/weight")) {
          lv.up_w = &store.at(p.name + "/linear/weight");
          lv.up_b = &store.at(p.name + "/linear/bias");
        }
        lv.norm_out = norm_of(store, p.name + "/norm_out");
      }
    }
  }
  embed = &store.at("embed/weight");
  head_w = &store.at("head/weight");
  head_b = &store.at("head/bias");
}

Tensor Decoder::State::norm(const NormParams& p, const float* x, int64_t n) {
  norm_forward(be, norm_cache, x, p, B * n, m.d_model);
  Tensor out({B, n, m.d_model}, be.device());
  be.copy(out.data(), norm_cache.out.data(), out.numel());
  return out;
}

// h [B, n, d] in place: stack i's blocks, then its LayerNorm.
void Decoder::State::run_stack(int i, Tensor& h) {
  const int d = m.d_model;
  const int64_t n = h.dim(1), rows = B * n;
  const DropoutSite none;  // p = 0: inference
  Tensor a({B, n, d}, be.device());
  for (BlockStep& s : stacks[i]) {
    // attention_sublayer_forward's order: a = Attn(LN1(h)), then a += h
    norm_forward(be, norm_cache, h.data(), s.norm1, rows, d);
    be.attention_decode(a.data(), s.cache, norm_cache.out.data(), s.attn, s.attn_cfg, B, n);
    be.add_into(a.data(), h.data(), rows * d);
    ffn_sublayer_forward(be, h.data(), ffn_cache, a.data(), s.norm2, s.ffn, B, n, d, s.width,
                         m.activation, none);
  }
  h = norm(stack_norms.at(i), h.data(), n);
}

// ResampleUnit::attention_tail_forward for the appended rows: a = q + MHA(q, kv), out = a +
// FFN_F(LNc(a)) for the queries q [B, nq, d] (nq may be 0); `kv` [B, nk, d] joins the MHA's keys
// first.
void Decoder::State::resample_tail(ResampleStep& r, Tensor& q, int64_t nq, const float* kv,
                                   int64_t nk, FunnelMask mask, int k, int64_t q0, Tensor& out) {
  const int d = m.d_model;
  Tensor a({B, nq, d}, be.device());
  be.mha_decode(a.data(), r.cache, q.data(), kv, r.mha, d, m.heads, m.head_dim(), mask, k, B, q0,
                nq, nk);
  if (nq == 0) return;
  be.add_into(a.data(), q.data(), B * nq * d);
  out = Tensor({B, nq, d}, be.device());
  ffn_sublayer_forward(be, out.data(), ffn_cache, a.data(), r.norm_c, r.ffn, B, nq, d, r.ffn.F,
                       m.activation, DropoutSite{} /* p = 0: inference */);
}

// down/i for stack i's output rows h [B, n, d] at positions p0 ..: the shortened rows j0 .. whose
// last pooled row, jk after the k-1 shift, is among them ([B, J, d], J possibly 0).
Tensor Decoder::State::down(LevelStep& lv, const Tensor& h, int64_t p0, int64_t& j0) {
  const int d = m.d_model, k = lv.k;
  const int64_t n = h.dim(1);
  // Rows pooling reads: ShiftRight(h, k-1), after LNa with attention. Before position 0 they are
  // the shift's zero rows (LNa of zeros with attention).
  Tensor src = lv.attention ? norm(lv.down.norm_a, h.data(), n) : h;
  if (p0 == 0) {
    lv.pool_tail = Tensor({B, k - 1, d}, be.device());
    if (lv.attention) lv.pool_tail = norm(lv.down.norm_a, lv.pool_tail.data(), k - 1);
  }
  // z [B, k-1+n, d]: z row p0 + r is row r here (the tail, then the new rows).
  const int64_t nz = k - 1 + n;
  Tensor z({B, nz, d}, be.device());
  copy_rows(be, z.data(), nz, 0, lv.pool_tail.data(), k - 1, 0, k - 1, B, d);
  copy_rows(be, z.data(), nz, k - 1, src.data(), n, 0, n, B, d);
  j0 = (p0 + k - 1) / k;
  const int64_t J = (p0 + n - 1) / k + 1 - j0;
  Tensor pooled({B, J, d}, be.device());
  if (J > 0) {
    // Shortened row j pools z rows jk .. jk+k-1: J·k consecutive rows from jk - p0.
    Tensor window({B, J * k, d}, be.device());
    copy_rows(be, window.data(), J * k, 0, z.data(), nz, j0 * k - p0, J * k, B, d);
    if (lv.pool_w)
      be.pool_linear_forward(pooled.data(), window.data(), lv.pool_w->value.data(),
                             lv.pool_b->value.data(), B, J * k, d, k);
    else
      be.pool_avg_forward(pooled.data(), window.data(), B, J * k, d, k);
  }
  Tensor tail({B, k - 1, d}, be.device());
  copy_rows(be, tail.data(), k - 1, 0, z.data(), nz, n, k - 1, B, d);
  lv.pool_tail = std::move(tail);
  if (!lv.attention) return pooled;
  // The MHA's keys are every z row so far: the new ones, and at position 0 the shift's too.
  Tensor q = J > 0 ? norm(lv.down.norm_b, pooled.data(), J) : Tensor();
  const bool first = p0 == 0;
  Tensor out({B, J, d}, be.device());
  resample_tail(lv.down, q, J, first ? z.data() : src.data(), first ? nz : n, FunnelMask::Down, k,
                j0, out);
  return out;
}

// up/i for rows p0 .. p0+n-1 of its level: the new shortened output rows s_out [B, J, d] (rows
// j0 ..) and the skip h [B, n, d] -> [B, n, d].
Tensor Decoder::State::up(LevelStep& lv, const Tensor& s_out, const Tensor& h, int64_t p0,
                          int64_t j0) {
  const int d = m.d_model, k = lv.k;
  const int64_t n = h.dim(1), J = s_out.numel() > 0 ? s_out.dim(1) : 0;
  Tensor up_in = lv.attention && J > 0 ? norm(lv.up.norm_a, s_out.data(), J) : s_out;
  Tensor upsampled({B, J * k, d}, be.device());  // rows j0·k .. of the level
  if (J > 0) {
    if (lv.up_w)
      be.upsample_linear_forward(upsampled.data(), up_in.data(), lv.up_w->value.data(),
                                 lv.up_b->value.data(), B, J, d, k);
    else
      be.upsample_repeat_forward(upsampled.data(), up_in.data(), B, J, d, k);
  }
  // Row t reads the upsampled rows of shortened row floor(t/k): made now, or the latest before.
  Tensor rows({B, n, d}, be.device());
  for (int64_t t = p0; t < p0 + n; ++t) {
    if (t / k >= j0)
      copy_rows(be, rows.data(), n, t - p0, upsampled.data(), J * k, t - j0 * k, 1, B, d);
    else
      copy_rows(be, rows.data(), n, t - p0, lv.last_up.data(), k, t % k, 1, B, d);
  }
  if (J > 0) {
    lv.last_up = Tensor({B, k, d}, be.device());
    copy_rows(be, lv.last_up.data(), k, 0, upsampled.data(), J * k, (J - 1) * k, k, B, d);
  }
  const float* y = rows.data();
  Tensor tail_out;
  if (lv.attention) {
    Tensor q({B, n, d}, be.device());
    be.add(q.data(), norm(lv.up.norm_b, rows.data(), n).data(), h.data(), q.numel());
    resample_tail(lv.up, q, n, up_in.data(), J, FunnelMask::Up, k, p0, tail_out);
    y = tail_out.data();
  }
  Tensor out({B, n, d}, be.device());
  be.add(out.data(), norm(lv.norm_out, y, n).data(), h.data(), out.numel());
  return out;
}

// §1.1's level(h, i) for the rows p0 .. p0+n-1 of level i's input x [B, n, d].
Tensor Decoder::State::level(int i, const Tensor& x, int64_t p0) {
  Tensor h = x;
  run_stack(i, h);
  if (i == m.middle()) return h;
  LevelStep& lv = levels.at(i);
  int64_t j0 = 0;
  Tensor s = down(lv, h, p0, j0);
  Tensor s_out;
  if (s.dim(1) > 0) s_out = level(i + 1, s, j0);
  Tensor y = up(lv, s_out, h, p0, j0);
  run_stack(static_cast<int>(m.stacks.size()) - 1 - i, y);
  return y;
}

Decoder::Decoder(StageModel& model, int64_t batch, const SubmodelWidths* widths)
    : state_(std::make_unique<State>(model, batch, widths)) {
  reset();
}

Decoder::~Decoder() = default;

int64_t Decoder::position() const { return state_->position; }

void Decoder::reset() {
  State& s = *state_;
  s.position = 0;
  for (size_t i = 0; i < s.stacks.size(); ++i)
    for (BlockStep& b : s.stacks[i]) b.cache.reset(s.B, s.seq_len / s.m.stacks[i].shortening);
  for (size_t i = 0; i < s.levels.size(); ++i) {
    LevelStep& lv = s.levels[i];
    const int64_t rows = s.seq_len / s.m.stacks[i].shortening;
    lv.down.cache.reset(s.B, rows + lv.k - 1);  // every z row: the shift's k-1, then the level's
    lv.up.cache.reset(s.B, rows / lv.k);
  }
}

void Decoder::append(const int32_t* tokens, int64_t count, Tensor& logits) {
  State& s = *state_;
  require(count >= 1 && s.position + count <= s.seq_len,
          "Decoder::append: " + std::to_string(count) + " tokens after " +
              std::to_string(s.position) + " exceed the window of " + std::to_string(s.seq_len) +
              " (train.seq_len): reset() and prefill a shorter context");
  const int d = s.m.d_model, V = s.m.vocab_size;
  Tensor x({s.B, count, d}, s.be.device());
  s.be.embedding_forward(x.data(), tokens, s.embed->value.data(), s.B * count, d);
  const Tensor y = s.level(0, x, s.position);
  ensure_shape(s.be, logits, {s.B, count, V});
  s.be.linear_forward(logits.data(), y.data(), s.head_w->value.data(), s.head_b->value.data(),
                      s.B * count, d, V, V);
  s.position += count;
}

}  // namespace hg
