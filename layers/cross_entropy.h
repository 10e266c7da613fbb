// The head's loss: CrossEntropy(logits[t], target[t]) in nats, computed stably (max-shifted,
// log-sum-exp in double per row).
#pragma once
#include <cstdint>

namespace hg {

// logits [rows, V], targets [rows] -> losses [rows] (=).
void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                           int64_t rows, int V);
// dlogits [rows, V] (=) = scale · (softmax(logits) - onehot(target)); scale = 1/(tokens in step).
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int V);

}  // namespace hg
