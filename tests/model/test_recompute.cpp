// Activation recomputation (train.recompute = blocks, model/unit_recompute.h): training is
// bit-identical to keeping the activations, and a recomputed unit keeps nothing but its input
// between forward and backward. (Under tensor and data parallelism: the
// dp2_tp2_resampling_dropout_recompute layout of test_tensor_parallel.cpp.)
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model/unit_recompute.h"
#include "tests/support/reference_run.h"
#include "tests/support/tiny_models.h"

namespace hg {
namespace {

// Dropout (the recomputed masks must be the same) and MatFormer joint (every micro-batch at two
// widths: the recomputed forward must use the slot's width).
const char* kIni =
    "[model]\nvocab_size = 16\nd_model = 16\nheads = 2\nffn = 32\nwindow = 8\nchunk = 4\n"
    "hierarchy = 1@1 2@2 1@1\ndropout = 0.1\nffn_granularities = 1,2\n"
    "[train]\nseq_len = 16\nbatch = 4\nmicro_batch = 2\nlr = 1e-3\nwarmup = 2\n"
    "matformer = joint\n";

TEST(RecomputeBlocks, TrainingIsBitIdenticalToKeepingActivations) {
  Config keep = testing::tiny_config(kIni), recompute = keep;
  recompute.train.recompute = Recompute::Blocks;
  ASSERT_TRUE(recompute_blocks(recompute.train));
  const int steps = 4;
  const testing::ReferenceRun a = testing::single_process_run(keep, steps, 77);
  const testing::ReferenceRun b = testing::single_process_run(recompute, steps, 77);
  for (int s = 0; s < steps; ++s) {
    EXPECT_EQ(a.metrics[s].loss, b.metrics[s].loss) << "step " << s + 1;
    EXPECT_EQ(a.metrics[s].grad_norm, b.metrics[s].grad_norm) << "step " << s + 1;
  }
  for (const auto& [name, p] : a.model->params().all()) {
    const Param& q = b.model->params().at(name);
    EXPECT_EQ(0, std::memcmp(p.value.data(), q.value.data(), sizeof(float) * p.value.numel()))
        << name;
    EXPECT_EQ(0, std::memcmp(p.exp_avg_sq.data(), q.exp_avg_sq.data(),
                             sizeof(float) * p.value.numel()))
        << name;
  }
}

// A unit that records what the wrapper asks of it: out = 2·in, din = 3·dout; its cache is the
// input (so a backward without the forward before it fails).
class ProbeUnit : public Unit {
 public:
  ProbeUnit() : Unit("probe") {}
  void forward(Slot& slot, const Tensor& in, Tensor& out) override {
    ++forwards;
    caches_.acquire(slot.id).seen = in;
    out.reset(in.shape());
    for (int64_t i = 0; i < in.numel(); ++i) out[i] = 2 * in[i];
  }
  void backward(Slot& slot, const Tensor& dout, Tensor& din) override {
    ++backwards;
    const Tensor& seen = caches_.at(slot.id).seen;  // throws when the forward did not run
    din.reset(dout.shape());
    for (int64_t i = 0; i < dout.numel(); ++i) din[i] = 3 * dout[i] + 0 * seen[i];
    last_backward_input = seen;
    caches_.release(slot.id);
  }
  void release(int64_t id) override { caches_.release(id); }
  int64_t live_slots() const override { return caches_.live(); }
  int forwards = 0, backwards = 0;
  Tensor last_backward_input;

 private:
  struct Cache {
    Tensor seen;
  };
  SlotCaches<Cache> caches_;
};

TEST(RecomputeBlocks, KeepsOnlyTheInputBetweenForwardAndBackward) {
  auto owned = std::make_unique<ProbeUnit>();
  ProbeUnit& probe = *owned;
  RecomputeUnit unit(std::move(owned));
  Slot slots[2];
  Tensor in[2], out[2];
  for (int k = 0; k < 2; ++k) {
    slots[k].id = k;
    in[k].reset({1, 3, 2});
    for (int64_t i = 0; i < in[k].numel(); ++i) in[k][i] = static_cast<float>(10 * k + i);
    unit.forward(slots[k], in[k], out[k]);
    EXPECT_EQ(out[k][5], 2 * in[k][5]);
  }
  EXPECT_EQ(probe.live_slots(), 0) << "the inner unit must not keep a cache after its forward";
  EXPECT_EQ(unit.live_slots(), 2) << "the wrapper keeps each micro-batch's input";

  in[1].fill(-1.0f);  // the caller reuses its buffer: the wrapper must have copied it
  Tensor dout({1, 3, 2}), din;
  dout.fill(1.0f);
  unit.backward(slots[1], dout, din);
  EXPECT_EQ(probe.forwards, 3);  // recomputed once
  EXPECT_EQ(probe.backwards, 1);
  EXPECT_EQ(din[0], 3.0f);
  EXPECT_EQ(probe.last_backward_input[4], 14.0f) << "recomputed from the kept input";
  EXPECT_EQ(unit.live_slots(), 1);
  EXPECT_EQ(probe.live_slots(), 0);

  unit.release(0);  // evaluation-style release without backward
  EXPECT_EQ(unit.live_slots(), 0);
}

}  // namespace
}  // namespace hg
