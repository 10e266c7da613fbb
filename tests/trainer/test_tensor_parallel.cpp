// Tensor parallelism (issue 5, ARCHITECTURE.md §6) against the single-process reference.
//
// Serial tests: the slice layout (heads, MatFormer bands balanced at every width), init of every
// slice equal to the canonical init, checkpoint import into slices; and through the real binary,
// bad tensor-parallel configurations exit 2, and a run at tp = 2 gives the checkpoint and the
// `eval --ffn-widths` bpc of the same run at tp = 1.
//
// MPI tests (TensorParallelMpi*, `mpirun -np 8`): each (dp, pp, tp) layout runs on a
// sub-communicator of world ranks [0, dp·pp·tp) (the others skip it and sleep in a barrier):
// 5 distributed_step()s must give the losses, grad norms, last gradients and final parameters of
// train_step() on one full StageModel computed on the same rank, within 1e-5 relative (each rank
// compares its slices with the same slices of the reference); replicated tensors must be
// bit-identical over the tensor-parallel group; the checkpoint assembled from the slices equals
// the reference's tensors and loads back into the slices bit for bit.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "tests/support/run_command.h"
#include "tests/support/reference_run.h"
#include "tests/support/tiny_models.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_io.h"
#include "trainer/checkpoint_store.h"
#include "trainer/distributed_step.h"
#include "trainer/model.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/tensor_parallel.h"
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

// d 16, 4 heads of 4, ffn 32, rank 2 (proj columns h·r, h·r+1), three stacks of 24 and 8 rows.
const std::string kModel =
    "[model]\nvocab_size = 16\nd_model = 16\nheads = 4\nffn = 32\nwindow = 8\nchunk = 4\n"
    "rank = 2\nhierarchy = 1@1 2@3 1@1\n";
const std::string kTrain =
    "[train]\nseq_len = 24\nbatch = 4\nmicro_batch = 1\nlr = 1e-3\nwarmup = 2\n";
// MatFormer joint at widths 32, 16, 8: bands 8, 8, 16.
const std::string kJoint = "ffn_granularities = 1,2,4\n";

Config make_config(const std::string& model_extra, const std::string& train_extra, int dp, int pp,
                   int tp) {
  Config config = testing::tiny_config(kModel + model_extra + kTrain + train_extra);
  config.parallel.dp = dp;
  config.parallel.pp = pp;
  config.parallel.tp = tp;
  config.parallel.grad_bucket_mb = 0.004;  // several data-parallel buckets per stage
  return config;
}

TensorParallel group_of(int rank, int size, const Config& config) {
  TensorParallel tp;
  tp.rank = rank;
  tp.size = size;
  if (config.train.matformer != "off") tp.nested_granularities = config.model.ffn_granularities;
  return tp;
}

// ---- serial: the layout ----

TEST(TensorParallelLayout, HeadsAreContiguousColumnBlocks) {
  for (int size : {1, 2, 4}) {
    std::vector<int64_t> all;
    for (int r = 0; r < size; ++r) {
      TensorParallel tp;
      tp.rank = r;
      tp.size = size;
      auto cols = head_columns(tp, 4, 3);
      ASSERT_EQ(cols.size(), static_cast<size_t>(4 / size * 3));
      all.insert(all.end(), cols.begin(), cols.end());
    }
    for (int64_t c = 0; c < 12; ++c) EXPECT_EQ(all[c], c) << "tp " << size;
  }
}

// Each rank's share of every MatFormer width is equal, and together the ranks' active prefixes
// are exactly the canonical prefix [0, W).
TEST(TensorParallelLayout, EveryMatformerWidthIsBalanced) {
  const std::vector<int> granularities = {1, 2, 4};
  for (int size : {1, 2, 4}) {
    for (int W : {8, 16, 32}) {
      std::set<int64_t> covered;
      for (int r = 0; r < size; ++r) {
        TensorParallel tp;
        tp.rank = r;
        tp.size = size;
        tp.nested_granularities = granularities;
        const auto units = ffn_units(tp, 32, granularities);
        ASSERT_EQ(units.size(), 32u / size);
        const int local = local_ffn_width(tp, 32, granularities, W);
        EXPECT_EQ(local * size, W) << "tp " << size << " rank " << r << " width " << W;
        for (int u = 0; u < local; ++u) {
          EXPECT_LT(units[u], W) << "rank " << r << " local unit " << u;
          covered.insert(units[u]);
        }
      }
      EXPECT_EQ(covered.size(), static_cast<size_t>(W)) << "tp " << size << " width " << W;
    }
  }
  TensorParallel two;
  two.size = 2;
  EXPECT_THROW(local_ffn_width(two, 32, granularities, 12), std::logic_error);  // not a boundary
}

