// Pipeline parallelism (issue 4) and data-parallel replicas (issue 5) against the single-process
// reference: every layout runs 5 distributed_step()s on deterministic tokens and must give the
// losses, grad norms and final parameters of train_step() on one full StageModel, computed on the
// same rank, within 1e-5 relative. Also the activation count the runtime tracks (1F1B keeps at
// most pp micro-batches alive on the first stage, GPipe all m), bit-identical reruns, and the
// CLI's bad-configuration exits.
//
// One mpirun covers several layouts: each case runs on a sub-communicator of world ranks
// [0, dp·pp) (MPI_Comm_split of MPI_COMM_WORLD); the other ranks skip the case and wait in a
// sleeping barrier, so on 2 oversubscribed cores they leave the CPU to the ranks that compute.
// Rank > 0 prints no GoogleTest output, so every rank's mismatches are gathered to rank 0.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "tests/support/reference_run.h"
#include "tests/support/run_command.h"
#include "tests/support/tiny_models.h"
#include "trainer/distributed_step.h"
#include "trainer/model.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/train_step.h"
#include "trainer/units.h"

namespace hg {
namespace {

constexpr int kSteps = 5;
constexpr double kTolerance = 1e-5;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// "2@1 4@3 2@1" with small dimensions: 15 units (embed, 2 blocks, norm, down/0, 4 blocks, norm,
// up/0, 2 blocks, norm, head); the middle runs 8 rows.
const std::string kThreeStacks =
    "[model]\nvocab_size = 16\nd_model = 16\nheads = 2\nffn = 32\nwindow = 8\nchunk = 4\n"
    "hierarchy = 2@1 4@3 2@1\n";
// Two shortening levels (32, 16 and 8 rows): 13 units, 5 natural stages, two skip edges.
const std::string kTwoLevels =
    "[model]\nvocab_size = 16\nd_model = 16\nheads = 2\nffn = 32\nwindow = 8\nchunk = 4\n"
    "hierarchy = 1@1 1@2 2@4 1@2 1@1\n";

std::string train_section(int seq_len, int batch, int micro_batch, const std::string& extra = "") {
  return "[train]\nseq_len = " + std::to_string(seq_len) + "\nbatch = " + std::to_string(batch) +
         "\nmicro_batch = " + std::to_string(micro_batch) + "\nlr = 1e-3\nwarmup = 2\n" + extra;
}

struct Layout {
  Layout(std::string name_, std::string ini_, int dp_, int pp_, std::string schedule_,
         std::string stages_ = "")
      : name(std::move(name_)),
        ini(std::move(ini_)),
        dp(dp_),
        pp(pp_),
        schedule(std::move(schedule_)),
        stages(std::move(stages_)) {}
  std::string name;
  std::string ini;  // [model] and [train]
  int dp = 1;
  int pp = 1;
  std::string schedule;  // gpipe | 1f1b
  std::string stages;    // parallel.stages override; "" = automatic
  int ranks() const { return dp * pp; }
};

void PrintTo(const Layout& layout, std::ostream* os) { *os << layout.name; }

Config layout_config(const Layout& layout) {
  Config config = testing::tiny_config(layout.ini);
  config.parallel.dp = layout.dp;
  config.parallel.pp = layout.pp;
  config.parallel.schedule = layout.schedule;
  config.parallel.stages = layout.stages;
  // Tiny buckets (~1,000 gradients): several per stage, so the overlapped all-reduce is exercised.
  config.parallel.grad_bucket_mb = 0.004;
  return config;
}

// The global batch of step s: [batch, seq_len + 1], the same on every rank.
std::vector<int32_t> step_tokens(const Config& config, int64_t s) {
  return testing::step_tokens(config, s, 1000);
}

// ---- the single-process reference ----

struct RunResult {
  std::vector<StepMetrics> metrics;   // per step
  std::vector<int64_t> max_live;      // per step (distributed runs)
  std::unique_ptr<StageModel> model;  // after the last step
  int stage = 0;
  int pp = 1;
  int micro_batches = 0;  // schedule entries per replica and step (micro-batches × widths)
  bool replicas_identical = true;  // dp > 1: this stage's parameters and moments have the same
                                   // bits on every replica
  std::string bucket_report;       // dp > 1: what check_buckets found wrong
};

// dp > 1: every gradient bucket's all-reduce started during the final backward, as soon as its
// last unit finished (not later, not at the end of the step), and the stage has several.
std::string check_buckets(const GradientBuckets& buckets, int64_t s) {
  std::ostringstream out;
  if (buckets.buckets().size() < 2)
    out << "step " << s + 1 << ": " << buckets.buckets().size() << " gradient bucket(s), expected several\n";
  for (size_t b = 0; b < buckets.buckets().size(); ++b) {
    const GradientBucket& bucket = buckets.buckets()[b];
    if (bucket.started_at_unit != bucket.ready_unit)
      out << "step " << s + 1 << ": gradient bucket " << b << " (ready after unit "
          << bucket.ready_unit << ") started at " << bucket.started_at_unit << "\n";
  }
  return out.str();
}

// FNV-1a over the bits of every parameter value and AdamW moment of `store`.
uint64_t parameter_hash(const ParamStore& store) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const Tensor& t) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(t.data());
    for (int64_t i = 0; i < t.numel() * static_cast<int64_t>(sizeof(float)); ++i)
      h = (h ^ bytes[i]) * 1099511628211ull;
  };
  for (const auto& [name, p] : store.all()) {
    mix(p.value);
    mix(p.exp_avg);
    mix(p.exp_avg_sq);
  }
  return h;
}

