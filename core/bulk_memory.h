// memcpy and memset to zero of host buffers, spread over the rank's threads when large: a step
// copies and zeroes tens of MiB (sublayer inputs kept for the backward, fresh gradient tensors),
// and on one thread the others only wait. The CPU device memory (core/device.cpp) and
// Backend::copy use them.
#pragma once
#include <cstdint>

namespace hg {

void copy_bytes(void* dst, const void* src, int64_t bytes);
void zero_bytes(void* dst, int64_t bytes);

}  // namespace hg