TEST(TensorParallelLayout, SliceRoundTripAndCanonicalOffsets) {
  Tensor canonical({3, 8});
  for (int64_t i = 0; i < canonical.numel(); ++i) canonical[i] = static_cast<float>(i);
  for (int axis : {0, 1}) {
    ParamSlice slice{axis, axis == 0 ? std::vector<int64_t>{2, 0} : std::vector<int64_t>{6, 1, 4}};
    const Shape local = local_shape(canonical.shape(), slice);
    Tensor part(local);
    take_slice(part.data(), canonical, slice);
    for (int64_t i = 0; i < part.numel(); ++i)
      EXPECT_EQ(part[i], canonical[canonical_offset(canonical.shape(), slice, i)]);
    Tensor back(canonical.shape());
    put_slice(back, part.data(), slice);
    for (int64_t i = 0; i < part.numel(); ++i)
      EXPECT_EQ(back[canonical_offset(canonical.shape(), slice, i)], part[i]);
  }
}

// Every parameter of every rank's store is the slice of the tp = 1 store's tensor, at init and
// after importing a checkpoint; the slices of a tensor together hold each element once.
TEST(TensorParallelLayout, InitAndImportAreLayoutIndependent) {
  for (const std::string& extra :
       {std::string(kJoint + "resampling = attention\n"), std::string("attention = full\n")}) {
    const Config config = make_config(extra, "matformer = joint\n", 1, 1, 4);
    StageModel full(config.model, config.train.seq_len);
    full.params().init_all(config.train.seed);
    CheckpointData canonical;
    export_params(full.params(), canonical, true);
    for (auto& [name, t] : canonical.params)  // values a fresh init cannot produce
      for (int64_t i = 0; i < t.numel(); ++i) t[i] += 0.001f * static_cast<float>(i % 7);
    std::map<std::string, int64_t> held;
    std::map<std::string, bool> sharded;
    for (int r = 0; r < 4; ++r) {
      StageModel part(config.model, config.train.seq_len, 0, -1, group_of(r, 4, config));
      part.params().init_all(config.train.seed);
      ASSERT_EQ(part.params().all().size(), full.params().all().size());
      for (const auto& [name, p] : part.params().all()) {
        const Param& f = full.params().at(name);
        EXPECT_EQ(p.canonical_shape, f.value.shape()) << name;
        Tensor expected(p.value.shape());
        take_slice(expected.data(), f.value, p.slice);
        EXPECT_EQ(0, std::memcmp(expected.data(), p.value.data(), sizeof(float) * p.value.numel()))
            << name << " rank " << r;
        held[name] += p.value.numel();
        sharded[name] = p.slice.sharded();
      }
      import_params(part.params(), canonical, true, false, "canonical");
      for (const auto& [name, p] : part.params().all()) {
        Tensor expected(p.value.shape());
        take_slice(expected.data(), canonical.params.at(name), p.slice);
        EXPECT_EQ(0, std::memcmp(expected.data(), p.value.data(), sizeof(float) * p.value.numel()))
            << name << " rank " << r;
      }
    }
    for (const auto& [name, p] : full.params().all())
      EXPECT_EQ(held[name], (sharded[name] ? 1 : 4) * p.value.numel()) << name;
  }
}

// ---- MPI: layouts against the reference ----

std::vector<int32_t> step_tokens(const Config& config, int64_t s) {
  return testing::step_tokens(config, s, 2000);
}