RunResult run_reference(const Config& config) {
  testing::ReferenceRun reference = testing::single_process_run(config, kSteps, 1000);
  RunResult r;
  r.metrics = std::move(reference.metrics);
  r.model = std::move(reference.model);
  return r;
}

// Every layout of one model and batch shares the reference (computed once per rank).
const RunResult& reference_for(const Config& config) {
  static std::map<std::string, RunResult> cache;
  Config key_config = config;
  key_config.parallel = ParallelConfig{};
  const std::string key = key_config.to_ini();
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, run_reference(config)).first;
  return it->second;
}

// ---- the distributed run on `comm` (dp · pp ranks) ----

RunResult run_distributed(const Config& config, MPI_Comm comm) {
  ProcessGrid grid(config.parallel.dp, config.parallel.pp, 1, comm);
  const auto plans = plan_units(config.model, config.train.seq_len);
  const auto first =
      partition_units(unit_infos(plans), config.parallel.pp,
                      static_cast<int>(config.model.stacks.size()), config.parallel.stages);
  RunResult r;
  r.stage = grid.stage();
  r.pp = grid.pp();
  r.model = std::make_unique<StageModel>(config.model, config.train.seq_len, first[r.stage],
                                         first[r.stage + 1]);
  r.model->params().init_all(config.train.seed);
  PipelineRuntime runtime(*r.model, grid, parse_schedule_kind(config.parallel.schedule), first,
                          nullptr, grad_bucket_bytes(config.parallel));
  const int64_t row = config.train.seq_len + 1;
  for (int64_t s = 0; s < kSteps; ++s) {
    // As train_main: tokens only where a stage reads them (embed on the first, targets on the
    // last); the middle stages get null pointers and must not touch them.
    const std::vector<int32_t> tokens = step_tokens(config, s);
    std::vector<TokenBatch> micro = replica_micro_batches(config, grid.dp_rank(), {});
    if (grid.first_stage() || grid.last_stage())
      for (TokenBatch& mb : micro) mb.tokens = tokens.data() + mb.first_sample * row;
    const DistributedStep step = distributed_step(*r.model, runtime, grid, config, s, micro);
    r.metrics.push_back(step.metrics);
    r.max_live.push_back(runtime.stats().max_live);
    r.micro_batches = static_cast<int>(micro.size() * step_granularities(config, s).size());
    if (const GradientBuckets* buckets = runtime.grad_buckets())
      r.bucket_report += check_buckets(*buckets, s);
  }
  // Replicas must not drift apart: the same gradient sum, norm and update on each, to the bit.
  const unsigned long long mine = parameter_hash(r.model->params());
  std::vector<unsigned long long> all(grid.dp());
  MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all.data(), 1, MPI_UNSIGNED_LONG_LONG,
                grid.dp_comm());
  for (unsigned long long h : all) r.replicas_identical = r.replicas_identical && h == mine;
  return r;
}

// ---- mismatch reports, gathered to rank 0 ----

