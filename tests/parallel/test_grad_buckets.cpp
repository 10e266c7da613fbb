// The data-parallel gradient buckets (parallel/grad_buckets.h) on one process: how parameters are
// packed and when each bucket becomes ready. The sums over replicas are tested by the
// data-parallel layouts in test_pipeline.cpp and test_tensor_parallel.cpp (under mpirun).
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <string>

#include "model/stage_model.h"
#include "parallel/communicator.h"
#include "parallel/grad_buckets.h"
#include "tests/support/tiny_models.h"

namespace hg {
namespace {

const char* kModel = "[model]\nhierarchy = 1@1 2@2 1@1\n";

TEST(GradientBuckets, PackEveryParameterOnceInBackwardOrder) {
  const Config config = testing::tiny_config(kModel);
  StageModel model(config.model, config.train.seq_len);
  const int64_t cap = 4096;
  const auto self = make_mpi_communicator(MPI_COMM_SELF);
  GradientBuckets buckets(model.unit_gradients(), *self, cap);

  std::map<std::string, int> unit_of;
  for (size_t u = 0; u < model.unit_params().size(); ++u)
    for (const std::string& name : model.unit_params()[u]) unit_of[name] = static_cast<int>(u);
  ASSERT_EQ(unit_of.size(), model.params().all().size()) << "a parameter with no unit";

  std::map<std::string, int> seen;
  int previous_ready = static_cast<int>(model.unit_params().size());
  const auto& all = buckets.buckets();
  ASSERT_GE(all.size(), 3u);
  for (size_t b = 0; b < all.size(); ++b) {
    const GradientBucket& bucket = all[b];
    int64_t bytes = 0, min_unit = 1 << 30;
    for (size_t i = 0; i < bucket.grads.size(); ++i) {
      ++seen[bucket.names[i]];
      EXPECT_EQ(bucket.grads[i], &model.params().at(bucket.names[i]).grad);
      bytes += 4 * bucket.grads[i]->numel();
      min_unit = std::min<int64_t>(min_unit, unit_of.at(bucket.names[i]));
    }
    EXPECT_EQ(bucket.flat.numel() * 4, bytes);
    // Ready when the last of its units (in backward order) is done; buckets in that order.
    EXPECT_EQ(bucket.ready_unit, min_unit) << "bucket " << b;
    EXPECT_LE(bucket.ready_unit, previous_ready);
    previous_ready = bucket.ready_unit;
    // Closed as soon as it reached the cap: without its last tensor it was below it.
    if (b + 1 < all.size()) {
      EXPECT_GE(bytes, cap) << "bucket " << b;
      EXPECT_LT(bytes - 4 * bucket.grads.back()->numel(), cap) << "bucket " << b;
    }
  }
  for (const auto& [name, count] : seen) EXPECT_EQ(count, 1) << name;
  EXPECT_EQ(seen.size(), model.params().all().size());
}

TEST(GradientBuckets, StartWhenTheirUnitsAreDoneAndSumOverOneReplicaIsIdentity) {
  const Config config = testing::tiny_config(kModel);
  StageModel model(config.model, config.train.seq_len);
  int i = 0;
  for (auto& [name, p] : model.params().all())
    for (int64_t k = 0; k < p.grad.numel(); ++k) p.grad[k] = static_cast<float>(++i % 97) - 48.5f;
  std::map<std::string, Tensor> before;
  for (auto& [name, p] : model.params().all()) before[name] = p.grad;

  const auto self = make_mpi_communicator(MPI_COMM_SELF);  // one replica: the sum is the identity
  GradientBuckets buckets(model.unit_gradients(), *self, 2048);
  buckets.begin_step();
  for (int u = static_cast<int>(model.unit_params().size()); u-- > 0;) {
    buckets.unit_done(u);
    for (const GradientBucket& b : buckets.buckets())
      EXPECT_EQ(b.started, b.ready_unit >= u) << "after unit " << u;
  }
  buckets.finish();
  EXPECT_EQ(buckets.stats().started_during_backward, buckets.stats().buckets);
  for (auto& [name, p] : model.params().all())
    for (int64_t k = 0; k < p.grad.numel(); ++k)
      ASSERT_EQ(p.grad[k], before[name][k]) << name << "[" << k << "]";

  // A second step: finish() alone starts everything (no unit_done: e.g. a stage without backward).
  buckets.begin_step();
  buckets.finish();
  EXPECT_EQ(buckets.stats().started_during_backward, 0);
  for (const GradientBucket& b : buckets.buckets()) EXPECT_EQ(b.started_at_unit, -1);
}

}  // namespace
}  // namespace hg