struct RunResult {
  std::vector<StepMetrics> metrics;
  std::unique_ptr<ProcessGrid> grid;  // outlives the model (its store uses tp_comm)
  std::unique_ptr<StageModel> model;
};

RunResult run_reference(const Config& config) {
  testing::ReferenceRun reference = testing::single_process_run(config, kSteps, 2000);
  RunResult r;
  r.metrics = std::move(reference.metrics);
  r.model = std::move(reference.model);
  return r;
}

const RunResult& reference_for(const Config& config) {
  static std::map<std::string, RunResult> cache;
  Config key_config = config;
  key_config.parallel = ParallelConfig{};
  const std::string key = key_config.to_ini();
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, run_reference(key_config)).first;
  return it->second;
}

RunResult run_distributed(const Config& config, MPI_Comm comm) {
  RunResult r;
  r.grid = std::make_unique<ProcessGrid>(config.parallel.dp, config.parallel.pp, config.parallel.tp,
                                         comm);
  const ProcessGrid& grid = *r.grid;
  const auto plans = plan_units(config.model, config.train.seq_len);
  const auto first =
      partition_units(unit_infos(plans), config.parallel.pp,
                      static_cast<int>(config.model.stacks.size()), config.parallel.stages);
  r.model =
      std::make_unique<StageModel>(config.model, config.train.seq_len, first[grid.stage()],
                                   first[grid.stage() + 1], make_tensor_parallel(grid, config));
  r.model->params().init_all(config.train.seed);
  PipelineRuntime runtime(*r.model, grid, parse_schedule_kind(config.parallel.schedule), first,
                          nullptr, grad_bucket_bytes(config.parallel));
  const int64_t row = config.train.seq_len + 1;
  for (int64_t s = 0; s < kSteps; ++s) {
    const std::vector<int32_t> tokens = step_tokens(config, s);
    std::vector<TokenBatch> micro = replica_micro_batches(config, grid.dp_rank(), {});
    if (grid.first_stage() || grid.last_stage())
      for (TokenBatch& mb : micro) mb.tokens = tokens.data() + mb.first_sample * row;
    r.metrics.push_back(distributed_step(*r.model, runtime, grid, config, s, micro).metrics);
  }
  return r;
}

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

// max |a − b| and max |b| over the elements.
std::pair<double, double> max_diff(const float* a, const float* b, int64_t n) {
  double err = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return {err, scale};
}

// Losses and grad norms per step (1e-5 relative); every local tensor's last gradient and final
// value against the same slice of the reference's canonical tensor, within `tensor_tolerance` of
// the tensor's scale (as tests/trainer/test_pipeline.cpp).
std::string compare(const RunResult& got, const RunResult& ref, double tensor_tolerance,
                    const std::string& where) {
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
  double lr_steps = 0;
  for (const StepMetrics& m : got.metrics) lr_steps += m.lr;
  const double norm = ref.metrics.back().grad_norm;
  int checked = 0;
  for (const auto& [name, p] : got.model->params().all()) {
    if (!ref.model->params().contains(name)) {
      out << where << ": " << name << " is not in the reference\n";
      continue;
    }
    const Param& q = ref.model->params().at(name);
    if (p.canonical_shape != q.value.shape()) {
      out << where << ": " << name << " canonical shape " << shape_string(p.canonical_shape)
          << " vs " << shape_string(q.value.shape()) << "\n";
      continue;
    }
    Tensor value(p.value.shape()), grad(p.value.shape());
    take_slice(value.data(), q.value, p.slice);
    take_slice(grad.data(), q.grad, p.slice);
    const auto [grad_err, grad_scale] = max_diff(p.grad.data(), grad.data(), grad.numel());
    if (!(grad_err <= tensor_tolerance * std::max(grad_scale, 1e-4 * norm)))
      out << where << ": " << name << " step " << kSteps << " gradient: max |diff| " << grad_err
          << " > " << tensor_tolerance << " x scale " << grad_scale << "\n";
    auto [err, scale] = max_diff(p.value.data(), value.data(), value.numel());
    scale = std::max(scale, 1e-2);
    // A gradient that is zero in exact arithmetic (attn/proj/bias) is rounding noise that AdamW
    // normalises into steps of up to lr: held to 1% of the distance it could have moved.
    const bool noise_gradient = grad_scale < 1e-8 * norm;
    const double allowed = noise_gradient ? 1e-2 * lr_steps : tensor_tolerance * scale;
    if (!(err <= allowed))
      out << where << ": " << name << " after " << kSteps << " steps: max |diff| " << err << " > "
          << allowed << (noise_gradient ? " (noise gradient)" : "") << "\n";
    ++checked;
  }
  if (checked == 0) out << where << ": no parameters on this rank\n";
  return out.str();
}

