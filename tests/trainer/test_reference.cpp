// The project against numbers from an independent implementation of ARCHITECTURE.md
// (tests/data/reference-base, see its README): loss, first-step gradients, 5 AdamW steps.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "model/stage_model.h"
#include "trainer/config.h"
#include "trainer/train_step.h"

namespace hg {
namespace {

const std::string kDir = std::string(HG_SOURCE_DIR) + "/tests/data/reference-base";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The numbers after `"key":` in expected.json: a scalar or a flat array.
std::vector<double> json_numbers(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\"");
  EXPECT_NE(at, std::string::npos) << key;
  at = json.find(':', at) + 1;
  std::vector<double> values;
  bool array = json.find_first_not_of(" \n\t", at) == json.find('[', at);
  size_t end = array ? json.find(']', at) : json.find_first_of(",}\n", at);
  std::string body = json.substr(at, end - at);
  for (char& c : body)
    if (c == '[' || c == ',') c = ' ';
  std::istringstream in(body);
  double v;
  while (in >> v) values.push_back(v);
  return values;
}

struct Reference {
  Config config;
  CheckpointData init;
  std::vector<int32_t> tokens;  // [2, 33]: two copies of window.bin
  std::string expected;

  Reference() {
    init = read_checkpoint(kDir + "/init.h5");
    config = config_from_ini(init.config);
    expected = read_text(kDir + "/expected.json");
    config.train.seq_len = static_cast<int>(json_numbers(expected, "seq_len").at(0));
    config.train.batch = static_cast<int>(json_numbers(expected, "batch").at(0));
    config.train.micro_batch = config.train.batch;
    for (auto [key, field] : {std::pair{"lr", &config.train.lr},
                              {"min_lr_ratio", &config.train.min_lr_ratio},
                              {"weight_decay", &config.train.weight_decay},
                              {"beta1", &config.train.beta1},
                              {"beta2", &config.train.beta2},
                              {"eps", &config.train.eps},
                              {"grad_clip", &config.train.grad_clip}})
      *field = json_numbers(expected, key).at(0);
    config.train.warmup = static_cast<int64_t>(json_numbers(expected, "warmup").at(0));
    config.train.steps = static_cast<int64_t>(json_numbers(expected, "steps").at(0));
    std::string window = read_text(kDir + "/window.bin");
    EXPECT_EQ(window.size(), static_cast<size_t>(config.train.seq_len + 1));
    for (int copy = 0; copy < config.train.batch; ++copy)
      for (unsigned char c : window) tokens.push_back(c);
  }

  std::unique_ptr<StageModel> model() const {
    auto m = std::make_unique<StageModel>(config.model, config.train.seq_len);
    import_params(m->params(), init, true, false, "init.h5");
    return m;
  }
  TokenBatch batch() const { return {tokens.data(), config.train.batch, 0}; }
};

// max |a - b| relative to max |b| (the tensor's scale). Tensors whose true value is zero (the
// gradient of proj/bias: a chunk softmax does not see a bias shared by its rows) hold rounding
// noise of ~1e-12 in both implementations: below `floor` the scale is the floor.
double relative_max_error(const Tensor& a, const Tensor& b, double floor = 1e-6) {
  double err = 0, scale = floor;
  for (int64_t i = 0; i < b.numel(); ++i) {
    err = std::max(err, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return err / scale;
}

TEST(Reference, ModelHasExactlyTheCanonicalParameterNamesAndShapes) {
  Reference ref;
  auto model = ref.model();  // import_params(allow_extra = false) throws on any mismatch
  EXPECT_EQ(model->params().all().size(), ref.init.params.size());
}

TEST(Reference, EvalLossMatches) {
  Reference ref;
  auto model = ref.model();
  double loss = evaluate_loss(*model, ref.batch(), nullptr);
  EXPECT_NEAR(loss, json_numbers(ref.expected, "eval_loss").at(0), 1e-5 * loss);
}

TEST(Reference, FirstStepGradientsMatch) {
  Reference ref;
  auto model = ref.model();
  TensorMap grads = read_tensor_group(kDir + "/grads-step1.h5", "/grads");
  ASSERT_EQ(grads.size(), model->params().all().size());
  StepContext ctx;
  ctx.loss_scale = 1.0f / (ref.config.train.batch * ref.config.train.seq_len);
  accumulate_gradients(*model, ctx, {ref.batch()}, {-1}, {});
  for (const auto& [name, p] : model->params().all()) {
    ASSERT_TRUE(grads.count(name)) << name;
    EXPECT_LT(relative_max_error(p.grad, grads.at(name)), 1e-4) << name;
  }
}

TEST(Reference, FiveAdamWStepsMatchLossesNormsRatesAndFinalState) {
  Reference ref;
  auto model = ref.model();
  auto losses = json_numbers(ref.expected, "losses");
  auto norms = json_numbers(ref.expected, "grad_norms");
  auto lrs = json_numbers(ref.expected, "lrs");
  for (int64_t s = 0; s < ref.config.train.steps; ++s) {
    StepMetrics m = train_step(*model, ref.config, s, {ref.batch()});
    EXPECT_EQ(m.step, s + 1);
    EXPECT_NEAR(m.loss, losses[s], 1e-5 * losses[s]) << "step " << s + 1;
    EXPECT_NEAR(m.grad_norm, norms[s], 1e-4 * norms[s]) << "step " << s + 1;
    EXPECT_NEAR(m.lr, lrs[s], 1e-9) << "step " << s + 1;
  }
  CheckpointData after = read_checkpoint(kDir + "/after5.h5");
  EXPECT_EQ(after.step, 5);
  for (const auto& [name, p] : model->params().all()) {
    // proj/bias only ever moved by Adam-normalised rounding noise (~1e-7 a step): compared at
    // 1e-6 absolute, like every parameter whose values stay below 1e-2.
    EXPECT_LT(relative_max_error(p.value, after.params.at(name), 1e-2), 1e-4) << name;
    EXPECT_LT(relative_max_error(p.exp_avg, after.exp_avg.at(name)), 1e-3) << name;
    EXPECT_LT(relative_max_error(p.exp_avg_sq, after.exp_avg_sq.at(name), 1e-12), 1e-3) << name;
  }
}

}  // namespace
}  // namespace hg
