// Training-step throughput and MFU (issue 2, "Performance") at the reference configuration:
// hierarchy "2@1 4@3 2@1", d_model 256, 4 heads, ffn 1024, seq_len 768, window 128, chunk 16,
// rank 1, batch 8, vocab 256, random tokens, single process (train_step, no MPI).
//
//   OMP_NUM_THREADS=1 bench_train_step [--steps N] [--warmup N] [--micro-batches 8,2]
//                                      [--recompute none|blocks]   (train.recompute)
//                                      [--precision fp32|bf16]     (train.precision; bf16 also
//                                       times fp32 in the same run and prints the speed-up)
//                                      [--rounds N]   (N interleaved rounds of each precision, the
//                                       best kept; the peak is measured before and after)
//
// Prints, per micro-batch size: tokens/s, model FLOPs per step (analytic, and the cost model's
// plan_units estimate), model FLOP/s, the machine's own sgemm FLOP/s measured in this run on the
// same threads (the peak), their ratio (MFU on this CPU), and the time per unit kind, forward and
// backward, and how much of the mean step the matrix products take (hg::gemm's calls, operand
// rounding included, in core-seconds over the threads) and at what rate: the rest of the step is
// what a faster matmul cannot shorten. Timings are the best step of N (other processes share the
// cores).
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "bench/common.h"
#include "core/enum_names.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "core/tensor.h"
#include "model/stage_model.h"
#include "trainer/config.h"
#include "trainer/train_step.h"

namespace {

using hg::bench::Clock;
using hg::bench::cpu_seconds;
using hg::bench::seconds_since;

const char* kReferenceIni = R"(
[model]
vocab_size = 256
d_model = 256
heads = 4
ffn = 1024
hierarchy = 2@1 4@3 2@1
attention = long_short
window = 128
chunk = 16
rank = 1
positions = rope
downsample = linear
upsample = linear
resampling = plain
activation = relu2
dconv = true
dropout = 0
[train]
seq_len = 768
batch = 8
steps = 1000
lr = 3e-4
warmup = 0
)";  // [train] comes last: micro_batch is appended per run

// FLOP/s: per wall second, and per CPU second of the process.
struct Rate {
  double wall = 0, cpu = 0;
};

// Best rate of C[M,N] = A[M,K] B[K,N] over `reps` calls, through hg::gemm at `precision`
// (bf16: the operands' rounding included, as the model pays it).
Rate gemm_rate(hg::MatmulPrecision precision, int64_t M, int64_t N, int64_t K, int reps) {
  hg::Tensor a({M, K}), b({K, N}), c({M, N});
  a.fill(0.5f);
  b.fill(0.25f);
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    const double cpu_start = cpu_seconds();
    hg::gemm(precision, false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
    best = std::min(best, seconds_since(start));
    best_cpu = std::min(best_cpu, cpu_seconds() - cpu_start);
  }
  return {2.0 * M * N * K / best, 2.0 * M * N * K / best_cpu};
}

// Model FLOPs of one sequence, forward + backward. Every matrix product of the forward is counted
// as 2·m·n·k, and the backward as twice the forward (dX and dW for every linear; dP, dS·K, dSᵀ·Q,
// Pᵀ·dO for every score/value product), so
//   flops = 3 · Σ_forward products 2·m·n·k
// with, per block on r rows (d model width, HE = heads·e, F ffn width):
//   Q, K, V, O projections   4 · 2·r·d·HE
//   dynamic projection       2·r·d·(H·rank)          (long_short)
//   chunk compression (K, V) 2 · 2·r·HE·rank         (each row weighs into its chunk's r keys)
//   FFN                      2 · 2·r·d·F
//   scores + values          2 · 2·e·H · Σ_t keys(t), keys(t) = min(t+1, w) + floor(t/l)·rank
//                            (only keys a query sees: masked work inside blocks is not counted)
// plus linear pooling 2·(r/k)·(k·d)·d, linear upsampling 2·(r/k)·d·(k·d), head 2·L·d·V.
// Element-wise work (LayerNorm, softmax, DConv, RoPE, activations, the loss) is not counted.
double model_flops_per_sequence(const hg::Config& config) {
  const hg::ModelConfig& m = config.model;
  const double d = m.d_model, H = m.heads, e = m.head_dim(), HE = H * e, L = config.train.seq_len;
  double fwd = 0;
  for (size_t i = 0; i < m.stacks.size(); ++i) {
    const int64_t r = static_cast<int64_t>(L) / m.stacks[i].shortening;
    double keys = 0;
    for (int64_t t = 0; t < r; ++t)
      keys += std::min<int64_t>(t + 1, m.window) + (t / m.chunk) * m.rank;
    const double block = 4 * 2 * r * d * HE + 2 * r * d * H * m.rank + 2 * 2 * r * HE * m.rank +
                         2 * 2 * r * d * m.ffn + 2 * 2 * e * H * keys;
    fwd += m.stacks[i].blocks * block;
    if (static_cast<int>(i) < m.middle()) fwd += 2 * 2.0 * r * d * d;  // down/i + up/i (linear)
  }
  fwd += 2 * L * d * m.vocab_size;
  return 3 * fwd;
}