// Replicated tensors (values and last gradients) are the same bits on every tensor-parallel rank;
// the group holds each sharded element once.
std::string check_group(const RunResult& got, const std::string& where) {
  std::ostringstream out;
  const ProcessGrid& grid = *got.grid;
  int sharded = 0;
  for (const auto& [name, p] : got.model->params().all()) {
    if (p.slice.sharded()) {
      ++sharded;
      double held = static_cast<double>(p.value.numel());
      comm::allreduce_sum(&held, 1, grid.tp_comm());
      if (held != static_cast<double>(shape_numel(p.canonical_shape)))
        out << where << ": " << name << " slices hold " << held << " of "
            << shape_numel(p.canonical_shape) << " elements\n";
      continue;
    }
    for (const Tensor* t : {&p.value, &p.grad}) {
      Tensor root = *t;
      comm::broadcast(root.data(), sizeof(float) * root.numel(), 0, grid.tp_comm());
      if (std::memcmp(root.data(), t->data(), sizeof(float) * t->numel()) != 0)
        out << where << ": replicated " << name << (t == &p.grad ? " gradient" : " value")
            << " differs from tensor-parallel rank 0's\n";
    }
  }
  if (grid.tp() > 1 && sharded == 0) out << where << ": nothing is sharded on this rank\n";
  return out.str();
}

// Saves through save_checkpoint (slices assembled into canonical tensors), compares the file
// with the reference's tensors on rank 0 of the group, and loads it into fresh slices on every
// rank: the same bits as the trained ones.
std::string check_checkpoint(const RunResult& got, const RunResult& ref, const Config& config,
                             MPI_Comm comm, const std::string& where) {
  std::ostringstream out;
  const ProcessGrid& grid = *got.grid;
  char dir[256] = {};
  if (grid.rank() == 0)
    std::snprintf(dir, sizeof dir, "%s/hg-tp-ckpt-%d",
                  std::filesystem::temp_directory_path().c_str(), static_cast<int>(::getpid()));
  MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, comm);
  const std::string path = save_checkpoint(dir, kSteps, config.to_ini(), got.model->params(), grid);
  const std::string file = std::string(dir) + "/" + checkpoint_file_name(kSteps);
  CheckpointData data = read_checkpoint(file, true);
  if (grid.rank() == 0) {
    if (data.params.size() != ref.model->params().all().size())
      out << where << ": checkpoint holds " << data.params.size() << " tensors, the model "
          << ref.model->params().all().size() << "\n";
    for (const auto& [name, q] : ref.model->params().all()) {
      auto it = data.params.find(name);
      if (it == data.params.end() || it->second.shape() != q.value.shape()) {
        out << where << ": checkpoint tensor " << name << " missing or misshapen\n";
        continue;
      }
      auto [err, scale] = max_diff(it->second.data(), q.value.data(), q.value.numel());
      const bool noise = name.find("proj/bias") != std::string::npos;
      if (!(err <= (noise ? 1e-4 : kTolerance * std::max(scale, 1e-2))))
        out << where << ": checkpoint " << name << " max |diff| " << err << " (scale " << scale
            << ")\n";
    }
  }
  StageModel loaded(config.model, config.train.seq_len, got.model->first_unit(),
                    got.model->last_unit(), make_tensor_parallel(grid, config));
  import_params(loaded.params(), data, true, true, file);
  for (const auto& [name, p] : got.model->params().all()) {
    const Param& l = loaded.params().at(name);
    for (auto [a, b] : {std::pair{&p.value, &l.value}, std::pair{&p.exp_avg, &l.exp_avg},
                        std::pair{&p.exp_avg_sq, &l.exp_avg_sq}})
      if (std::memcmp(a->data(), b->data(), sizeof(float) * a->numel()) != 0)
        out << where << ": " << name << " does not load back bit-identically\n";
  }
  comm::barrier(comm);
  if (grid.rank() == 0) std::filesystem::remove_all(dir);
  (void)path;
  return out.str();
}

