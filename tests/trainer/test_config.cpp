// Configuration (ARCHITECTURE.md §8): flags, INI files, validation messages, to_ini round trips.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/enum_names.h"
#include "core/error.h"
#include "trainer/config.h"

namespace hg {
namespace {

std::string joined(const std::vector<std::string>& args) {
  std::string text;
  for (const auto& a : args) text += a + " ";
  return text;
}

// The message parse_config throws for `args`, or "" when it accepts them.
std::string rejection(const std::vector<std::string>& args) {
  try {
    parse_config(args);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

void expect_rejected(const std::vector<std::string>& args, const std::vector<std::string>& parts) {
  const std::string message = rejection(args);
  ASSERT_FALSE(message.empty()) << "accepted: " << joined(args);
  for (const auto& part : parts)
    EXPECT_NE(message.find(part), std::string::npos)
        << "args: " << joined(args) << "\nmessage: " << message << "\nmissing: " << part;
}

void expect_accepted(const std::vector<std::string>& args) {
  EXPECT_EQ(rejection(args), "") << "args: " << joined(args);
}

struct Case {
  std::vector<std::string> args;
  std::vector<std::string> message_parts;
};

void expect_all_rejected(const std::vector<Case>& cases) {
  for (const Case& c : cases) expect_rejected(c.args, c.message_parts);
}

// A scratch directory per test, removed afterwards.
class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hg-test-config-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  std::filesystem::path dir_;
};

// The reference fixture's config attribute (tests/data/reference-base/init.h5).
const char* kFixtureModel =
    "[model]\nvocab_size = 256\nd_model = 32\nheads = 2\nffn = 64\nhierarchy = 1@1 1@2 1@1\n"
    "attention = long_short\nwindow = 8\nchunk = 4\nrank = 2\npositions = rope\n"
    "downsample = linear\nupsample = linear\nresampling = plain\nactivation = relu2\n"
    "dconv = true\nffn_granularities = 1\ndropout = 0\n";

TEST(Config, DefaultsAreValidAndParsed) {
  const Config config = parse_config({});
  EXPECT_EQ(config.to_ini(), Config{}.to_ini());
  ASSERT_EQ(config.model.stacks.size(), 3u);
  EXPECT_EQ(config.model.stacks[1].blocks, 4);
  EXPECT_EQ(config.model.stacks[1].shortening, 3);
  EXPECT_EQ(config.model.total_stack_blocks(), 8);
  EXPECT_EQ(config.model.middle(), 1);
}

TEST(Config, FlagsSetEveryKind) {
  const Config c =
      parse_config({"--model.d_model", "128", "--model.heads=8", "--model.dconv", "false",
                    "--model.ffn_granularities", "1,2,4", "--train.lr", "1e-3", "--train.seed",
                    "18446744073709551615", "--run.dir", "runs/x", "--model.hierarchy",
                    "1@1 2@2 4@8 2@2 1@1", "--train.seq_len", "256", "--model.dropout", "0.1"});
  EXPECT_EQ(c.model.d_model, 128);
  EXPECT_EQ(c.model.heads, 8);
  EXPECT_FALSE(c.model.dconv);
  EXPECT_EQ(c.model.ffn_granularities, (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.seed, 18446744073709551615ull);
  EXPECT_EQ(c.run.dir, "runs/x");
  EXPECT_EQ(c.model.dropout, 0.1f);
  ASSERT_EQ(c.model.stacks.size(), 5u);
  EXPECT_EQ(c.model.stacks[2].shortening, 8);
  EXPECT_EQ(c.model.total_stack_blocks(), 10);
}

TEST_F(ConfigFiles, FlagsOverrideTheFileWhereverTheyStand) {
  const std::string file =
      write("run.ini", "[model]\nd_model = 128\nheads = 2\n\n[train]\nlr = 0.001\n");
  for (const auto& args : {std::vector<std::string>{"--config", file, "--model.d_model", "64"},
                           std::vector<std::string>{"--model.d_model", "64", "--config", file}}) {
    const Config c = parse_config(args);
    EXPECT_EQ(c.model.d_model, 64);
    EXPECT_EQ(c.model.heads, 2);
    EXPECT_EQ(c.train.lr, 0.001);
    EXPECT_EQ(c.model.ffn, 1024);  // default
  }
}

TEST_F(ConfigFiles, UnknownKeysInTheFileAreErrors) {
  const std::string typo = write("typo.ini", "[model]\nd_modle = 128\n");
  expect_rejected({"--config", typo}, {"model.d_modle", typo, "valid keys of [model]", "d_model"});
  const std::string section = write("section.ini", "[modle]\nd_model = 128\n");
  expect_rejected({"--config", section}, {"modle.d_model", "[model]", "[train]"});
  const std::string loose = write("loose.ini", "d_model = 128\n");
  expect_rejected({"--config", loose}, {"'d_model'", "section"});
  const std::string nested = write("nested.ini", "[train]\nconfig = other.ini\n");
  expect_rejected({"--config", nested}, {"train.config", "valid keys of [train]"});
}

TEST_F(ConfigFiles, FileErrorsNameTheFile) {
  expect_rejected({"--config", (dir_ / "missing.ini").string()}, {"missing.ini", "--config"});
  const std::string twice = write("twice.ini", "[model]\nheads = 2\nheads = 4\n");
  expect_rejected({"--config", twice}, {twice, "model.heads"});
  const std::string syntax = write("syntax.ini", "[model]\nheads 2\n");
  expect_rejected({"--config", syntax}, {syntax});
}

TEST(Config, UnknownFlagsAreErrors) {
  expect_all_rejected({
      {{"--model.widht", "8"}, {"model.widht", "on the command line", "window", "chunk"}},
      {{"--model.d_mod", "8"}, {"model.d_mod", "d_model"}},  // no abbreviations
      {{"--modle.d_model", "8"}, {"modle.d_model", "[model]"}},
      {{"--d_model", "8"}, {"'d_model'"}},
      {{"-x"}, {"'x'"}},
      {{"stray"}, {"stray", "--section.key"}},
      {{"--model.heads", "2", "--model.heads", "4"}, {"model.heads", "more than once"}},
      {{"--model.heads"}, {"model.heads"}},
  });
}

TEST(Config, ValuesMustBeSpelledExactly) {
  expect_all_rejected({
      {{"--model.dconv", "yes"}, {"model.dconv", "'yes'", "true or false"}},
      {{"--model.dconv", "True"}, {"model.dconv", "true or false"}},
      {{"--model.dconv", "1"}, {"model.dconv", "true or false"}},
      {{"--model.d_model", "12x"}, {"model.d_model", "'12x'", "integer"}},
      {{"--model.d_model", "1.5"}, {"model.d_model", "integer"}},
      {{"--model.d_model", ""}, {"model.d_model", "integer"}},
      {{"--model.d_model", "99999999999"}, {"model.d_model", "integer"}},
      {{"--train.seed", "-1"}, {"train.seed", "non-negative integer"}},
      {{"--train.lr", "abc"}, {"train.lr", "number"}},
      {{"--train.lr", "nan"}, {"train.lr", "number"}},
      {{"--train.lr", "inf"}, {"train.lr", "number"}},
      {{"--model.dropout", "1e60"}, {"model.dropout", "number"}},
      {{"--model.ffn_granularities", "1, 2"}, {"model.ffn_granularities", "without spaces"}},
      {{"--model.ffn_granularities", "1,,2"}, {"model.ffn_granularities", "commas"}},
      {{"--model.ffn_granularities", "1,2,"}, {"model.ffn_granularities", "commas"}},
      {{"--run.dir", "a#b"}, {"run.dir", "'#'"}},
  });
}

TEST(Config, EnumerationsAcceptOnlyTheirValues) {
  const std::vector<std::pair<std::string, std::string>> keys = {
      {"model.attention", "long_short, full"},      {"model.positions", "rope, none"},
      {"model.downsample", "linear, avg"},          {"model.upsample", "linear, repeat"},
      {"model.resampling", "plain, attention"},     {"model.activation", "relu2, gelu"},
      {"train.matformer", "off, joint, sample"},    {"parallel.schedule", "gpipe, 1f1b"},
      {"parallel.communicator", "auto, mpi, nccl"}, {"run.device", "cpu, cuda"},
      {"run.attention_backend", "native, cudnn, split"}};
  for (const auto& [key, choices] : keys)
    expect_rejected({"--" + key, "bogus"}, {key, "'bogus'", choices});
  expect_accepted({"--model.attention", "full", "--model.positions", "none", "--model.downsample",
                   "avg", "--model.upsample", "repeat", "--model.resampling", "attention",
                   "--model.activation", "gelu", "--train.matformer", "joint",
                   "--parallel.schedule", "gpipe", "--run.device", "cuda"});
  expect_accepted({"--train.matformer", "sample"});
}

// Each choice key is parsed once into its enum: every spelling reads back as its own enumerator
// and is written back the same way by to_ini (the checkpoint's config text).
template <class E, class Get>
void expect_choice_round_trip(const std::string& key, Get get) {
  for (size_t i = 0; i < enum_names(E{}).size(); ++i) {
    const E value = static_cast<E>(i);
    const std::string name = enum_name(value);
    const Config config = parse_config({"--" + key, name});
    EXPECT_EQ(get(config), value) << key << " " << name;
    EXPECT_NE(config.to_ini().find(key.substr(key.find('.') + 1) + " = " + name + "\n"),
              std::string::npos)
        << key << " " << name;
  }
}

TEST(Config, ChoiceKeysParseOnceIntoEnums) {
  expect_choice_round_trip<AttentionKind>("model.attention",
                                          [](const Config& c) { return c.model.attention; });
  expect_choice_round_trip<Positions>("model.positions",
                                      [](const Config& c) { return c.model.positions; });
  expect_choice_round_trip<Downsample>("model.downsample",
                                       [](const Config& c) { return c.model.downsample; });
  expect_choice_round_trip<Upsample>("model.upsample",
                                     [](const Config& c) { return c.model.upsample; });
  expect_choice_round_trip<Resampling>("model.resampling",
                                       [](const Config& c) { return c.model.resampling; });
  expect_choice_round_trip<Activation>("model.activation",
                                       [](const Config& c) { return c.model.activation; });
  expect_choice_round_trip<Matformer>("train.matformer",
                                      [](const Config& c) { return c.train.matformer; });
  expect_choice_round_trip<MatmulPrecision>("train.precision",
                                            [](const Config& c) { return c.train.precision; });
  expect_choice_round_trip<Recompute>("train.recompute",
                                      [](const Config& c) { return c.train.recompute; });
  expect_choice_round_trip<Device>("run.device", [](const Config& c) { return c.run.device; });
  expect_choice_round_trip<ScheduleKind>("parallel.schedule",
                                         [](const Config& c) { return c.parallel.schedule; });
}

TEST(Config, HierarchyRules) {
  for (const char* good :
       {"12@1", "2@1 8@3 2@1", "5@1 24@3 5@1", "1@1 2@2 4@8 2@2 1@1", "1@1 0@2 3@1", "0@1 0@2 0@1"})
    EXPECT_NO_THROW(parse_hierarchy(good)) << good;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "odd number"},
      {"2@1 4@3", "odd number"},
      {"2@2 4@4 2@2", "shortening 1"},
      {"2@1 4@3 2@2", "palindrome"},
      {"2@1 4@3 4@3 4@3 2@1", "strictly increase"},
      {"2@1 4@2 4@3 4@2 2@1", "integer multiple"},
      {"2@1 4@3 8@1 4@3 2@1", "strictly increase"},
      {"-1@1", "negative"},
      {"2@1 4@0 2@1", "below 1"},
      {"2@1 4x3 2@1", "'4x3' is not n@K"},
      {"2@1 4@ 2@1", "not n@K"},
      {"2@1,4@3,2@1", "not n@K"},
  };
  for (const auto& [text, rule] : bad) {
    expect_rejected({"--model.hierarchy", text}, {"model.hierarchy", "'" + text + "'", rule});
    EXPECT_THROW(parse_hierarchy(text), UsageError) << text;
  }
}

TEST(Config, SequenceLengthFitsTheHierarchyAndChunks) {
  // Default hierarchy 2@1 4@3 2@1, chunk 16.
  expect_rejected({"--train.seq_len", "100"}, {"train.seq_len", "100", "shortening 3"});
  expect_rejected({"--train.seq_len", "72"},
                  {"train.seq_len", "72", "stack 0", "model.chunk = 16", "multiple of 16"});
  expect_accepted({"--train.seq_len", "72", "--model.attention", "full"});
  expect_accepted({"--train.seq_len", "96"});
  // Only stacks with blocks run long-short attention: L = 24, chunk 12, L/3 = 8.
  const std::vector<std::string> base = {"--train.seq_len", "24", "--model.chunk", "12"};
  std::vector<std::string> empty_middle = base, full_middle = base;
  empty_middle.insert(empty_middle.end(), {"--model.hierarchy", "2@1 0@3 2@1"});
  full_middle.insert(full_middle.end(), {"--model.hierarchy", "2@1 1@3 2@1"});
  expect_accepted(empty_middle);
  expect_rejected(full_middle, {"train.seq_len", "stack 1", "model.chunk = 12"});
}

TEST(Config, ModelShapeRules) {
  expect_all_rejected({
      {{"--model.window", "8"}, {"model.window", "8", "model.chunk = 16"}},
      {{"--model.heads", "3"}, {"model.heads", "3", "model.d_model = 256"}},
      {{"--model.heads", "0"}, {"model.heads", "0"}},
      {{"--model.d_model", "12", "--model.heads", "4"}, {"model.heads", "even", "positions"}},
      {{"--model.ffn_granularities", "1,3"},
       {"model.ffn_granularities", "1,3", "model.ffn = 1024"}},
      {{"--model.ffn_granularities", "0"}, {"model.ffn_granularities", "entry 0"}},
      {{"--model.ffn_granularities", "1,2,2"}, {"model.ffn_granularities", "distinct"}},
      {{"--model.ffn_granularities", ""}, {"model.ffn_granularities", "at least one"}},
      {{"--model.ffn_widths", "512"}, {"model.ffn_widths", "512", "8 blocks"}},
      {{"--model.ffn_widths", "1,2,3,4,5,6,7,2000"}, {"model.ffn_widths", "2000", "[1, model.ffn"}},
      {{"--model.ffn_widths", "0,2,3,4,5,6,7,8"}, {"model.ffn_widths", "entry 0"}},
      {{"--model.dropout", "1"}, {"model.dropout", "[0, 1)"}},
      {{"--model.dropout", "-0.1"}, {"model.dropout", "-0.1"}},
      {{"--model.vocab_size", "1"}, {"model.vocab_size", "[2, 65536]"}},
      {{"--model.vocab_size", "65537"}, {"model.vocab_size", "65537"}},
      {{"--model.d_model", "0"}, {"model.d_model"}},
      {{"--model.ffn", "0"}, {"model.ffn"}},
      {{"--model.chunk", "0"}, {"model.chunk"}},
      {{"--model.window", "0"}, {"model.window"}},
      {{"--model.rank", "0"}, {"model.rank"}},
  });
  expect_accepted({"--model.window", "8", "--model.attention", "full"});
  expect_accepted({"--model.d_model", "12", "--model.heads", "4", "--model.positions", "none"});
  expect_accepted({"--model.ffn_widths", "1,2,3,4,5,6,7,1024"});
  expect_accepted({"--model.vocab_size", "2"});
  expect_accepted({"--model.vocab_size", "65536"});
  expect_accepted({"--model.dropout", "0.5"});
  // Nested heads paired with nested FFNs, and a one-entry list applying to every sub-model.
  expect_accepted({"--model.head_granularities", "1,2", "--model.ffn_granularities", "1,2"});
  expect_accepted({"--model.head_granularities", "1,2,4", "--train.matformer", "joint"});
}

TEST(Config, TrainingAndRunRules) {
  expect_all_rejected({
      {{"--train.batch", "7"}, {"train.batch", "7", "parallel.dp x train.micro_batch = 2"}},
      {{"--parallel.dp", "2", "--train.batch", "6"}, {"train.batch", "= 4"}},
      {{"--train.batch", "0"}, {"train.batch"}},
      {{"--train.micro_batch", "0"}, {"train.micro_batch"}},
      {{"--train.seq_len", "0"}, {"train.seq_len"}},
      {{"--train.steps", "-1"}, {"train.steps", "-1"}},
      {{"--train.lr", "0"}, {"train.lr", "positive"}},
      {{"--train.lr", "-1e-3"}, {"train.lr"}},
      {{"--train.warmup", "-1"}, {"train.warmup"}},
      {{"--train.min_lr_ratio", "1.5"}, {"train.min_lr_ratio"}},
      {{"--train.weight_decay", "-0.1"}, {"train.weight_decay"}},
      {{"--train.beta1", "1"}, {"train.beta1"}},
      {{"--train.beta2", "-0.5"}, {"train.beta2"}},
      {{"--train.eps", "0"}, {"train.eps"}},
      {{"--train.grad_clip", "-1"}, {"train.grad_clip"}},
      {{"--train.matformer", "joint", "--model.ffn_widths", "1,2,3,4,5,6,7,8"},
       {"train.matformer", "model.ffn_widths"}},
      // Nested heads (§9.6): divisors of H, distinct, paired with the FFN list; extracted counts.
      {{"--model.head_granularities", "1,3"}, {"model.head_granularities", "3", "model.heads = 4"}},
      {{"--model.head_granularities", "2,2"}, {"model.head_granularities", "distinct"}},
      {{"--model.head_granularities", "1,2,4", "--model.ffn_granularities", "1,2"},
       {"model.head_granularities", "same length", "model.ffn_granularities = 1,2"}},
      {{"--model.head_widths", "1,2"}, {"model.head_widths", "one head count per stack block"}},
      {{"--model.head_widths", "1,2,3,4,5,6,7,8"},
       {"model.head_widths", "entry 5", "[1, model.heads = 4]"}},
      {{"--train.matformer", "sample", "--model.head_widths", "1,2,3,4,4,4,4,4"},
       {"train.matformer", "model.head_widths"}},
      {{"--parallel.dp", "0"}, {"parallel.dp"}},
      {{"--parallel.pp", "0"}, {"parallel.pp"}},
      {{"--parallel.tp", "0"}, {"parallel.tp"}},
      {{"--parallel.tp", "3"}, {"parallel.tp", "model.heads = 4"}},
      {{"--parallel.timeout", "0"}, {"parallel.timeout"}},
      {{"--parallel.zero", "2"}, {"parallel.zero", "2", "ZeRO-1"}},
      {{"--parallel.communicator", "nccl"}, {"parallel.communicator = nccl", "run.device = cuda"}},
      {{"--run.attention_backend", "cudnn"},
       {"run.attention_backend = cudnn", "run.device = cuda"}},
      {{"--run.attention_backend", "cudnn", "--run.device", "cuda"},
       {"run.attention_backend = cudnn", "train.precision = bf16"}},
      {{"--parallel.pp", "2", "--parallel.stages", "3"}, {"parallel.stages", "parallel.pp = 2"}},
      {{"--parallel.pp", "2", "--parallel.stages", "3,0"}, {"parallel.stages", "at least 1"}},
      {{"--parallel.pp", "2", "--parallel.stages", "3;4"}, {"parallel.stages", "commas"}},
      {{"--parallel.pp", "2", "--parallel.schedule", "interleaved", "--parallel.virtual_stages",
        "2", "--parallel.stages", "3,4"},
       {"parallel.stages", "parallel.virtual_stages = 2: 4 virtual stages"}},
      {{"--parallel.pp", "2", "--parallel.virtual_stages", "2"},
       {"parallel.virtual_stages", "parallel.schedule = interleaved"}},
      {{"--parallel.schedule", "interleaved", "--parallel.virtual_stages", "2"},
       {"parallel.virtual_stages", "parallel.pp >= 2"}},
      {{"--parallel.pp", "2", "--parallel.schedule", "interleaved", "--parallel.virtual_stages",
        "9"},
       {"parallel.virtual_stages", "[1, 8]"}},
      {{"--parallel.pp", "3", "--parallel.schedule", "interleaved", "--parallel.virtual_stages",
        "2", "--train.batch", "8", "--train.micro_batch", "2"},
       {"train.batch", "4 micro-batches per replica", "multiple of parallel.pp = 3"}},
      {{"--checkpoint.every", "-1"}, {"checkpoint.every"}},
      {{"--checkpoint.keep", "-1"}, {"checkpoint.keep"}},
      {{"--checkpoint.resume", "no-such.h5"}, {"checkpoint.resume", "no-such.h5", "auto"}},
      {{"--checkpoint.resume", ""}, {"checkpoint.resume"}},
      {{"--checkpoint.init_from", "no-such.h5"}, {"checkpoint.init_from", "no-such.h5"}},
      {{"--log.every", "0"}, {"log.every"}},
      {{"--run.threads", "-1"}, {"run.threads"}},
      {{"--run.time_limit", "-1"}, {"run.time_limit"}},
  });
  expect_accepted({"--parallel.dp", "2", "--train.batch", "8", "--train.micro_batch", "4"});
  expect_accepted({"--parallel.tp", "2", "--parallel.pp", "3", "--parallel.stages", "3,4,5"});
  expect_accepted({"--parallel.pp", "2", "--parallel.schedule", "interleaved",
                   "--parallel.virtual_stages", "2", "--parallel.stages", "3,4,4,4",
                   "--train.batch", "8", "--train.micro_batch", "2"});
  expect_accepted({"--train.steps", "0", "--checkpoint.resume", "auto", "--train.warmup", "10"});
}

TEST(Config, TensorParallelSplitsEveryMatformerBand) {
  // Widths 96 and 3 (granularities 1, 32): bands 93 and 3 do not split over tp = 2.
  const std::vector<std::string> base = {"--model.ffn",   "96", "--model.ffn_granularities", "1,32",
                                         "--parallel.tp", "2"};
  std::vector<std::string> joint = base;
  joint.insert(joint.end(), {"--train.matformer", "joint"});
  expect_rejected(joint, {"parallel.tp", "band", "model.ffn_granularities"});
  expect_accepted(base);  // matformer off trains the full width only
  expect_accepted(
      {"--model.ffn_granularities", "1,2,4", "--parallel.tp", "4", "--train.matformer", "sample"});
}

TEST_F(ConfigFiles, ResumeAndInitFromNeedExistingFiles) {
  const std::string checkpoint = write("step-00000001.h5", "x");
  expect_accepted({"--checkpoint.resume", checkpoint});
  expect_accepted({"--checkpoint.init_from", checkpoint, "--checkpoint.resume", "auto"});
  expect_rejected({"--checkpoint.init_from", checkpoint, "--checkpoint.resume", checkpoint},
                  {"checkpoint.init_from", "checkpoint.resume"});
}

// A config with every section away from its defaults, including doubles that need digits.
std::vector<std::string> unusual_args() {
  return {"--model.vocab_size",
          "300",
          "--model.d_model",
          "96",
          "--model.heads",
          "6",
          "--model.ffn",
          "384",
          "--model.ffn_widths",
          "384,96,192,3",
          "--model.hierarchy",
          "1@1 2@4 1@1",
          "--model.attention",
          "full",
          "--model.window",
          "33",
          "--model.chunk",
          "8",
          "--model.rank",
          "3",
          "--model.positions",
          "none",
          "--model.downsample",
          "avg",
          "--model.upsample",
          "repeat",
          "--model.resampling",
          "attention",
          "--model.activation",
          "gelu",
          "--model.dconv",
          "false",
          "--model.ffn_granularities",
          "1,2,4,8",
          "--model.dropout",
          "0.3",
          "--train.seq_len",
          "64",
          "--train.batch",
          "12",
          "--train.micro_batch",
          "3",
          "--train.steps",
          "123456789012",
          "--train.lr",
          "0.3333333333333333",
          "--train.warmup",
          "7",
          "--train.min_lr_ratio",
          "0.05",
          "--train.weight_decay",
          "0.01",
          "--train.beta1",
          "0.8",
          "--train.beta2",
          "0.999",
          "--train.eps",
          "1e-12",
          "--train.grad_clip",
          "0.5",
          "--train.seed",
          "99",
          "--data.dir",
          "/data/enwik8",
          "--parallel.dp",
          "2",
          "--parallel.pp",
          "3",
          "--parallel.tp",
          "3",
          "--parallel.schedule",
          "gpipe",
          "--parallel.stages",
          "2,3,4",
          "--parallel.timeout",
          "1.5",
          "--checkpoint.dir",
          "ck",
          "--checkpoint.every",
          "50",
          "--checkpoint.keep",
          "0",
          "--checkpoint.resume",
          "auto",
          "--log.every",
          "5",
          "--log.metrics",
          "m.jsonl",
          "--log.trace",
          "t.json",
          "--run.dir",
          "runs/y",
          "--run.threads",
          "4",
          "--run.device",
          "cuda",
          "--run.time_limit",
          "3600.25"};
}

TEST(Config, ToIniRoundTripsExactly) {
  for (const Config& original : {Config{}, parse_config({}), parse_config(unusual_args())}) {
    const std::string text = original.to_ini();
    const Config back = config_from_ini(text);
    EXPECT_EQ(back.to_ini(), text);
    EXPECT_EQ(back.train.lr, original.train.lr);
    EXPECT_EQ(back.train.eps, original.train.eps);
    EXPECT_EQ(back.model.dropout, original.model.dropout);
    EXPECT_EQ(back.model.ffn_widths, original.model.ffn_widths);
    EXPECT_EQ(back.model.stacks.size(), parse_hierarchy(original.model.hierarchy).size());
  }
}

TEST(Config, ToIniListsEveryKeyInFixedOrderWithReadableNumbers) {
  const std::string text = Config{}.to_ini();
  size_t last = 0;
  for (const char* section :
       {"[model]", "[train]", "[data]", "[parallel]", "[checkpoint]", "[log]", "[run]", "[eval]"}) {
    const size_t at = text.find(section);
    ASSERT_NE(at, std::string::npos) << section;
    EXPECT_GE(at, last) << section;
    last = at;
  }
  for (const char* line :
       {"\nlr = 0.0003\n", "\neps = 1e-08\n", "\ntimeout = 600\n", "\nbeta2 = 0.95\n",
        "\ndropout = 0\n", "\nseed = 1\n", "\nhierarchy = 2@1 4@3 2@1\n", "\ndconv = true\n",
        "\ndir =\n", "\nresume = none\n", "\nstages =\n", "\nffn_granularities = 1\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line;
  // An unset ffn_widths is absent (as in the reference fixtures); a set one is listed.
  EXPECT_EQ(text.find("ffn_widths"), std::string::npos);
  EXPECT_NE(parse_config(unusual_args()).to_ini().find("\nffn_widths = 384,96,192,3\n"),
            std::string::npos);
  EXPECT_NE(parse_config({"--train.eps", "0.1"}).to_ini().find("\neps = 0.1\n"), std::string::npos);
}

TEST_F(ConfigFiles, ResolvedIniReadsBackAsAConfigFile) {
  const Config original = parse_config(unusual_args());
  const std::string file = write("resolved.ini", original.to_ini());
  EXPECT_EQ(parse_config({"--config", file}).to_ini(), original.to_ini());
}

TEST(Config, FromIniReadsTheFixtureModel) {
  const Config c = config_from_ini(kFixtureModel);
  EXPECT_EQ(c.model.vocab_size, 256);
  EXPECT_EQ(c.model.d_model, 32);
  EXPECT_EQ(c.model.heads, 2);
  EXPECT_EQ(c.model.ffn, 64);
  EXPECT_EQ(c.model.hierarchy, "1@1 1@2 1@1");
  EXPECT_EQ(c.model.window, 8);
  EXPECT_EQ(c.model.chunk, 4);
  EXPECT_EQ(c.model.rank, 2);
  EXPECT_TRUE(c.model.ffn_widths.empty());
  ASSERT_EQ(c.model.stacks.size(), 3u);
  EXPECT_EQ(c.model.stacks[1].shortening, 2);
  EXPECT_EQ(c.model.total_stack_blocks(), 3);
  EXPECT_EQ(c.train.seq_len, TrainConfig{}.seq_len);
  // Our resolved text writes the model section exactly as the reference does.
  EXPECT_EQ(c.to_ini().substr(0, std::string(kFixtureModel).size()), kFixtureModel);
}

std::string ini_rejection(const std::string& text) {
  try {
    config_from_ini(text);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, FromIniRejectsUnknownKeysAndInvalidModels) {
  EXPECT_NE(ini_rejection("[model]\nwidth = 3\n").find("model.width"), std::string::npos);
  EXPECT_NE(ini_rejection("[model]\nheads = 3\n").find("model.heads"), std::string::npos);
  EXPECT_NE(ini_rejection("[model]\nattention = flash\n").find("model.attention"),
            std::string::npos);
  EXPECT_NE(ini_rejection("[model]\nffn_widths = 1,2\n").find("model.ffn_widths"),
            std::string::npos);
  // Sequence-length rules apply only when the text gives train.seq_len.
  EXPECT_EQ(ini_rejection("[model]\nhierarchy = 1@1 1@5 1@1\n"), "");
  EXPECT_NE(ini_rejection("[model]\nhierarchy = 1@1 1@5 1@1\n[train]\nseq_len = 768\n")
                .find("train.seq_len"),
            std::string::npos);
  EXPECT_EQ(ini_rejection(""), "");
}

}  // namespace
}  // namespace hg
