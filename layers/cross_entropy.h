// The head's loss: CrossEntropy(logits[t], target[t]) in nats, computed stably (max-shifted,
// log-sum-exp in double per row).
#pragma once
#include <cstdint>
#include <string>

#include "core/error.h"

namespace hg {

// Throws UsageError naming the first target outside [0, V). Every backend validates on the host
// (targets are host arrays, backend.h), before any kernel: an exception must not leave an OpenMP
// region, and a device kernel could only report it through a synchronisation.
inline void check_targets_in_vocabulary(const int32_t* targets, int64_t rows, int V) {
  for (int64_t r = 0; r < rows; ++r)
    require(targets[r] >= 0 && targets[r] < V,
            "cross_entropy: target " + std::to_string(targets[r]) + " at row " + std::to_string(r) +
                " outside the vocabulary [0, " + std::to_string(V) + ")");
}

// logits [rows, V], targets [rows] -> losses [rows] (=).
void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                           int V);
// dlogits [rows, V] (=) = scale · (softmax(logits) - onehot(target)); scale = 1/(tokens in step).
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int V);

}  // namespace hg
