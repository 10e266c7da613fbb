#include "trainer/inference.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_io.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/eval_windows.h"
#include "data/info.h"
#include "layers/backend.h"
#include "model/tensor_parallel.h"
#include "trainer/sampling.h"
#include "trainer/train_step.h"
#include "trainer/user_paths.h"

namespace po = boost::program_options;

namespace hg {
namespace {

// Parses a subcommand's flags; UsageError naming the problem and the usage line.
po::variables_map parse_flags(const std::vector<std::string>& args,
                              const po::options_description& options, const std::string& usage) {
  po::variables_map vm;
  try {
    // No positional arguments: a stray word ("--no-cache yes") is an error, not ignored.
    po::store(po::command_line_parser(args)
                  .options(options)
                  .positional(po::positional_options_description())
                  .run(),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::ostringstream help;
    help << options;
    throw UsageError(std::string(e.what()) + "\nusage: " + usage + "\n" + help.str());
  }
  return vm;
}

// The value of flag --`name`, which must be at least `minimum`; `allowed` says in words what the
// flag takes. Called before the checkpoint is read, so a bad flag costs nothing.
template <typename T>
T flag_at_least(const po::variables_map& vm, const std::string& name, T minimum,
                const std::string& allowed) {
  const T value = vm[name].as<T>();
  if (!(value >= minimum)) {  // written so that a NaN --temperature is refused too
    std::ostringstream text;
    text << "--" << name << " " << value << " is out of range: give " << allowed << ".";
    throw UsageError(text.str());
  }
  return value;
}

// Whether `a` and `b` name one file: the same inode when both exist (hard links, symbolic links,
// "./x" against "x"), else the same normalised absolute path.
bool same_file(const std::string& a, const std::string& b) {
  std::error_code error_a, error_b;
  if (std::filesystem::exists(a, error_a) && std::filesystem::exists(b, error_b))
    return std::filesystem::equivalent(a, b, error_a);
  const auto path_a = std::filesystem::weakly_canonical(a, error_a);
  const auto path_b = std::filesystem::weakly_canonical(b, error_b);
  return !error_a && !error_b && path_a == path_b;
}

// The canonical name and shape of every parameter in `store`.
ShapeMap param_shapes(const ParamStore& store) {
  ShapeMap shapes;
  for (const auto& [name, p] : store.all()) shapes[name] = p.canonical_shape;
  return shapes;
}

// UsageError unless `data` holds exactly the tensors of `expected` (what the checkpoint's own
// configuration builds), each in its shape; the moments too when they were read. A checkpoint
// that disagrees with the configuration stored in it is incomplete or damaged, so the message
// names the tensors and says that, rather than "use another configuration" (import_params).
void require_stored_tensors(const std::string& checkpoint, const ShapeMap& expected,
                            const CheckpointData& data) {
  const std::pair<std::string, const TensorMap*> groups[3] = {
      {"/params/", &data.params},
      {"/optim/exp_avg/", &data.exp_avg},
      {"/optim/exp_avg_sq/", &data.exp_avg_sq}};
  std::vector<std::string> problems;
  for (const auto& [group, stored] : groups) {
    if (stored != &data.params && stored->empty()) continue;  // moments not read or not stored
    for (const auto& [name, shape] : expected) {
      auto it = stored->find(name);
      const std::string path = group + name;
      if (it == stored->end())
        problems.push_back("has no tensor " + path + " (shape " + shape_string(shape) + ")");
      else if (it->second.shape() != shape)
        problems.push_back("holds " + path + " of shape " + shape_string(it->second.shape()) +
                           " where its configuration needs " + shape_string(shape));
    }
    for (const auto& [name, tensor] : *stored)
      if (!expected.count(name))
        problems.push_back("holds " + group + name + " " + shape_string(tensor.shape()) +
                           ", which its configuration does not have");
  }
  if (problems.empty()) return;
  const size_t shown = std::min<size_t>(problems.size(), 5);
  std::string text = "checkpoint '" + checkpoint + "' " + problems[0];
  for (size_t i = 1; i < shown; ++i) text += "; " + problems[i];
  if (shown < problems.size()) text += "; ... (" + std::to_string(problems.size()) + " in all)";
  throw UsageError(text + ". The file is incomplete or damaged (its tensors do not match the " +
                   "configuration stored in it): use another checkpoint of the run; `hourglass " +
                   "info " + checkpoint + "` lists what it holds.");
}

// The prompt's bytes as token ids. A byte outside the vocabulary has no embedding row: refused,
// naming it, rather than silently wrapped into another token.
std::vector<int32_t> prompt_tokens(const std::string& prompt, int vocab,
                                   const std::string& checkpoint) {
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < prompt.size(); ++i) {
    const int byte = static_cast<unsigned char>(prompt[i]);
    require(byte < vocab,
            "--prompt byte " + std::to_string(byte) + " at offset " + std::to_string(i) +
                " is outside the vocabulary of checkpoint '" + checkpoint + "' (model.vocab_size " +
                std::to_string(vocab) + ": token ids 0.." + std::to_string(vocab - 1) +
                "). Give a prompt whose bytes are all below " + std::to_string(vocab) +
                " (UTF-8 characters beyond ASCII are bytes >= 128), or a checkpoint with a "
                "larger vocabulary.");
    tokens.push_back(byte);
  }
  // An empty prompt starts from a newline (wrapped into vocabularies of 10 or fewer ids).
  if (tokens.empty()) tokens.push_back('\n' % vocab);
  return tokens;
}

}  // namespace

std::unique_ptr<StageModel> load_model(const std::string& checkpoint, int seq_len, Config& config,
                                       Device device) {
  require(user_path_exists(checkpoint), "--checkpoint " + checkpoint +
                                            ": no such file. Give a step-*.h5 file written by "
                                            "`hourglass train`.");
  // Before the file is read: a missing device costs nothing (§9.2: exit 2 naming it).
  const std::string missing = unavailable_reason(device);
  require(missing.empty(),
          "--device " + std::string(device_name(device)) + ": " + missing + "; use --device cpu");
  Backend& backend = backend_for(device);
  CheckpointData data = read_checkpoint(checkpoint, false);
  config = config_from_ini(data.config);
  if (seq_len > 0) config.train.seq_len = seq_len;
  validate_model(config.model, config.train.seq_len);
  auto model = std::make_unique<StageModel>(config.model, config.train.seq_len);
  require_stored_tensors(checkpoint, param_shapes(model->params()), data);
  import_params(model->params(), data, false, false, checkpoint);
  if (device == Device::Cpu) return model;
  // The checkpoint is read into host memory (import_params), then each tensor goes to the device.
  auto on_device = std::make_unique<StageModel>(config.model, config.train.seq_len, 0, -1,
                                                TensorParallel{}, false, backend);
  const DeviceMemory& memory = device_memory(device);
  for (auto& [name, p] : on_device->params().all())
    memory.from_host(p.value.data(), model->params().at(name).value.data(),
                     static_cast<int64_t>(sizeof(float)) * p.value.numel());
  return on_device;
}

Device parse_device(const std::string& text) {
  for (Device d : {Device::Cpu, Device::Cuda})
    if (text == device_name(d)) return d;
  throw UsageError("--device " + text + ": not a device; give cpu or cuda.");
}

namespace {

// "--<flag> W" or "W0,W1,...": one value for every stack block or one per block, each in
// [1, stored[b]]. `what` names a value ("width", "head count").
std::vector<int> parse_block_widths(const std::string& flag, const std::string& text,
                                    const std::vector<int>& stored, const std::string& what) {
  const int blocks = static_cast<int>(stored.size());
  std::vector<int> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      values.push_back(std::stoi(item, &used));
      require(used == item.size(), "");
    } catch (...) {
      throw UsageError("--" + flag + " " + text + ": '" + item + "' is not an integer. Give one " +
                       what + " (e.g. " + std::to_string(stored.at(0)) +
                       ") or one per stack block, comma-separated.");
    }
  }
  if (values.size() == 1) values.assign(blocks, values[0]);
  require(static_cast<int>(values.size()) == blocks,
          "--" + flag + " " + text + ": " + std::to_string(values.size()) + " values for " +
              std::to_string(blocks) + " stack blocks. Give one " + what +
              " or exactly one per block.");
  for (int b = 0; b < blocks; ++b)
    require(values[b] >= 1 && values[b] <= stored[b],
            "--" + flag + ": block " + std::to_string(b) + " " + what + " " +
                std::to_string(values[b]) + " is outside [1, " + std::to_string(stored[b]) + "].");
  return values;
}