// Concatenates every rank's `report` on rank 0 of world (others get ""). Collective over world.
std::string gather_reports(const std::string& report) {
  const int n = world_size();
  int length = static_cast<int>(report.size());
  std::vector<int> lengths(n), offsets(n);
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  int total = 0;
  for (int i = 0; i < n; ++i) offsets[i] = total, total += lengths[i];
  std::string all(world_rank() == 0 ? total : 0, '\0');
  MPI_Gatherv(report.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
              0, MPI_COMM_WORLD);
  return all;
}

bool close(double a, double b) { return std::fabs(a - b) <= kTolerance * std::fabs(b); }

// Σ of the learning rates of the run: AdamW moves no element further than about this.
double got_lr_steps(const RunResult& run) {
  double sum = 0;
  for (const StepMetrics& m : run.metrics) sum += m.lr;
  return sum;
}

// Per-step loss and grad-norm; then every parameter of this stage against the reference's of the
// same name: its last gradient, and its value after kSteps updates, max |a − b| within 1e-5 of the
// tensor's scale (its max |value|, at least 1e-2 so that tensors still near their zero init are
// not held to float32 noise).
std::string compare(const RunResult& got, const RunResult& ref, const std::string& where) {
  std::ostringstream out;
  for (int s = 0; s < kSteps; ++s) {
    const StepMetrics& a = got.metrics[s];
    const StepMetrics& b = ref.metrics[s];
    if (!close(a.loss, b.loss))
      out << where << ": step " << s + 1 << " loss " << a.loss << " vs reference " << b.loss
          << "\n";
    if (!close(a.grad_norm, b.grad_norm))
      out << where << ": step " << s + 1 << " grad-norm " << a.grad_norm << " vs reference "
          << b.grad_norm << "\n";
    if (a.losses.size() != b.losses.size())
      out << where << ": step " << s + 1 << " " << a.losses.size() << " width losses vs "
          << b.losses.size() << "\n";
    for (size_t w = 0; w < std::min(a.losses.size(), b.losses.size()); ++w)
      if (!close(a.losses[w], b.losses[w]))
        out << where << ": step " << s + 1 << " width " << w << " loss " << a.losses[w] << " vs "
            << b.losses[w] << "\n";
  }
  int checked = 0;
  for (const auto& [name, p] : got.model->params().all()) {
    if (!ref.model->params().contains(name)) {
      out << where << ": parameter " << name << " is not in the reference\n";
      continue;
    }
    const Tensor& b = ref.model->params().at(name).value;
    const Tensor& a = p.value;
    if (a.shape() != b.shape()) {
      out << where << ": " << name << " shape " << shape_string(a.shape()) << " vs "
          << shape_string(b.shape()) << "\n";
      continue;
    }
    // The last step's gradients (clipped alike) first: relative to the tensor's largest, with a
    // floor of 1e-4 of the global norm (below it, rounding noise of zero gradients).
    const Tensor& ga = p.grad;
    const Tensor& gb = ref.model->params().at(name).grad;
    double grad_err = 0, grad_scale = 0;
    for (int64_t i = 0; i < ga.numel(); ++i) {
      grad_err = std::max(grad_err, static_cast<double>(std::fabs(ga[i] - gb[i])));
      grad_scale = std::max(grad_scale, static_cast<double>(std::fabs(gb[i])));
    }
    const double norm = ref.metrics.back().grad_norm;
    if (!(grad_err <= kTolerance * std::max(grad_scale, 1e-4 * norm)))
      out << where << ": " << name << " step " << kSteps << " gradient: max |diff| " << grad_err
          << " > 1e-5 x scale " << grad_scale << "\n";
    double err = 0, scale = 1e-2;
    for (int64_t i = 0; i < a.numel(); ++i) {
      err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
    }
    // A gradient that is zero in exact arithmetic (attn/proj/bias: a chunk softmax does not see a
    // bias shared by its rows) is rounding noise of ~1e-11 that depends on the summation order
    // (the data-parallel all-reduce changes it); AdamW normalises that noise into steps of up to
    // lr, so such a tensor is only held to 1% of the distance AdamW could have moved it.
    const bool noise_gradient = grad_scale < 1e-8 * norm;
    const double allowed = noise_gradient ? 1e-2 * got_lr_steps(got) : kTolerance * scale;
    if (!(err <= allowed))
      out << where << ": " << name << " after " << kSteps << " steps: max |diff| " << err << " > "
          << allowed << (noise_gradient ? " (noise gradient)" : "") << " (scale " << scale << ")\n";
    ++checked;
  }
  if (checked == 0) out << where << ": no parameters on this stage\n";
  return out.str();
}