// World ranks [0, n) in a communicator; the destructor waits (sleeping) for every world rank.
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

struct Layout {
  std::string name;
  int dp, pp, tp;
  std::string model_extra, train_extra;
  bool checkpoint = false;  // also save, compare and reload
  // Gradients and parameters, relative to each tensor's scale (losses: always 1e-5). With dropout
  // the float32 conditioning of this tiny model is worse: the single-process run itself, with
  // micro_batch 2 instead of 1 (the same arithmetic in another order), moves stacks/1/blocks/1/
  // attn/wv by 1.5e-5 and stacks/1/blocks/0/attn/wo (seed 7) by 1.3e-5 of their scale after 5
  // steps; the dropout layout is held to twice that.
  double tensor_tolerance = kTolerance;
  int ranks() const { return dp * pp * tp; }
};

void PrintTo(const Layout& layout, std::ostream* os) { *os << layout.name; }

class TensorParallelMpi : public ::testing::TestWithParam<Layout> {
 protected:
  void SetUp() override {
    saved_timeout_ = comm::timeout();
    comm::set_timeout(120);
  }
  void TearDown() override { comm::set_timeout(saved_timeout_); }

 private:
  double saved_timeout_ = 600;
};

TEST_P(TensorParallelMpi, MatchesSingleProcess) {
  const Layout& layout = GetParam();
  if (world_size() < layout.ranks())
    GTEST_SKIP() << layout.name << " needs " << layout.ranks() << " MPI ranks, has "
                 << world_size();
  const Config config =
      make_config(layout.model_extra, layout.train_extra, layout.dp, layout.pp, layout.tp);
  std::string report;
  {
    SubWorld group(layout.ranks());
    if (group.member()) {
      const std::string where = layout.name + " (rank " + std::to_string(world_rank()) + ")";
      const RunResult got = run_distributed(config, group.comm());
      const RunResult& ref = reference_for(config);
      report += compare(got, ref, layout.tensor_tolerance, where);
      report += check_group(got, where);
      if (layout.checkpoint) report += check_checkpoint(got, ref, config, group.comm(), where);
    }
  }
  EXPECT_EQ(gather_reports(report), "");
}

std::vector<Layout> layouts() {
  const std::string joint = kJoint, matformer = "matformer = joint\n";
  return {
      {"tp2_long_short", 1, 1, 2, "", "", true},
      {"tp4_full_matformer", 1, 1, 4, "attention = full\n" + joint, matformer},
      {"dp2_tp2_resampling_dropout", 2, 1, 2, "resampling = attention\ndropout = 0.1\n", "", false,
       3e-5},
      {"pp3_tp2_matformer", 1, 3, 2, joint, matformer, true},
      {"dp2_pp2_tp2_full_resampling_matformer", 2, 2, 2,
       "attention = full\nresampling = attention\n" + joint, matformer},
  };
}

INSTANTIATE_TEST_SUITE_P(Layouts, TensorParallelMpi, ::testing::ValuesIn(layouts()),
                         [](const ::testing::TestParamInfo<Layout>& info) {
                           return info.param.name;
                         });

// ---- the real binary (serial tests that start mpirun) ----

// `mpirun -np ranks <command>`, stdout and stderr together.
testing::CommandResult mpirun(int ranks, const std::string& command) {
  return testing::run_command(testing::mpirun_prefix(ranks) + command);
}

// The tiny model of tests/support/run_command.h with 4 heads (tp 2 and 4 divide them);
// `overrides` replace or add keys.
std::string cli_args(std::map<std::string, std::string> overrides) {
  overrides.insert({{"model.heads", "4"}, {"train.warmup", "5"}, {"log.every", "100"}});
  return testing::tiny_model_flags(overrides);
}