// The sub-model that --ffn-widths and --head-widths pick (Mix'n'Match, §1.5, §9.6); none when
// neither is given (the full model).
std::optional<SubmodelWidths> picked_widths(const po::variables_map& vm, const ModelConfig& model) {
  if (!vm.count("ffn-widths") && !vm.count("head-widths")) return std::nullopt;
  SubmodelWidths widths = full_widths(model);
  if (vm.count("ffn-widths"))
    widths.ffn = parse_ffn_widths(vm["ffn-widths"].as<std::string>(), model);
  if (vm.count("head-widths"))
    widths.heads = parse_head_widths(vm["head-widths"].as<std::string>(), model);
  return widths;
}

// t restricted to its first `count` indices along `axis` (tensor_parallel.h's slices).
Tensor leading(const Tensor& t, int axis, int64_t count) {
  ParamSlice prefix{axis, std::vector<int64_t>(count)};
  std::iota(prefix.index.begin(), prefix.index.end(), int64_t{0});
  Tensor out(local_shape(t.shape(), prefix));
  take_slice(out.data(), t, prefix);
  return out;
}

// Slices stack block `p`'s FFN to `width` hidden units and its attention to `heads` heads (§1.5,
// §9.6) in one map of canonical tensors (parameters or a moment).
void slice_block(TensorMap& map, const std::string& block, const ModelConfig& m, int width,
                 int heads) {
  auto cut = [&](const std::string& name, int axis, int64_t count) {
    auto it = map.find(block + "/" + name);
    if (it != map.end()) it->second = leading(it->second, axis, count);
  };
  cut("ffn/w1", 1, width);
  cut("ffn/b1", 0, width);
  cut("ffn/w2", 0, width);
  const int64_t he = static_cast<int64_t>(heads) * m.head_dim(), hr = heads * m.rank;
  for (const char* name :
       {"attn/wq", "attn/wk", "attn/wv", "attn/dconv_q", "attn/dconv_k", "attn/dconv_v"})
    cut(name, 1, he);
  cut("attn/wo", 0, he);
  for (const char* name : {"attn/norm_window/gain", "attn/norm_window/bias",
                           "attn/norm_global/gain", "attn/norm_global/bias"})
    cut(name, 0, he);
  cut("attn/proj/weight", 1, hr);
  cut("attn/proj/bias", 0, hr);
}

}  // namespace