// 1F1B holds min(pp − stage, m) micro-batches on stage `stage`, GPipe all m (schedule.h).
std::string check_live(const RunResult& got, const std::string& schedule,
                       const std::string& where) {
  const int m = got.micro_batches;
  const int64_t expected = schedule == "gpipe" ? m : std::min(got.pp - got.stage, m);
  std::ostringstream out;
  for (int s = 0; s < kSteps; ++s)
    if (got.max_live[s] != expected)
      out << where << ": step " << s + 1 << " max live micro-batches " << got.max_live[s]
          << ", expected " << expected << " (" << schedule << ", m " << m << ")\n";
  if (schedule == "1f1b" && got.stage == 0 && m >= got.pp && got.max_live[0] > got.pp)
    out << where << ": 1F1B first stage keeps " << got.max_live[0] << " > pp micro-batches\n";
  return out.str();
}

// World ranks [0, n) in a communicator; MPI_COMM_NULL elsewhere. Collective over world; the
// destructor waits (sleeping, comm::barrier) for every rank, so cases do not overlap.
class SubWorld {
 public:
  explicit SubWorld(int n) {
    const int r = world_rank();
    MPI_Comm_split(MPI_COMM_WORLD, r < n ? 0 : MPI_UNDEFINED, r, &comm_);
  }
  ~SubWorld() {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    comm::barrier(MPI_COMM_WORLD);
  }
  SubWorld(const SubWorld&) = delete;
  SubWorld& operator=(const SubWorld&) = delete;
  bool member() const { return comm_ != MPI_COMM_NULL; }
  MPI_Comm comm() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

std::string where_of(const Layout& layout) {
  return layout.name + " (rank " + std::to_string(world_rank()) + ")";
}

class PipelineMpi : public ::testing::TestWithParam<Layout> {
 protected:
  void SetUp() override {
    saved_timeout_ = comm::timeout();
    comm::set_timeout(120);  // a hang fails the test in minutes, not after ctest's 15
  }
  void TearDown() override { comm::set_timeout(saved_timeout_); }