TEST(TensorParallelCli, BadTensorParallelConfigurationsExitTwo) {
  testing::TempDir run;
  struct Case {
    std::map<std::string, std::string> overrides;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{{"model.d_model", "24"}, {"model.heads", "3"}}, "must divide model.heads = 3"},
      {{{"model.ffn", "72"}, {"model.ffn_granularities", "1,8"}, {"train.matformer", "joint"}},
       "must divide every MatFormer FFN width band (width 72 leaves 63 units"},
  };
  for (const Case& c : cases) {
    const std::string args = cli_args(c.overrides);
    auto r = mpirun(2, testing::hourglass_binary() + " train" + args +
                           " --parallel.tp 2 --train.steps 1 --data.dir /nonexistent --run.dir " +
                           run.path());
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    int errors = 0;
    for (size_t at = r.output.find("hourglass train: error: "); at != std::string::npos;
         at = r.output.find("hourglass train: error: ", at + 1))
      ++errors;
    EXPECT_EQ(errors, 1) << "one message, from rank 0\n" << r.output;
    EXPECT_NE(r.output.find("parallel.tp"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "computed before failing\n" << r.output;
  }
}

std::string json_value(const std::string& output, const std::string& key) {
  const size_t brace = output.rfind('{');
  const size_t at = output.find("\"" + key + "\": ", brace);
  return at == std::string::npos ? "" : output.substr(at + key.size() + 4);
}

// 20 steps of MatFormer joint at tp = 1 and tp = 2: the same checkpoint within float32 rounding,
// and `eval --ffn-widths` gives the same bpc at every trained width.
TEST(TensorParallelCli, CheckpointAndEvalMatchSingleProcess) {
  testing::TempDir dir;
  auto prep = testing::run_command(testing::hourglass_binary() + " prep --input " +
                                   testing::source_path("data/corpus/common-licenses.txt") +
                                   " --output " + (dir / "data"));
  ASSERT_EQ(prep.exit_code, 0) << prep.output;
  const std::string args = cli_args({{"model.ffn_granularities", "1,2,4"},
                                     {"train.matformer", "joint"},
                                     {"model.dropout", "0.1"},
                                     {"train.steps", "20"},
                                     {"data.dir", dir / "data"}});
  auto one = testing::run_command("OMP_NUM_THREADS=1 " + testing::hourglass_binary() + " train" +
                                  args + " --run.dir " + (dir / "tp1"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = mpirun(2, testing::hourglass_binary() + " train" + args +
                           " --parallel.tp 2 --run.dir " + (dir / "tp2"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const std::string a = dir / "tp1/checkpoints/step-00000020.h5";
  const std::string b = dir / "tp2/checkpoints/step-00000020.h5";
  const CheckpointData x = read_checkpoint(a), y = read_checkpoint(b);
  ASSERT_EQ(x.params.size(), y.params.size());
  for (const auto& [name, t] : x.params) {
    ASSERT_TRUE(y.params.count(name)) << name;
    const Tensor& u = y.params.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    auto [err, scale] = max_diff(u.data(), t.data(), t.numel());
    // 20 AdamW steps amplify float32 rounding a little; proj/bias moves on noise gradients.
    const bool noise = name.find("proj/bias") != std::string::npos;
    EXPECT_LE(err, noise ? 1e-3 : 1e-4 * std::max(scale, 1e-2)) << name;
  }
  for (const char* widths : {"64", "32", "16"}) {
    std::string bpc[2];
    for (int i = 0; i < 2; ++i) {
      auto e = testing::run_command(testing::hourglass_binary() + " eval --checkpoint " +
                                    (i ? b : a) + " --data " + (dir / "data") +
                                    " --max-windows 16 --json --ffn-widths " + widths);
      ASSERT_EQ(e.exit_code, 0) << e.output;
      bpc[i] = json_value(e.output, "bpc");
      ASSERT_FALSE(bpc[i].empty()) << e.output;
    }
    EXPECT_NEAR(std::stod(bpc[0]), std::stod(bpc[1]), 1e-5 * std::stod(bpc[0]))
        << "--ffn-widths " << widths;
  }
}

}  // namespace
}  // namespace hg
