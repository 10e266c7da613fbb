// Zero-bubble's W (ARCHITECTURE.md §9.3, parallel.schedule zbh1): the backward of a micro-batch
// splits into B, everything but the weight-gradient products, and W, those products alone.
// Every weight-gradient product of the model is one linear_backward's dW[:, :out] += inpᵀ·dout
// (the Q/K/V/O, FFN, compression, resampling and head projections; layers/linear.h). While a
// DeferWeightGradients scope is open on a thread, that thread's linear_backward records the
// product in a DeferredWeightGradients (copying both operands, which the backward frees or
// reuses) instead of computing it; run() computes them later with the same gemm calls in the
// same order. W of each micro-batch running in micro-batch order therefore gives every dW the
// same sums in the same order as the fused backward: the same bits. Everything cheap (biases,
// LayerNorm gains, DConv taps, the embedding) stays in B.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace hg {

class DeferredWeightGradients {
 public:
  // dweight[:, :out_dim] (row stride ldw) += inp[rows, in_dim]ᵀ · dout[rows, out_dim], later.
  void record(float* dweight, const float* inp, const float* dout, int64_t rows, int64_t in_dim,
              int64_t out_dim, int64_t ldw);
  // The products recorded so far complete the weight gradients of `unit` (a caller's label, e.g.
  // a stage-local unit index): run() reports it when it gets there.
  void mark(int unit);
  // Computes every recorded product in recorded order, calling unit_done at each mark; then
  // empty again.
  void run(const std::function<void(int unit)>& unit_done = {});
  bool empty() const { return steps_.empty(); }
  int64_t bytes() const;  // the operand copies held

 private:
  struct Step {
    int unit = -1;  // >= 0: a mark
    float* dweight = nullptr;
    std::vector<float> inp, dout;
    int64_t rows = 0, in_dim = 0, out_dim = 0, ldw = 0;
  };
  std::vector<Step> steps_;
};

// While alive, this thread's linear_backward records into `queue`. Scopes do not nest.
class DeferWeightGradients {
 public:
  explicit DeferWeightGradients(DeferredWeightGradients& queue);
  ~DeferWeightGradients();
  DeferWeightGradients(const DeferWeightGradients&) = delete;
  DeferWeightGradients& operator=(const DeferWeightGradients&) = delete;
};

// The queue of this thread's open scope, or null (compute at once).
DeferredWeightGradients* deferred_weight_gradients();

}  // namespace hg
