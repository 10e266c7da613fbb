#include "model/units.h"

#include <string>

#include "model/unit_factories.h"

namespace hg {
namespace {

// Cost model per sample (forward + backward ≈ 3× forward FLOPs; activations in bytes).
struct Costs {
  double flops = 0, bytes = 0;
  int64_t params = 0;
  double weight_flops = 0;  // the linears' dW products: their forward products' FLOPs
};

// A block at FFN width F with H heads.
Costs block_costs(const ModelConfig& m, int64_t rows, int F, int H) {
  const double d = m.d_model, he = H * m.head_dim(), r = rows;
  double attn_keys = m.attention == AttentionKind::Full ? r / 2.0
                                           : m.window + (r / m.chunk) * m.rank / 2.0;
  Costs c;
  c.flops = 3.0 * r * (2.0 * 4.0 * d * he + 2.0 * 2.0 * d * F + 2.0 * 2.0 * he * attn_keys);
  c.weight_flops = r * (2.0 * 4.0 * d * he + 2.0 * 2.0 * d * F);
  c.bytes = 4.0 * r * (12.0 * d + 2.0 * F + H * attn_keys);
  c.params = static_cast<int64_t>(4 * d + 4 * d * he + d * F * 2 + F + d);
  if (m.dconv) c.params += static_cast<int64_t>(9 * he);
  if (m.attention == AttentionKind::LongShort)
    c.params += static_cast<int64_t>(d * H * m.rank + H * m.rank + 4 * he);
  return c;
}

Costs resample_costs(const ModelConfig& m, int64_t rows_full, int k, bool down) {
  const double d = m.d_model, r = rows_full;
  Costs c;
  bool linear = down ? m.downsample == Downsample::Linear : m.upsample == Upsample::Linear;
  if (linear) {
    c.flops = 3.0 * 2.0 * r * d * d;  // k·d -> d per shortened row, i.e. d·d per full row
    c.weight_flops = 2.0 * r * d * d;
    c.params = static_cast<int64_t>(k * d * d + (down ? d : k * d));
  }
  if (!down) c.params += static_cast<int64_t>(2 * d);
  c.bytes = 4.0 * r * d * 3;
  if (m.resampling == Resampling::Attention) {
    const double he = m.heads * m.head_dim(), q = down ? r / k : r;
    c.flops += 3.0 * (2.0 * 4.0 * q * d * he + 2.0 * 2.0 * q * d * m.ffn + 2.0 * q * he * r / k);
    c.weight_flops += 2.0 * 4.0 * q * d * he + 2.0 * 2.0 * q * d * m.ffn;
    c.bytes += 4.0 * q * (10.0 * d + 2.0 * m.ffn);
    c.params += static_cast<int64_t>(6 * d + 4 * d * he + 2 * d * m.ffn + m.ffn + d);
  }
  return c;
}

}  // namespace

std::vector<UnitPlan> plan_units(const ModelConfig& m, int seq_len) {
  const int S = static_cast<int>(m.stacks.size()), mid = m.middle();
  const double d = m.d_model;
  std::vector<UnitPlan> plans;
  auto push = [&](UnitKind kind, std::string name, int stack, int64_t rows, int stage, Costs c) {
    UnitPlan p{kind, std::move(name), stack, -1, -1, rows, stage, c.flops, c.bytes, c.params};
    p.weight_flops = c.weight_flops;
    plans.push_back(p);
    return &plans.back();
  };
  const int64_t L = seq_len;
  push(UnitKind::Embed, "embed", -1, L, 0,
       {0, 4.0 * L * d, static_cast<int64_t>(m.vocab_size * d)});
  int global_block = 0;
  for (int i = 0; i < S; ++i) {
    const int64_t rows = L / m.stacks[i].shortening;
    const int stage = i;
    if (i > mid) {
      const int level = S - 1 - i;  // up/level leads into stack i
      push(UnitKind::Up, "up/" + std::to_string(level), level, rows / level_factor(m, level), stage,
           resample_costs(m, rows, level_factor(m, level), false));
    }
    for (int j = 0; j < m.stacks[i].blocks; ++j) {
      UnitPlan* p = push(
          UnitKind::Block, "stacks/" + std::to_string(i) + "/blocks/" + std::to_string(j), i, rows,
          stage, block_costs(m, rows, m.block_ffn(global_block), m.block_heads(global_block)));
      p->block = j;
      p->global_block = global_block++;
    }
    push(UnitKind::StackNorm, "stacks/" + std::to_string(i) + "/norm", i, rows, stage,
         {3.0 * 8.0 * rows * d, 4.0 * rows * d, static_cast<int64_t>(2 * d)});
    if (i < mid)
      push(UnitKind::Down, "down/" + std::to_string(i), i, rows, stage,
           resample_costs(m, rows, level_factor(m, i), true));
  }
  push(UnitKind::Head, "head", -1, L, S - 1,
       {3.0 * 2.0 * L * d * m.vocab_size, 4.0 * L * (d + m.vocab_size),
        static_cast<int64_t>((d + 1) * m.vocab_size), 2.0 * L * d * m.vocab_size});
  return plans;
}

void average_over_submodels(std::vector<UnitPlan>& plans, const ModelConfig& m) {
  const std::vector<SubmodelWidths> widths = submodel_widths(m);
  for (UnitPlan& p : plans) {
    if (p.kind != UnitKind::Block) continue;
    double flops = 0, weight_flops = 0;
    for (const SubmodelWidths& w : widths) {
      const Costs c = block_costs(m, p.rows, w.ffn.at(p.global_block), w.heads.at(p.global_block));
      flops += c.flops / static_cast<double>(widths.size());
      weight_flops += c.weight_flops / static_cast<double>(widths.size());
    }
    p.flops = flops;
    p.weight_flops = weight_flops;
  }
}

std::vector<std::unique_ptr<Unit>> build_units(const ModelConfig& m, int seq_len,
                                               const std::vector<UnitPlan>& plans, int first,
                                               int last, ParamStore& store) {
  std::vector<std::unique_ptr<Unit>> units;
  for (int u = first; u < last; ++u) {
    const UnitPlan& p = plans.at(u);
    switch (p.kind) {
      case UnitKind::Embed: units.push_back(make_embed_unit(m, seq_len, store)); break;
      case UnitKind::Block: units.push_back(make_block_unit(m, p, store)); break;
      case UnitKind::StackNorm: units.push_back(make_stack_norm_unit(m, p, store)); break;
      case UnitKind::Down: units.push_back(make_down_unit(m, p, store)); break;
      case UnitKind::Up: units.push_back(make_up_unit(m, p, store)); break;
      case UnitKind::Head: units.push_back(make_head_unit(m, seq_len, store)); break;
    }
  }
  return units;
}

}  // namespace hg
