// The `hourglass` binary end to end: bad input exits 2 with one clear message before any compute;
// training learns, is bit-identical run to run, and resumes exactly; eval/sample/extract/info.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint_io.h"
#include "layers/backend.h"
#include "tests/support/run_command.h"

namespace hg {
namespace {

using testing::run_command;
using testing::TempDir;

const std::string kEnv =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ";

const std::string kTiny = testing::tiny_model_flags();

std::string train_command(const std::string& args) {
  return kEnv + testing::hourglass_binary() + " train" + args;
}

// The bundled corpus, prepared once for every test of this file.
const std::string& corpus_dir() {
  static TempDir dir;
  static std::string data = [] {
    std::string out = dir / "data";
    auto r = run_command(testing::hourglass_binary() + " prep --input " +
                         testing::source_path("data/corpus/common-licenses.txt") +
                         " --output " + out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
  }();
  return data;
}

std::vector<double> metric_values(const std::string& path, const std::string& key) {
  std::vector<double> values;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t at = line.find("\"" + key + "\": ");
    if (at != std::string::npos) values.push_back(std::stod(line.substr(at + key.size() + 4)));
  }
  return values;
}

struct BadInput {
  std::map<std::string, std::string> overrides;
  std::string expect;  // a substring the message must contain
};

TEST(Cli, BadConfigurationExitsTwoWithOneClearMessage) {
  const std::string data = " --data.dir " + corpus_dir();
  const std::vector<BadInput> cases = {
      {{{"model.hierarchy", "'2@1 4@3'"}}, "hierarchy"},                   // even stack count
      {{{"model.hierarchy", "'2@1 4@3 2@2'"}}, "palindrome"},              // not a palindrome
      {{{"model.hierarchy", "'1@1 1@2 1@5 1@2 1@1'"}}, "integer"},         // 5/2
      {{{"model.hierarchy", "'1@1 1@3 1@1'"}}, "seq_len"},                 // 32 % 3
      {{{"train.seq_len", "24"}, {"model.chunk", "16"}, {"model.window", "16"}}, "chunk"},
      {{{"model.window", "2"}}, "window"},                                 // w < l
      {{{"model.heads", "3"}}, "heads"},
      {{{"model.ffn_granularities", "1,3"}}, "ffn_granularities"},
      {{{"model.no_such_key", "1"}}, "no_such_key"},
      {{{"train.micro_batch", "3"}}, "micro_batch"},
  };
  for (const BadInput& c : cases) {
    const std::string args = testing::tiny_model_flags(c.overrides);
    auto r = run_command(train_command(args + data + " --train.steps 1 --run.dir /tmp/hg-never"));
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "computed before failing: " << args;
  }
  auto missing = run_command(train_command(kTiny + " --data.dir /nonexistent/data --train.steps 1"));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("/nonexistent/data"), std::string::npos) << missing.output;
  EXPECT_FALSE(std::filesystem::exists("/tmp/hg-never/checkpoints"));
}

TEST(Cli, TrainingLowersTheLossOnTheBundledCorpus) {
  TempDir run;
  auto r = run_command(train_command(kTiny + " --data.dir " + corpus_dir() +
                                     " --train.steps 200 --run.dir " + run.path()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto losses = metric_values(run / "metrics.jsonl", "loss");
  ASSERT_EQ(losses.size(), 200u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) first += losses[i] / 10;
  for (int i = 190; i < 200; ++i) last += losses[i] / 10;
  // ln 256 = 5.55 nats at start; a working model is well under 3 nats after 200 steps.
  EXPECT_GT(first, 5.0);
  EXPECT_LT(last, 3.0) << "mean loss of the last 10 steps";
  EXPECT_NE(r.output.find("tok/s"), std::string::npos);
  EXPECT_NE(r.output.find("ETA"), std::string::npos);
}

Tensor param(const std::string& checkpoint, const std::string& name) {
  return read_checkpoint(checkpoint).params.at(name);
}

void expect_same_checkpoints(const std::string& a, const std::string& b) {
  CheckpointData x = read_checkpoint(a), y = read_checkpoint(b);
  EXPECT_EQ(x.step, y.step);
  ASSERT_EQ(x.params.size(), y.params.size());
  for (const auto& [name, t] : x.params) {
    const Tensor& u = y.params.at(name);
    ASSERT_EQ(t.numel(), u.numel()) << name;
    EXPECT_EQ(0, std::memcmp(t.data(), u.data(), sizeof(float) * t.numel())) << name;
    const Tensor& m = x.exp_avg.at(name);
    EXPECT_EQ(0, std::memcmp(m.data(), y.exp_avg.at(name).data(), sizeof(float) * m.numel())) << name;
  }
}

TEST(Cli, SameRunTwiceAndAResumedRunAreBitIdentical) {
  TempDir a, b, c;
  const std::string common = kTiny + " --data.dir " + corpus_dir() +
                             " --train.steps 12 --model.dropout 0.1 --checkpoint.every 6";
  auto ra = run_command(train_command(common + " --run.dir " + a.path()));
  auto rb = run_command(train_command(common + " --run.dir " + b.path()));
  ASSERT_EQ(ra.exit_code, 0) << ra.output;
  ASSERT_EQ(rb.exit_code, 0) << rb.output;
  EXPECT_EQ(metric_values(a / "metrics.jsonl", "loss"), metric_values(b / "metrics.jsonl", "loss"));
  expect_same_checkpoints(a / "checkpoints/step-00000012.h5", b / "checkpoints/step-00000012.h5");
  // Resume from step 6 of run a in a fresh directory: the same 12-step result, bit for bit.
  auto rc = run_command(train_command(common + " --run.dir " + c.path() + " --checkpoint.resume " +
                                      (a / "checkpoints/step-00000006.h5")));
  ASSERT_EQ(rc.exit_code, 0) << rc.output;
  expect_same_checkpoints(a / "checkpoints/step-00000012.h5", c / "checkpoints/step-00000012.h5");
  auto resumed = metric_values(c / "metrics.jsonl", "loss");
  auto full = metric_values(a / "metrics.jsonl", "loss");
  ASSERT_EQ(resumed.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(resumed[i], full[6 + i]);
}

TEST(Cli, InitialCheckpointEvalSampleExtractInfo) {
  TempDir run;
  auto r = run_command(train_command(kTiny + " --model.ffn_granularities 1,2,4 --train.matformer joint"
                                     " --data.dir " + corpus_dir() + " --train.steps 30 --run.dir " +
                                     run.path()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = run / "checkpoints/step-00000030.h5";
  auto losses = metric_values(run / "metrics.jsonl", "loss");
  ASSERT_EQ(losses.size(), 30u);
  // joint: loss is the sum of the three widths' losses, and each is listed.
  std::ifstream metrics(run / "metrics.jsonl");
  std::string first_line;
  std::getline(metrics, first_line);
  EXPECT_NE(first_line.find("\"losses\": ["), std::string::npos) << first_line;

  const std::string hg = testing::hourglass_binary();
  auto eval = run_command(hg + " eval --checkpoint " + ckpt + " --data " + corpus_dir() +
                          " --max-windows 20 --json");
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_NE(eval.output.rfind("{\"loss\": "), std::string::npos) << eval.output;
  auto half = run_command(hg + " eval --checkpoint " + ckpt + " --data " + corpus_dir() +
                          " --max-windows 20 --json --ffn-widths 32");
  ASSERT_EQ(half.exit_code, 0) << half.output;
  EXPECT_NE(half.output, eval.output);
  // An extracted half-width model evaluates exactly like the full one at --ffn-widths 32.
  auto extract = run_command(hg + " extract --checkpoint " + ckpt + " --ffn-widths 32 --output " +
                             (run / "half.h5"));
  ASSERT_EQ(extract.exit_code, 0) << extract.output;
  EXPECT_EQ(param(run / "half.h5", "stacks/0/blocks/0/ffn/w1").shape(), (Shape{32, 32}));
  auto extracted = run_command(hg + " eval --checkpoint " + (run / "half.h5") + " --data " +
                               corpus_dir() + " --max-windows 20 --json");
  ASSERT_EQ(extracted.exit_code, 0) << extracted.output;
  EXPECT_EQ(extracted.output.substr(extracted.output.rfind('{')), half.output.substr(half.output.rfind('{')));

  auto sample = run_command(hg + " sample --checkpoint " + ckpt + " --prompt 'The ' --length 20");
  ASSERT_EQ(sample.exit_code, 0) << sample.output;
  EXPECT_EQ(sample.output.rfind("The ", 0), 0u) << sample.output;
  EXPECT_GE(sample.output.size(), 24u);
  // Cached decoding (the default) and --no-cache draw the same tokens, past train.seq_len (32)
  // where the window restarts; --num-samples decodes several continuations as one batch.
  const std::string greedy =
      hg + " sample --checkpoint " + ckpt + " --prompt 'The ' --length 80 --temperature 0";
  auto cached = run_command(greedy);
  auto uncached = run_command(greedy + " --no-cache");
  ASSERT_EQ(cached.exit_code, 0) << cached.output;
  ASSERT_EQ(uncached.exit_code, 0) << uncached.output;
  EXPECT_EQ(cached.output, uncached.output);
  auto two = run_command(hg + " sample --checkpoint " + ckpt + " --prompt 'The ' --length 20 " +
                         "--num-samples 2 --ffn-widths 32");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("--- sample 2 of 2 ---\nThe "), std::string::npos) << two.output;

  auto info = run_command(hg + " info " + ckpt);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("step 30"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("stacks/1/blocks/0/attn/proj/weight"), std::string::npos);

  TempDir zero;
  auto init = run_command(train_command(kTiny + " --train.steps 0 --run.dir " + zero.path()));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  EXPECT_EQ(read_checkpoint(zero / "checkpoints/step-00000000.h5").step, 0);
  auto bad = run_command(hg + " eval --checkpoint " + (zero / "missing.h5") + " --data " + corpus_dir());
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

// MatFormer across heads (§9.6): a joint run over (F, 4 heads) and (F/2, 2 heads); evaluating
// the full checkpoint at a sub-model's widths equals evaluating the checkpoint `extract` writes
// for it (the printed JSON, 9 digits); the same for Mix'n'Match widths per block, for sampling,
// and for a run that starts from the extracted weights.
TEST(Cli, NestedHeadsEvalSampleExtract) {
  TempDir run;
  const std::string four_heads = testing::tiny_model_flags({{"model.heads", "4"}});
  const std::string nested = four_heads +
                             " --model.ffn_granularities 1,2"
                             " --model.head_granularities 1,2 --train.matformer joint";
  auto r = run_command(
      train_command(nested + " --data.dir " + corpus_dir() +
                    " --train.steps 12 --eval.every 12 --eval.windows 4 --run.dir " + run.path()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream metrics(run / "metrics.jsonl");
  std::string first_line, line, last_line;
  std::getline(metrics, first_line);
  while (std::getline(metrics, line)) last_line = line;
  EXPECT_NE(first_line.find("\"losses\": ["), std::string::npos) << first_line;
  EXPECT_NE(last_line.find("\"valid_losses\": ["), std::string::npos) << last_line;
  // sample mode draws one sub-model per step and logs both of its granularities.
  TempDir drawn;
  auto d = run_command(train_command(four_heads +
                                     " --model.head_granularities 1,2,4"
                                     " --train.matformer sample --data.dir " +
                                     corpus_dir() + " --train.steps 6 --run.dir " + drawn.path()));
  ASSERT_EQ(d.exit_code, 0) << d.output;
  std::ifstream drawn_metrics(drawn / "metrics.jsonl");
  std::set<std::string> heads_drawn;
  while (std::getline(drawn_metrics, line)) {
    const size_t at = line.find("\"head_granularity\": ");
    ASSERT_NE(at, std::string::npos) << line;
    heads_drawn.insert(line.substr(at + 20, 1));
  }
  EXPECT_GE(heads_drawn.size(), 2u) << "6 draws from 3 sub-models";
  const std::string ckpt = run / "checkpoints/step-00000012.h5";
  const std::string hg = testing::hourglass_binary();
  auto json = [](const testing::CommandResult& c) { return c.output.substr(c.output.rfind('{')); };
  auto eval = [&](const std::string& checkpoint, const std::string& flags) {
    auto e = run_command(hg + " eval --checkpoint " + checkpoint + " --data " + corpus_dir() +
                         " --max-windows 12 --json" + flags);
    EXPECT_EQ(e.exit_code, 0) << e.output;
    return e;
  };
  const auto full = eval(ckpt, "");
  struct Case {
    std::string flags, file;
    Shape wq;  // stacks/0/blocks/0/attn/wq after extraction
  };
  for (const Case& c : {Case{" --ffn-widths 32 --head-widths 2", "sub1.h5", {32, 16}},
                        Case{" --head-widths 1,4,3", "mixed.h5", {32, 8}},
                        Case{" --head-widths 3 --ffn-widths 64,32,17", "odd.h5", {32, 24}}}) {
    const auto at_widths = eval(ckpt, c.flags);
    EXPECT_NE(json(at_widths), json(full)) << c.flags;
    auto extract =
        run_command(hg + " extract --checkpoint " + ckpt + c.flags + " --output " + (run / c.file));
    ASSERT_EQ(extract.exit_code, 0) << extract.output;
    EXPECT_EQ(param(run / c.file, "stacks/0/blocks/0/attn/wq").shape(), c.wq) << c.flags;
    EXPECT_EQ(json(eval(run / c.file, "")), json(at_widths)) << c.flags;
  }
  EXPECT_EQ(param(run / "mixed.h5", "stacks/1/blocks/0/attn/wo").shape(), (Shape{32, 32}));
  EXPECT_EQ(param(run / "mixed.h5", "stacks/2/blocks/0/attn/proj/weight").shape(), (Shape{32, 3}));
  // Sampling at the sub-model's widths from the full checkpoint draws what the extracted
  // checkpoint draws, cached and uncached.
  const std::string sample = " --prompt 'The ' --length 40 --temperature 0";
  auto a = run_command(hg + " sample --checkpoint " + ckpt + sample +
                       " --ffn-widths 32 --head-widths 2");
  auto b = run_command(hg + " sample --checkpoint " + (run / "sub1.h5") + sample);
  auto c = run_command(hg + " sample --checkpoint " + (run / "sub1.h5") + sample + " --no-cache");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(a.output, c.output);
  // The extracted model trains on (matformer off) from its weights.
  TempDir further;
  auto f = run_command(train_command(four_heads + " --data.dir " + corpus_dir() +
                                     " --train.steps 2 --checkpoint.init_from " +
                                     (run / "mixed.h5") + " --run.dir " + further.path()));
  EXPECT_EQ(f.exit_code, 0) << f.output;
  // Widths outside the stored ones are refused with exit 2.
  auto wide = run_command(hg + " eval --checkpoint " + (run / "sub1.h5") + " --data " +
                          corpus_dir() + " --head-widths 3");
  EXPECT_EQ(wide.exit_code, 2) << wide.output;
  EXPECT_NE(wide.output.find("--head-widths: block 0 head count 3 is outside [1, 2]"),
            std::string::npos)
      << wide.output;
}

// Untrained (step 0) checkpoints of the tiny model, written once for every test of this file:
// the byte vocabulary (256) and a vocabulary of 100 ids, smaller than the bundled corpus's.
struct InitialCheckpoints {
  std::string bytes, vocab100;
};

const InitialCheckpoints& initial_checkpoints() {
  static TempDir dir;
  static InitialCheckpoints made = [] {
    InitialCheckpoints c;
    for (auto [vocab, path] : {std::pair{"256", &c.bytes}, std::pair{"100", &c.vocab100}}) {
      const std::string run = dir / (std::string("vocab") + vocab);
      auto r = run_command(train_command(testing::tiny_model_flags({{"model.vocab_size", vocab}}) +
                                         " --train.steps 0 --run.dir " + run));
      EXPECT_EQ(r.exit_code, 0) << r.output;
      *path = run + "/checkpoints/step-00000000.h5";
    }
    return c;
  }();
  return made;
}

// Runs `args` (a subcommand and its flags) and expects exit code 2 and `expect` in the message.
void expect_refused(const std::string& args, const std::string& expect) {
  auto r = run_command(testing::hourglass_binary() + " " + args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(expect), std::string::npos) << args << "\n" << r.output;
}

TEST(Cli, EvalAndSampleRefuseTokensOutsideTheCheckpointsVocabulary) {
  const std::string small = initial_checkpoints().vocab100;
  // The corpus is byte-level (256 ids); the model embeds 100: ids 100..255 have no row.
  expect_refused("eval --checkpoint " + small + " --data " + corpus_dir() + " --max-windows 2",
                 "has vocabulary 256 but model.vocab_size of checkpoint '" + small + "' is 100");
  // 'a' (97) fits; the first byte of UTF-8 'é' (0xc3 0xa9), at offset 1, does not, nor does 'h'.
  expect_refused("sample --checkpoint " + small + " --prompt 'a\xc3\xa9' --length 2",
                 "--prompt byte 195 at offset 1 is outside the vocabulary of checkpoint");
  expect_refused("sample --checkpoint " + small + " --prompt 'ah' --length 2",
                 "byte 104 at offset 1");
  auto fits = run_command(testing::hourglass_binary() + " sample --checkpoint " + small +
                          " --prompt 'ab' --length 2");
  EXPECT_EQ(fits.exit_code, 0) << fits.output;
}

TEST(Cli, EvalAndSampleRefuseOutOfRangeFlags) {
  const std::string ckpt = initial_checkpoints().bytes;
  const std::string eval = "eval --checkpoint " + ckpt + " --data " + corpus_dir();
  const std::string sample = "sample --checkpoint " + ckpt + " --prompt 'The '";
  expect_refused(eval + " --seq-len -32", "--seq-len -32 is out of range: give a window length");
  expect_refused(eval + " --max-windows -1", "--max-windows -1 is out of range");
  expect_refused(eval + " --batch 0", "--batch 0 is out of range");
  expect_refused(sample + " --length 0", "--length 0 is out of range");
  expect_refused(sample + " --length -5", "--length -5 is out of range");
  expect_refused(sample + " --length 2 --top-k -1", "--top-k -1 is out of range");
  expect_refused(sample + " --length 2 --temperature -0.5", "--temperature -0.5 is out of range");
  expect_refused(sample + " --length 2 --temperature nan", "--temperature nan is out of range");
  expect_refused(sample + " --num-samples 0", "--num-samples 0 is out of range");
  expect_refused(sample + " --num-samples two", "--num-samples");
  expect_refused(sample + " --no-cache yes", "usage: hourglass sample");
  // --device (§9.2): a name that is no device; a missing device, cached or not.
  expect_refused(eval + " --device tpu", "--device tpu: not a device; give cpu or cuda.");
  const std::string missing = unavailable_reason(Device::Cuda);  // no GPU, or no nvcc at build
  if (!missing.empty()) {
    expect_refused(eval + " --device cuda", "--device cuda: " + missing + "; use --device cpu");
    expect_refused(sample + " --device cuda", "--device cuda: " + missing);
    expect_refused(sample + " --device cuda --no-cache", "--device cuda: " + missing);
  }
  // The documented zeros keep their meaning: the checkpoint's seq_len, greedy, every token.
  const std::string hg = testing::hourglass_binary() + " ";
  auto zeros = run_command(hg + eval + " --seq-len 0 --max-windows 1");
  EXPECT_EQ(zeros.exit_code, 0) << zeros.output;
  auto on_cpu = run_command(hg + eval + " --seq-len 0 --max-windows 1 --device cpu");
  EXPECT_EQ(on_cpu.output, zeros.output);
  auto greedy = run_command(hg + sample + " --length 2 --temperature 0 --top-k 0");
  EXPECT_EQ(greedy.exit_code, 0) << greedy.output;
}

// With a device (a GPU, or the emulated one of HG_CUDA_EMULATION builds: docs/cuda.md), eval and
// sampling on it, cached and uncached, print what the CPU prints: the same loss to the digits
// shown, the same drawn text (the logits differ by rounding only, far from a draw's boundary
// here). Cached sampling runs past train.seq_len (32), where the window restarts with a prefill.
TEST(Cli, EvalAndSampleOnTheDevicePrintWhatTheCpuPrints) {
  if (!unavailable_reason(Device::Cuda).empty()) GTEST_SKIP() << unavailable_reason(Device::Cuda);
  const std::string ckpt = initial_checkpoints().bytes;
  const std::string hg = testing::hourglass_binary() + " ";
  const std::string eval = hg + "eval --checkpoint " + ckpt + " --data " + corpus_dir() +
                           " --max-windows 4 --device ";
  const std::string sample =
      hg + "sample --checkpoint " + ckpt + " --prompt 'The ' --length 8 --no-cache --device ";
  const std::string cached =
      hg + "sample --checkpoint " + ckpt + " --prompt 'The ' --length 40 --num-samples 2 --device ";
  for (const std::string& command : {eval, sample, cached}) {
    auto cpu = run_command(command + "cpu"), cuda = run_command(command + "cuda");
    EXPECT_EQ(cuda.exit_code, 0) << cuda.output;
    EXPECT_EQ(cuda.output, cpu.output) << command;
  }
  // On the device, cached decoding draws what re-running the window draws.
  auto uncached =
      run_command(hg + "sample --checkpoint " + ckpt +
                  " --prompt 'The ' --length 40 --num-samples 2 --no-cache --device cuda");
  EXPECT_EQ(run_command(cached + "cuda").output, uncached.output);
}

TEST(Cli, ExtractRefusesToReplaceTheCheckpointItReads) {
  TempDir dir;
  const std::string ckpt = dir / "model.h5";
  std::filesystem::copy_file(initial_checkpoints().bytes, ckpt);
  const auto before = std::filesystem::last_write_time(ckpt);
  std::filesystem::create_symlink(ckpt, dir / "link.h5");
  for (const std::string& output : {ckpt, dir / "./model.h5", dir / "link.h5"})
    expect_refused("extract --checkpoint " + ckpt + " --ffn-widths 32 --output " + output,
                   "is the same file as --checkpoint " + ckpt);
  expect_refused(
      "extract --checkpoint " + ckpt + " --ffn-widths 32 --output " + (dir / "no/such/dir/half.h5"),
      "directory " + (dir / "no/such/dir") + " does not exist");
  EXPECT_EQ(std::filesystem::last_write_time(ckpt), before);
  EXPECT_EQ(param(ckpt, "stacks/0/blocks/0/ffn/w1").shape(), (Shape{32, 64}));
}

// Deletes the datasets at `paths` from the checkpoint file `file` (HDF5 unlinks them).
void delete_datasets(const std::string& file, const std::vector<std::string>& paths) {
  const hid_t handle = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(handle, 0) << file;
  for (const std::string& path : paths)
    EXPECT_GE(H5Ldelete(handle, path.c_str(), H5P_DEFAULT), 0) << path;
  EXPECT_GE(H5Fclose(handle), 0);
}

TEST(Cli, EvalSampleExtractNameATensorTheCheckpointLacks) {
  TempDir dir;
  const std::string tensor = "stacks/0/blocks/0/attn/wq";
  const std::string expect = "has no tensor /params/" + tensor + " (shape [32, 32])";
  // Only the parameter gone (its moments stay), and the parameter with its moments gone.
  const std::string params_only = dir / "params-only.h5", all_three = dir / "all-three.h5";
  std::filesystem::copy_file(initial_checkpoints().bytes, params_only);
  std::filesystem::copy_file(initial_checkpoints().bytes, all_three);
  delete_datasets(params_only, {"/params/" + tensor});
  delete_datasets(all_three,
                  {"/params/" + tensor, "/optim/exp_avg/" + tensor, "/optim/exp_avg_sq/" + tensor});
  for (const std::string& ckpt : {params_only, all_three}) {
    expect_refused("eval --checkpoint " + ckpt + " --data " + corpus_dir() + " --max-windows 1",
                   "checkpoint '" + ckpt + "' " + expect);
    expect_refused("sample --checkpoint " + ckpt + " --length 1",
                   "checkpoint '" + ckpt + "' " + expect);
    expect_refused(
        "extract --checkpoint " + ckpt + " --ffn-widths 32 --output " + (dir / "half.h5"),
        "checkpoint '" + ckpt + "' " + expect);
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "half.h5"));
}

}  // namespace
}  // namespace hg

namespace hg {
namespace {

// `hourglass <command> --help` (and -h): usage and, for train and plan, every configuration key
// with its meaning, spellings and default, from the parser's own table; exit 0.
TEST(Cli, HelpListsEveryKeyWithItsDefaultAndExitsZero) {
  const std::string hg = testing::without_mpi_environment() + testing::hourglass_binary();
  for (const std::string command : {"train", "plan"}) {
    for (const std::string flag : {" --help", " -h"}) {
      const auto r = testing::run_command(hg + " " + command + flag);
      EXPECT_EQ(r.exit_code, 0) << command << flag << "\n" << r.output;
      EXPECT_NE(r.output.find("usage: hourglass " + command), std::string::npos) << r.output;
      for (const char* key : {"--model.d_model", "--train.precision", "--parallel.schedule",
                              "--checkpoint.resume", "--run.memory_limit_gb"})
        EXPECT_NE(r.output.find(key), std::string::npos) << command << ": " << key;
      EXPECT_NE(r.output.find("one of gpipe, 1f1b, interleaved, zbh1; default 1f1b"), std::string::npos)
          << r.output;
      EXPECT_NE(r.output.find("an integer; default 256"), std::string::npos) << r.output;
    }
  }
  const auto plan = testing::run_command(hg + " plan --help");
  for (const char* key : {"--cluster.device_flops", "--plan.schedules", "--plan.tp_sizes"})
    EXPECT_NE(plan.output.find(key), std::string::npos) << key << "\n" << plan.output;
  EXPECT_NE(plan.output.find("default gpipe,1f1b"), std::string::npos) << plan.output;
  for (const std::string command : {"eval", "sample", "extract", "info"}) {
    const auto r = testing::run_command(hg + " " + command + " --help");
    EXPECT_EQ(r.exit_code, 0) << command << "\n" << r.output;
    EXPECT_NE(r.output.find("usage: hourglass " + command), std::string::npos) << r.output;
  }
  const auto sample = testing::run_command(hg + " sample --help");
  for (const char* option : {"--num-samples arg (=1)", "--no-cache", "--length arg (=200)"})
    EXPECT_NE(sample.output.find(option), std::string::npos) << option << "\n" << sample.output;
  EXPECT_EQ(testing::run_command(hg + " bogus --help").exit_code, 2);
}

}  // namespace
}  // namespace hg