const char* kind_name(hg::UnitKind kind) {
  switch (kind) {
    case hg::UnitKind::Embed:
      return "embed";
    case hg::UnitKind::Block:
      return "blocks";
    case hg::UnitKind::StackNorm:
      return "norm";
    case hg::UnitKind::Down:
      return "down";
    case hg::UnitKind::Up:
      return "up";
    case hg::UnitKind::Head:
      return "head";
  }
  return "?";
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

// The peak at `precision`: the best rate over a square product and the model's own large shapes
// (B·L = 6144 rows at micro-batch 8), on the threads the model uses.
Rate measure_peak(hg::MatmulPrecision precision) {
  struct Shape {
    int64_t M, N, K;
  };
  const Shape shapes[] = {
      {1024, 1024, 1024}, {6144, 256, 256}, {6144, 1024, 256}, {6144, 256, 1024}};
  const char* name = hg::enum_name(precision);
  Rate peak;
  for (const Shape& s : shapes) {
    const Rate rate = gemm_rate(precision, s.M, s.N, s.K, 10);
    std::printf("  %s gemm %5lldx%4lldx%4lld: %6.1f GFLOP/s, %6.1f GFLOP per CPU s\n", name,
                static_cast<long long>(s.M), static_cast<long long>(s.N),
                static_cast<long long>(s.K), rate.wall / 1e9, rate.cpu / 1e9);
    peak.wall = std::max(peak.wall, rate.wall);
    peak.cpu = std::max(peak.cpu, rate.cpu);
  }
  std::printf("  %s peak (best of the above): %.1f GFLOP/s, %.1f GFLOP per CPU s\n", name,
              peak.wall / 1e9, peak.cpu / 1e9);
  return peak;
}

// What the timed steps of one model measured.
struct StepTimes {
  double best = 1e30, total = 0, best_cpu = 1e30, loss = 0;
  uint64_t fingerprint = 0;
  std::map<std::string, double> unit_wall[2], unit_cpu[2];  // by kind; [0] forward, [1] backward
  hg::GemmTotals products;                                  // over the timed steps
};

StepTimes time_steps(const hg::Config& config, bool recompute, int steps, int warmup) {
  const int L = config.train.seq_len, batch = config.train.batch;
  const int micro_batch = config.train.micro_batch;
  hg::StageModel model(config.model, L, 0, -1, hg::TensorParallel{}, recompute);
  model.params().init_all(config.train.seed);
  const std::vector<int32_t> tokens =
      hg::bench::random_tokens(static_cast<int64_t>(batch) * (L + 1), config.model.vocab_size,
                               config.train.seed, config.train.seed);
  std::vector<hg::TokenBatch> mbs;
  for (int s = 0; s < batch; s += micro_batch)
    mbs.push_back({tokens.data() + static_cast<int64_t>(s) * (L + 1), micro_batch, s});

  StepTimes t;
  bool timing = false;
  Clock::time_point unit_start;
  double unit_cpu_start = 0;
  model.set_unit_observer([&](int unit, bool backward, bool finished) {
    if (!finished) {
      unit_start = Clock::now();
      unit_cpu_start = cpu_seconds();
    } else if (timing) {
      const char* kind = kind_name(model.plans()[unit].kind);
      t.unit_wall[backward][kind] += seconds_since(unit_start);
      t.unit_cpu[backward][kind] += cpu_seconds() - unit_cpu_start;
    }
  });
  for (int s = 0; s < warmup + steps; ++s) {
    timing = s >= warmup;
    if (s == warmup) hg::count_gemm_time(true);
    const auto start = Clock::now();
    const double cpu_start = cpu_seconds();
    const hg::StepMetrics metrics = hg::train_step(model, config, s, mbs);
    const double seconds = seconds_since(start);
    t.loss = metrics.loss;
    if (timing) {
      t.best = std::min(t.best, seconds);
      t.best_cpu = std::min(t.best_cpu, cpu_seconds() - cpu_start);
      t.total += seconds;
    }
  }
  t.products = hg::gemm_totals();
  hg::count_gemm_time(false);
  // A fingerprint of the trained parameters: bit-identical runs (any thread count, any
  // change that claims to keep the numerics) print the same value.
  for (const auto& [name, p] : model.params().all())
    t.fingerprint = t.fingerprint * 31 +
                    hg::hash_name(std::string_view(reinterpret_cast<const char*>(p.value.data()),
                                                   sizeof(float) * p.value.numel()));
  return t;
}

void report(const hg::Config& config, const char* precision, const StepTimes& t, const Rate& peak,
            int steps, int warmup) {
  const int L = config.train.seq_len, batch = config.train.batch;
  const double flops = model_flops_per_sequence(config) * batch;
  const double tokens_per_step = static_cast<double>(batch) * L;
  std::printf("\nmicro_batch %d, %s (batch %d x seq_len %d, %d steps after %d warm-up)\n",
              config.train.micro_batch, precision, batch, L, steps, warmup);
  std::printf("  last loss %.9g, parameter fingerprint %016llx\n", t.loss,
              static_cast<unsigned long long>(t.fingerprint));
  std::printf(
      "  step time        best %.3f s, mean %.3f s (wall); best %.3f CPU s (%.2f cores busy)\n",
      t.best, t.total / steps, t.best_cpu, t.best_cpu / t.best);
  std::printf("  tokens/s         %.0f (best step), %.0f (mean); %.0f tokens per CPU s\n",
              tokens_per_step / t.best, tokens_per_step * steps / t.total,
              tokens_per_step / t.best_cpu);
  std::printf("  model FLOPs/step %.1f GFLOP analytic\n", flops / 1e9);
  std::printf("  model FLOP/s     %.1f GFLOP/s (best step), %.1f GFLOP per CPU s\n",
              flops / t.best / 1e9, flops / t.best_cpu / 1e9);
  std::printf("  MFU              %.1f%% of the measured %s gemm peak %.1f GFLOP/s (wall)\n",
              100.0 * flops / t.best / peak.wall, precision, peak.wall / 1e9);
  std::printf("  MFU per CPU s    %.1f%% (model FLOP per CPU s / gemm FLOP per CPU s)\n",
              100.0 * (flops / t.best_cpu) / peak.cpu);
  // Core-seconds over the threads: the products' share of the step's wall time where the threads
  // are busy throughout.
  const double product_seconds = t.products.core_seconds / hg::num_threads() / steps;
  std::printf(
      "  products         %.3f s of the mean step's %.3f s (%.0f%%; %lld calls, %.1f GFLOP, "
      "operand rounding included) at %.1f GFLOP/s; %.3f s at the measured peak\n",
      product_seconds, t.total / steps, 100.0 * product_seconds / (t.total / steps),
      static_cast<long long>(t.products.calls / steps), t.products.flops / steps / 1e9,
      t.products.flops / steps / product_seconds / 1e9, t.products.flops / steps / peak.wall);
  std::printf("  time per step by unit kind (mean over timed steps, ms; wall | CPU):\n");
  std::printf("    %-8s %19s %19s\n", "kind", "forward", "backward");
  double unit_total = 0;
  for (const char* kind : {"embed", "blocks", "norm", "down", "up", "head"}) {
    const double f = t.unit_wall[0].count(kind) ? t.unit_wall[0].at(kind) / steps : 0;
    const double b = t.unit_wall[1].count(kind) ? t.unit_wall[1].at(kind) / steps : 0;
    unit_total += f + b;
    std::printf("    %-8s %9.1f|%9.1f %9.1f|%9.1f\n", kind, 1e3 * f,
                1e3 * (t.unit_cpu[0].count(kind) ? t.unit_cpu[0].at(kind) / steps : 0), 1e3 * b,
                1e3 * (t.unit_cpu[1].count(kind) ? t.unit_cpu[1].at(kind) / steps : 0));
  }
  std::printf("    units total %.1f ms wall, rest of the step (optimizer, grad norm) %.1f ms\n",
              1e3 * unit_total, 1e3 * (t.total / steps - unit_total));
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "  peak RSS so far  %.0f MB (the process's high-water mark: run one micro-batch size "
      "per process to compare)\n",
      usage.ru_maxrss / 1024.0);
}