 private:
  double saved_timeout_ = 600;
};

TEST_P(PipelineMpi, MatchesSingleProcess) {
  const Layout& layout = GetParam();
  if (world_size() < layout.ranks())
    GTEST_SKIP() << layout.name << " needs " << layout.ranks() << " MPI ranks, has "
                 << world_size();
  const Config config = layout_config(layout);
  ASSERT_EQ(config.train.batch % (layout.dp * config.train.micro_batch), 0) << layout.name;
  std::string report;
  {
    SubWorld group(layout.ranks());
    if (group.member()) {
      const RunResult got = run_distributed(config, group.comm());
      const RunResult& ref = reference_for(config);
      report += compare(got, ref, where_of(layout));
      report += check_live(got, layout.schedule, where_of(layout));
      if (!got.bucket_report.empty()) report += where_of(layout) + ": " + got.bucket_report;
      if (!got.replicas_identical)
        report += where_of(layout) + ": data-parallel replicas' parameters differ in bits\n";
      // Together the stages of one pipeline hold every parameter exactly once.
      double held = static_cast<double>(got.model->params().count_elements());
      comm::allreduce_sum(&held, 1, group.comm());
      const double total = static_cast<double>(ref.model->params().count_elements());
      if (held != layout.dp * total)
        report += where_of(layout) + ": replicas' stages hold " + std::to_string(held) +
                  " parameters, expected dp x " + std::to_string(total) + "\n";
    }
  }
  const std::string all = gather_reports(report);
  EXPECT_EQ(all, "");
}

std::vector<Layout> layouts() {
  const std::string three = kThreeStacks, two = kTwoLevels;
  const std::string joint = "[model]\nffn_granularities = 1,2\n";
  const std::string dropout = "[model]\ndropout = 0.1\n";
  return {
      // pp = 2: automatic balancing (the model has 3 stacks, so the cost model decides).
      {"pp2_gpipe_m4", three + train_section(24, 8, 2), 1, 2, "gpipe"},
      {"pp2_1f1b_m4", three + train_section(24, 8, 2), 1, 2, "1f1b"},
      {"pp2_1f1b_m8", three + train_section(24, 8, 1), 1, 2, "1f1b"},
      // pp = 3: the natural stages (pre stack + down, middle, up + post stack + head).
      {"pp3_gpipe_m4", three + train_section(24, 8, 2), 1, 3, "gpipe"},
      {"pp3_1f1b_m4", three + train_section(24, 8, 2), 1, 3, "1f1b"},
      {"pp3_gpipe_m8", three + train_section(24, 8, 1), 1, 3, "gpipe"},
      {"pp3_1f1b_m8_stages", three + train_section(24, 8, 1), 1, 3, "1f1b", "6,3,6"},
      // More stages than stacks: the cost model cuts inside stacks; the skip crosses several.
      {"pp4_1f1b_m8", three + train_section(24, 8, 1), 1, 4, "1f1b"},
      {"pp6_gpipe_m8", three + train_section(24, 8, 1), 1, 6, "gpipe"},
      // MatFormer joint: every micro-batch at both widths (8 schedule entries).
      {"pp3_1f1b_matformer_joint", three + joint + train_section(24, 8, 2, "matformer = joint\n"),
       1, 3, "1f1b"},
      // Two levels, pp = 5: skips 0 -> 4 and 1 -> 3.
      {"pp5_gpipe_m8", two + train_section(32, 8, 1), 1, 5, "gpipe"},
      {"pp5_1f1b_m5", two + train_section(32, 10, 2), 1, 5, "1f1b"},
      // Data parallel, alone and around a pipeline (dropout keyed by global sample).
      {"dp2_pp1", three + train_section(24, 8, 2), 2, 1, "1f1b"},
      {"dp4_pp1", three + train_section(24, 8, 2), 4, 1, "gpipe"},
      {"dp3_pp2_gpipe", three + train_section(24, 12, 2), 3, 2, "gpipe"},
      {"dp2_pp3_1f1b_dropout", three + dropout + train_section(24, 8, 1), 2, 3, "1f1b"},
  };
}

INSTANTIATE_TEST_SUITE_P(Layouts, PipelineMpi, ::testing::ValuesIn(layouts()),
                         [](const ::testing::TestParamInfo<Layout>& info) {
                           return info.param.name;
                         });

bool bit_identical(const RunResult& a, const RunResult& b) {
  for (int s = 0; s < kSteps; ++s)
    if (a.metrics[s].loss != b.metrics[s].loss || a.metrics[s].grad_norm != b.metrics[s].grad_norm)
      return false;
  for (const auto& [name, p] : a.model->params().all()) {
    const Param& q = b.model->params().at(name);
    if (std::memcmp(p.value.data(), q.value.data(), p.value.numel() * sizeof(float)) != 0 ||
        std::memcmp(p.exp_avg.data(), q.exp_avg.data(), p.exp_avg.numel() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

// The same layout twice: the same bits (losses, grad norms, parameters, moments). dp = 2 with
// dropout and pp = 3, so the all-reduce, the skips and the masks are all covered.
TEST(PipelineMpiDeterminism, SameLayoutTwiceIsBitIdentical) {
  const Layout layout{"dp2_pp3_dropout",
                      kThreeStacks + "[model]\ndropout = 0.1\n" + train_section(24, 8, 1), 2, 3,
                      "1f1b"};
  if (world_size() < layout.ranks())
    GTEST_SKIP() << "needs " << layout.ranks() << " MPI ranks, has " << world_size();
  const Config config = layout_config(layout);
  std::string report;
  {
    SubWorld group(layout.ranks());
    if (group.member()) {
      const RunResult first = run_distributed(config, group.comm());
      const RunResult second = run_distributed(config, group.comm());
      if (!bit_identical(first, second))
        report = where_of(layout) + ": two runs of the same layout differ\n";
    }
  }
  EXPECT_EQ(gather_reports(report), "");
}

// Activation memory, stated on its own: with 8 micro-batches on 2 stages, 1F1B never keeps more
// than pp on the first stage and GPipe keeps all 8 (the count StageModel's units track).
TEST(PipelineMpiMemory, OneFOneBBoundsLiveMicroBatches) {
  if (world_size() < 2) GTEST_SKIP() << "needs 2 MPI ranks, has " << world_size();
  std::string report;
  for (const char* schedule : {"1f1b", "gpipe"}) {
    const Layout layout{std::string("memory_") + schedule, kThreeStacks + train_section(24, 8, 1),
                        1, 2, schedule};
    const Config config = layout_config(layout);
    SubWorld group(2);
    if (!group.member()) continue;
    const RunResult got = run_distributed(config, group.comm());
    if (got.stage != 0) continue;
    const int64_t live = *std::max_element(got.max_live.begin(), got.max_live.end());
    const bool ok = std::string(schedule) == "1f1b" ? live <= 2 : live == 8;
    if (!ok)
      report += std::string(schedule) + ": first stage kept " + std::to_string(live) +
                " micro-batches alive (m 8, pp 2)\n";
  }
  EXPECT_EQ(gather_reports(report), "");
}

// ---- bad configurations through the real binary (serial tests that start mpirun) ----

struct Launch {
  int status = -1;  // exit status of mpirun, -1 if it did not exit normally
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `mpirun -np ranks hourglass train args`, its stdout and stderr kept apart.
Launch launch_train(int ranks, const std::string& args) {
  const std::string base = ::testing::TempDir() + "hg_pipeline_cli_" + std::to_string(::getpid());
  const std::string command = testing::mpirun_prefix(ranks) + testing::hourglass_binary() +
                              " train " + args + " --run.dir " + base + "_run >" + base +
                              ".out 2>" + base + ".err";
  Launch l;
  const int raw = std::system(command.c_str());
  if (raw != -1 && WIFEXITED(raw)) l.status = WEXITSTATUS(raw);
  l.out = slurp(base + ".out");
  l.err = slurp(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return l;
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

const std::string kCliModel =
    "--model.vocab_size 16 --model.d_model 16 --model.heads 2 --model.ffn 32 --model.window 8 "
    "--model.chunk 4 --train.seq_len 24 --train.steps 2 --data.dir /nonexistent ";

// Exit 2, exactly one error line (rank 0's), containing `expected`, and no training output.
void expect_usage_error(int ranks, const std::string& args, const std::string& expected) {
  const Launch l = launch_train(ranks, kCliModel + args);
  EXPECT_EQ(l.status, 2) << "stdout:\n" << l.out << "stderr:\n" << l.err;
  EXPECT_EQ(count_of(l.err, "hourglass train: error: "), 1) << l.err;
  EXPECT_NE(l.err.find(expected), std::string::npos) << "expected '" << expected << "' in\n"
                                                     << l.err;
  EXPECT_EQ(l.out.find("step "), std::string::npos) << l.out;
  EXPECT_EQ(l.err.find("rank 1"), std::string::npos) << l.err;
}

TEST(PipelineCli, PpLargerThanUnitsExits2) {
  // "1@1" has 4 units (embed, block, norm, head); pp = 5 needs 5 ranks to get past the grid.
  expect_usage_error(5, "--model.hierarchy 1@1 --parallel.pp 5",
                     "parallel.pp = 5 is larger than the model's 4 units");
}

TEST(PipelineCli, MicroBatchNotDividingReplicaBatchExits2) {
  expect_usage_error(2,
                     "--model.hierarchy 2@1 --parallel.dp 2 --train.batch 6 --train.micro_batch 2",
                     "train.batch = 6: must be a multiple of parallel.dp x train.micro_batch = 4");
}

TEST(PipelineCli, DpNotDividingBatchExits2) {
  expect_usage_error(2,
                     "--model.hierarchy 2@1 --parallel.dp 2 --train.batch 5 --train.micro_batch 1",
                     "train.batch = 5: must be a multiple of parallel.dp x train.micro_batch = 2");
}

TEST(PipelineCli, StagesNotCoveringTheModelExits2) {
  expect_usage_error(2, "--model.hierarchy 2@1 --parallel.pp 2 --parallel.stages 2,2",
                     "parallel.stages = \"2,2\" covers 4 units but the model has 5");
}

TEST(PipelineCli, LayoutNotMatchingWorldExits2) {
  expect_usage_error(2, "--model.hierarchy 2@1 --parallel.pp 3",
                     "= 1 · 3 · 1 = 3 but the job has 2 MPI ranks");
}

}  // namespace
}  // namespace hg