std::vector<int> parse_ffn_widths(const std::string& text, const ModelConfig& model) {
  return parse_block_widths("ffn-widths", text, full_widths(model).ffn, "width");
}

std::vector<int> parse_head_widths(const std::string& text, const ModelConfig& model) {
  return parse_block_widths("head-widths", text, full_widths(model).heads, "head count");
}

int eval_main(const std::vector<std::string>& args) {
  po::options_description options("hourglass eval");
  // clang-format off: one option per line
  options.add_options()("checkpoint", po::value<std::string>()->required(), "checkpoint file")(
      "data", po::value<std::string>()->required(), "dataset directory (hourglass prep)")(
      "split", po::value<std::string>()->default_value("valid"), "valid | test | train")(
      "seq-len", po::value<int>()->default_value(0), "window length (0: the checkpoint's)")(
      "max-windows", po::value<int64_t>()->default_value(0), "score at most N windows (0: all)")(
      "ffn-widths", po::value<std::string>(), "W or W0,W1,...: MatFormer FFN widths")(
      "head-widths", po::value<std::string>(), "h or h0,h1,...: MatFormer head counts")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu | cuda (§9.2)")(
      "batch", po::value<int>()->default_value(8), "windows per forward (at least 1)")(
      "json", "print one JSON object as the last line");
  // clang-format on
  auto vm = parse_flags(args, options,
                        "hourglass eval --checkpoint FILE --data DIR [--split valid|test] "
                        "[--seq-len L] [--max-windows N] [--ffn-widths W|W0,W1,...] "
                        "[--head-widths h|h0,h1,...] [--device cpu|cuda] [--json]");
  const int seq_len = flag_at_least(
      vm, "seq-len", 0, "a window length >= 1, or 0 for the checkpoint's train.seq_len");
  const int64_t max_windows = flag_at_least<int64_t>(
      vm, "max-windows", 0, "N >= 1 to score at most N windows, or 0 to score them all");
  const int batch = flag_at_least(vm, "batch", 1, "the number of windows per forward, at least 1");
  const std::string checkpoint = vm["checkpoint"].as<std::string>();
  Config config;
  const Device device = parse_device(vm["device"].as<std::string>());
  auto model = load_model(checkpoint, seq_len, config, device);
  const std::optional<SubmodelWidths> widths = picked_widths(vm, config.model);
  TokenDataset data(vm["data"].as<std::string>(), vm["split"].as<std::string>());
  require_vocabulary_fits(data, "--data " + data.dir(), config.model.vocab_size,
                          "model.vocab_size of checkpoint '" + checkpoint + "'",
                          "evaluate it on data of a vocabulary it covers (`hourglass info DIR` "
                          "prints a dataset's), or use a checkpoint trained on this data.");
  const int L = config.train.seq_len;
  int64_t windows = eval_window_count(data.num_tokens(), L);
  if (max_windows > 0) windows = std::min(windows, max_windows);
  require(windows > 0, "split " + data.split() + " of " + data.dir() + " holds " +
                           std::to_string(data.num_tokens()) +
                           " tokens: too few for one window of " + std::to_string(L + 1) +
                           "; use a smaller --seq-len.");
  double loss_sum = 0;
  std::vector<int32_t> tokens;
  for (int64_t w = 0; w < windows; w += batch) {
    const int64_t count = std::min<int64_t>(batch, windows - w);
    tokens.resize(count * (L + 1));
    read_eval_windows(data, L, w, count, tokens.data());
    TokenBatch tb{tokens.data(), count, w};
    loss_sum += evaluate_loss(*model, tb, widths ? &*widths : nullptr) * count;
  }
  const double loss = loss_sum / windows;
  const int64_t scored = windows * L;
  std::printf("split %s: %ld windows of %d tokens, loss %.6f nats, bpc %.6f\n",
              data.split().c_str(), long(windows), L, loss, loss / std::log(2.0));
  if (vm.count("json"))
    std::printf("{\"loss\": %.9g, \"bpc\": %.9g, \"tokens\": %ld}\n", loss, loss / std::log(2.0),
                long(scored));
  return 0;
}

