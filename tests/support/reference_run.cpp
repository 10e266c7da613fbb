#include "tests/support/reference_run.h"

#include <map>
#include <string>

#include "core/gemm.h"
#include "tests/support/tiny_models.h"

namespace hg::testing {

std::vector<int32_t> step_tokens(const Config& config, int64_t s, uint64_t token_seed) {
  return random_tokens(config.train.batch, config.train.seq_len, config.model.vocab_size,
                       token_seed + static_cast<uint64_t>(s));
}

ReferenceRun single_process_run(const Config& config, int steps, uint64_t token_seed) {
  ReferenceRun r;
  const MatmulPrecisionScope precision(config.train.precision);  // as the trainer sets it
  r.model = std::make_unique<StageModel>(config.model, config.train.seq_len, 0, -1,
                                         TensorParallel{}, recompute_blocks(config.train));
  r.model->params().init_all(config.train.seed);
  const int64_t row = config.train.seq_len + 1;
  for (int64_t s = 0; s < steps; ++s) {
    const std::vector<int32_t> tokens = step_tokens(config, s, token_seed);
    std::vector<TokenBatch> micro;
    for (int first = 0; first < config.train.batch; first += config.train.micro_batch)
      micro.push_back({tokens.data() + first * row, config.train.micro_batch, first});
    r.metrics.push_back(train_step(*r.model, config, s, micro));
  }
  return r;
}

const ReferenceRun& cached_single_process_run(const Config& config, int steps,
                                              uint64_t token_seed) {
  static std::map<std::string, ReferenceRun> cache;
  Config serial = config;
  serial.parallel = ParallelConfig{};
  const std::string key = serial.to_ini() + "\n" + std::to_string(steps) + " steps, tokens " +
                          std::to_string(token_seed);
  auto it = cache.find(key);
  if (it == cache.end())
    it = cache.emplace(key, single_process_run(serial, steps, token_seed)).first;
  return it->second;
}

}  // namespace hg::testing
