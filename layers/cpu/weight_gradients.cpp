#include "layers/weight_gradients.h"

#include <stdexcept>

#include "core/gemm.h"

namespace hg {
namespace {

// The kernels call linear_backward from the thread that runs the backward (their OpenMP workers
// run inside gemm and the element-wise loops), so a thread's scope sees all of one backward.
thread_local DeferredWeightGradients* open_queue = nullptr;

}  // namespace

void DeferredWeightGradients::record(float* dweight, const float* inp, const float* dout,
                                     int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) {
  Step s;
  s.dweight = dweight;
  s.inp.assign(inp, inp + rows * in_dim);
  s.dout.assign(dout, dout + rows * out_dim);
  s.rows = rows;
  s.in_dim = in_dim;
  s.out_dim = out_dim;
  s.ldw = ldw;
  steps_.push_back(std::move(s));
}

void DeferredWeightGradients::mark(int unit) {
  Step s;
  s.unit = unit;
  steps_.push_back(std::move(s));
}

void DeferredWeightGradients::run(const std::function<void(int unit)>& unit_done) {
  for (const Step& s : steps_) {
    if (s.unit >= 0) {
      if (unit_done) unit_done(s.unit);
      continue;
    }
    // linear_backward's product, on the copies (layers/cpu/linear.cpp).
    gemm(true, false, s.in_dim, s.out_dim, s.rows, 1.0f, s.inp.data(), s.in_dim, s.dout.data(),
         s.out_dim, 1.0f, s.dweight, s.ldw);
  }
  steps_.clear();
}

int64_t DeferredWeightGradients::bytes() const {
  int64_t total = 0;
  for (const Step& s : steps_)
    total += static_cast<int64_t>(sizeof(float) * (s.inp.size() + s.dout.size()));
  return total;
}

DeferWeightGradients::DeferWeightGradients(DeferredWeightGradients& queue) {
  if (open_queue != nullptr)
    throw std::logic_error("DeferWeightGradients: a scope is already open on this thread");
  open_queue = &queue;
}

DeferWeightGradients::~DeferWeightGradients() { open_queue = nullptr; }

DeferredWeightGradients* deferred_weight_gradients() { return open_queue; }

}  // namespace hg