namespace {

po::options_description sample_options() {
  po::options_description options("hourglass sample");
  // clang-format off: one option per line
  options.add_options()("checkpoint", po::value<std::string>()->required(), "checkpoint file")(
      "prompt", po::value<std::string>()->default_value(""), "text to continue (empty: a newline)")(
      "length", po::value<int>()->default_value(200), "tokens to generate (at least 1)")(
      "temperature", po::value<double>()->default_value(0.8, "0.8"),
      "softmax temperature (0: greedy)")("top-k", po::value<int>()->default_value(0),
                                         "sample among the k most likely (0: all)")(
      "seed", po::value<uint64_t>()->default_value(1), "random seed")(
      "ffn-widths", po::value<std::string>(),
      "W or W0,W1,...: MatFormer FFN widths (default full)")(
      "head-widths", po::value<std::string>(),
      "h or h0,h1,...: MatFormer head counts (default all)")(
      "num-samples", po::value<int>()->default_value(1),
      "continuations decoded together as one batch (at least 1)")(
      "no-cache",
      "re-run the model on the window for every token instead of cached incremental "
      "decoding (the default; same tokens, slower)")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu | cuda");
  // clang-format on same tokens, slower)");
  return options;
}

}  // namespace

std::string describe_sample_options() {
  std::ostringstream text;
  text << sample_options()
       << "\nThe model reads a window of the context that grows with it up to train.seq_len "
          "tokens,\nthen restarts at the last seq_len/2 tokens (prefilled in one pass; "
          "docs/DESIGN.md, Sampling).\n";
  return text.str();
}