// `round` into `best` if its best step is faster. Every round trains the same model on the same
// tokens, so a fingerprint that differs is a determinism failure, said aloud.
void keep_faster(StepTimes& best, const StepTimes& round, const char* precision) {
  if (best.fingerprint != 0 && round.fingerprint != best.fingerprint)
    std::printf("  WARNING: %s rounds trained different parameters (%016llx, %016llx)\n", precision,
                static_cast<unsigned long long>(best.fingerprint),
                static_cast<unsigned long long>(round.fingerprint));
  if (best.fingerprint == 0 || round.best < best.best) best = round;
}

Rate faster(const Rate& a, const Rate& b) {
  return {std::max(a.wall, b.wall), std::max(a.cpu, b.cpu)};
}

// The peaks, then for each micro-batch size `rounds` rounds of the timed steps in fp32 and, with
// bf16, the same steps in bf16, alternating (a VM's speed drifts by 10-15% within minutes: the
// best round of each precision, taken from interleaved rounds, is what the speed-up compares),
// then the peaks again: the higher of the two measurements is the one MFU divides by, so a slow
// phase during the first cannot inflate it.
void run(int steps, int warmup, int rounds, const std::vector<int>& micro_batches, bool recompute,
         bool bf16) {
  std::printf("bench_train_step: %d thread(s), gemm library %s\n", hg::num_threads(),
              hg::gemm_library());
  Rate fp32_peak = measure_peak(hg::MatmulPrecision::Fp32);
  Rate bf16_peak = bf16 ? measure_peak(hg::MatmulPrecision::Bf16) : Rate{};
  for (int micro_batch : micro_batches) {
    const hg::Config config = hg::config_from_ini(
        kReferenceIni + ("micro_batch = " + std::to_string(micro_batch) + "\n"));
    StepTimes fp32, half;
    for (int r = 0; r < rounds; ++r) {
      keep_faster(fp32, time_steps(config, recompute, steps, warmup), "fp32");
      if (!bf16) continue;
      const hg::MatmulPrecisionScope scope(hg::MatmulPrecision::Bf16);
      keep_faster(half, time_steps(config, recompute, steps, warmup), "bf16");
    }
    std::printf("\nthe peaks again, after micro_batch %d's %d round(s):\n", micro_batch, rounds);
    fp32_peak = faster(fp32_peak, measure_peak(hg::MatmulPrecision::Fp32));
    if (bf16) bf16_peak = faster(bf16_peak, measure_peak(hg::MatmulPrecision::Bf16));
    report(config, "fp32", fp32, fp32_peak, steps, warmup);
    if (!bf16) continue;
    report(config, "bf16", half, bf16_peak, steps, warmup);
    std::printf("  bf16 speed-up    %.2fx the fp32 step (best step against best step)\n",
                fp32.best / half.best);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_main("bench_train_step", [&] {
    hg::bench::Flags flags(
        argc, argv,
        "bench_train_step [--steps N] [--warmup N] [--micro-batches 8,2] [--recompute none|blocks] "
        "[--precision fp32|bf16] [--rounds N]");
    const int steps = flags.integer("--steps", 3), warmup = flags.integer("--warmup", 1);
    const int rounds = flags.integer("--rounds", 1);
    hg::require(rounds >= 1, "--rounds is at least 1");
    const std::vector<int> micro_batches = parse_list(flags.text("--micro-batches", "8,2"));
    const std::string recompute = flags.text("--recompute", "none");
    hg::require(recompute == "none" || recompute == "blocks", "--recompute is none or blocks");
    const std::string precision = flags.text("--precision", "fp32");
    hg::require(precision == "fp32" || precision == "bf16", "--precision is fp32 or bf16");
    flags.done();
    run(steps, warmup, rounds, micro_batches, recompute == "blocks", precision == "bf16");
    return 0;
  });
}
