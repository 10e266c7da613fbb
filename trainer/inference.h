// Subcommands that use a trained checkpoint on one process: eval, sample, extract, info.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/stage_model.h"
#include "trainer/config.h"

namespace hg {

// The whole model of a checkpoint, built from the configuration stored in it, with its parameters
// on `device` (§9.2). seq_len 0 = the checkpoint's train.seq_len. UsageError naming the reason
// when the device is missing, before the checkpoint is read.
std::unique_ptr<StageModel> load_model(const std::string& checkpoint, int seq_len, Config& config,
                                       Device device = Device::Cpu);
// "cpu" or "cuda"; UsageError otherwise.
Device parse_device(const std::string& text);

// "--ffn-widths W" or "W0,W1,...": one width for every stack block or one per block (forward
// order). Each must be in [1, the block's stored width]. UsageError otherwise.
std::vector<int> parse_ffn_widths(const std::string& text, const ModelConfig& model);
// "--head-widths h" or "h0,h1,...": the same for head counts (§9.6), each in [1, the block's
// stored heads].
std::vector<int> parse_head_widths(const std::string& text, const ModelConfig& model);

// `hourglass sample --help`: every option with its meaning and default, and how the cache and the
// window work.
std::string describe_sample_options();

int eval_main(const std::vector<std::string>& args);
int sample_main(const std::vector<std::string>& args);
int extract_main(const std::vector<std::string>& args);
int info_main(const std::vector<std::string>& args);

}  // namespace hg