int sample_main(const std::vector<std::string>& args) {
  const po::options_description options = sample_options();
  auto vm = parse_flags(args, options,
                        "hourglass sample --checkpoint FILE --prompt TEXT [--length N] "
                        "[--temperature T] [--top-k K] [--seed S] [--ffn-widths W|W0,W1,...] "
                        "[--head-widths h|h0,h1,...] [--num-samples N] [--no-cache] "
                        "[--device cpu|cuda]");
  SampleOptions o;
  o.length = flag_at_least(vm, "length", 1, "the number of tokens to generate, at least 1");
  o.temperature = flag_at_least(
      vm, "temperature", 0.0, "T > 0 to sample, or 0 for greedy decoding (the most likely token)");
  o.top_k = flag_at_least(
      vm, "top-k", 0, "k >= 1 to sample among the k most likely tokens, or 0 to sample among all");
  o.num_samples =
      flag_at_least(vm, "num-samples", 1, "the number of continuations to generate, at least 1");
  o.seed = vm["seed"].as<uint64_t>();
  o.cache = !vm.count("no-cache");
  const std::string checkpoint = vm["checkpoint"].as<std::string>();
  Config config;
  const Device device = parse_device(vm["device"].as<std::string>());
  auto model = load_model(checkpoint, 0, config, device);
  o.widths = picked_widths(vm, config.model);
  const std::string prompt = vm["prompt"].as<std::string>();
  const auto samples =
      generate(*model, prompt_tokens(prompt, config.model.vocab_size, checkpoint), o);
  for (size_t n = 0; n < samples.size(); ++n) {
    if (samples.size() > 1) std::printf("--- sample %zu of %zu ---\n", n + 1, samples.size());
    // fwrite: a generated byte 0 is text too, where printf's %s would stop.
    const std::string text = prompt + std::string(samples[n].begin(), samples[n].end()) + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  return 0;
}

int extract_main(const std::vector<std::string>& args) {
  po::options_description options("hourglass extract");
  // clang-format off: one option per line
  options.add_options()("checkpoint", po::value<std::string>()->required(), "checkpoint file")(
      "ffn-widths", po::value<std::string>(), "W or W0,W1,...: FFN widths (default: as stored)")(
      "head-widths", po::value<std::string>(), "h or h0,h1,...: head counts (default: as stored)")(
      "output", po::value<std::string>()->required(), "output checkpoint file");
  // clang-format on
  const std::string usage =
      "hourglass extract --checkpoint FILE [--ffn-widths W|W0,W1,...] [--head-widths "
      "h|h0,h1,...] --output FILE";
  auto vm = parse_flags(args, options, usage);
  require(vm.count("ffn-widths") || vm.count("head-widths"),
          "extract needs --ffn-widths, --head-widths or both (the sub-model to write).\nusage: " +
              usage);
  const std::string input = vm["checkpoint"].as<std::string>();
  const std::string output = vm["output"].as<std::string>();
  require(user_path_exists(input), "--checkpoint " + input + ": no such file.");
  require(!same_file(input, output),
          "--output " + output + " is the same file as --checkpoint " + input +
              ": extract would replace the checkpoint it reads. Give another --output path.");
  const std::filesystem::path output_dir = std::filesystem::path(output).parent_path();
  require(output_dir.empty() || user_path_is_directory(output_dir.string()),
          "--output " + output + ": directory " + output_dir.string() +
              " does not exist. Create it first or give a path in an existing directory.");
  Config config = config_from_ini(read_checkpoint_header(input).config);
  validate_model(config.model, config.train.seq_len);
  const SubmodelWidths widths = *picked_widths(vm, config.model);
  // The expected tensors come from a model built (and freed) before the checkpoint is read, so
  // the model's memory and the checkpoint's are never held together.
  const ShapeMap expected = param_shapes(StageModel(config.model, config.train.seq_len).params());
  CheckpointData data = read_checkpoint(input, true);
  require_stored_tensors(input, expected, data);
  // Slice every stack block's FFN and attention (and their moments) to the prefixes (§1.5, §9.6).
  for (const UnitPlan& p : plan_units(config.model, config.train.seq_len)) {
    if (p.kind != UnitKind::Block) continue;
    for (TensorMap* map : {&data.params, &data.exp_avg, &data.exp_avg_sq})
      slice_block(*map, p.name, config.model, widths.ffn[p.global_block],
                  widths.heads[p.global_block]);
  }
  // A list the extraction leaves full stays unset, as before nested heads (§1.5's readers).
  if (vm.count("ffn-widths") || !config.model.ffn_widths.empty())
    config.model.ffn_widths = widths.ffn;
  if (vm.count("head-widths") || !config.model.head_widths.empty())
    config.model.head_widths = widths.heads;
  data.config = config.to_ini();
  write_checkpoint(output, data);
  std::printf("wrote %s with FFN widths %s and head counts %s\n", output.c_str(),
              vm.count("ffn-widths") ? vm["ffn-widths"].as<std::string>().c_str() : "as stored",
              vm.count("head-widths") ? vm["head-widths"].as<std::string>().c_str() : "as stored");
  return 0;
}

int info_main(const std::vector<std::string>& args) {
  require(args.size() == 1, "usage: hourglass info DIR | CHECKPOINT");
  const std::string& path = args[0];
  require(user_path_exists(path), "hourglass info " + path + ": no such file or directory.");
  if (user_path_is_directory(path)) return info_dataset_main(path);
  // Reads every tensor once: the listing comes from what could be read, validity from the
  // checksums, the moments' agreement with the parameters and finiteness (checkpoint_io.h).
  const CheckpointData header = read_checkpoint_header(path);
  const CheckpointCheck check = verify_checkpoint(path);
  ShapeMap shapes = check.params;
  if (!check.valid) {
    try {
      shapes = read_checkpoint_shapes(path);
    } catch (const UsageError&) {
      // The listing itself is damaged: print what verification could list.
    }
  }
  int64_t count = 0;
  for (const auto& [name, shape] : shapes) count += shape_numel(shape);
  std::printf("checkpoint %s\nstep %ld\nparameters %ld in %zu tensors\n", path.c_str(),
              long(header.step), long(count), shapes.size());
  for (const auto& [name, shape] : shapes)
    std::printf("  %-48s %s\n", name.c_str(), shape_string(shape).c_str());
  std::printf("config:\n%s\n", header.config.c_str());
  if (!check.valid) {
    std::printf("validity: DAMAGED: %s\n", check.problem.c_str());
    std::fflush(stdout);
    std::fprintf(stderr, "hourglass info: error: %s\n", check.problem.c_str());
    return 2;
  }
  if (check.checksummed == check.tensors && check.config_checksum)
    std::printf("validity: valid: %ld tensors (%.1f MB) read, every checksum matches\n",
                long(check.tensors), check.bytes / 1e6);
  else
    std::printf(
        "validity: valid: %ld tensors (%.1f MB) read; %ld of them carry checksums%s, so "
        "damage elsewhere would go unnoticed\n",
        long(check.tensors), check.bytes / 1e6, long(check.checksummed),
        check.config_checksum ? "" : " and the config has none");
  return 0;
}

}  // namespace hg
