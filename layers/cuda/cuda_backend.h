// The CUDA backend (layers/backend.h's interface on Device::Cuda memory): the kernels of
// layers/cuda/*.cu and cuBLAS. COMPILED, NOT RUN: no machine of this project has a GPU, so
// tests/layers reports every CUDA instance skipped here and nothing behind this has executed.
//
// One backend per process, on the current device and the legacy default stream: every op is
// queued in call order, and the sums (and token staging) synchronise as their contracts say. Its
// workspaces (scratch slots, the FFN's hidden gradient, the staged token ids) are ONE set per
// backend, i.e. per stream, not per host thread as on the CPU: call it from one host thread.
#pragma once
#include <string>

#include "layers/backend.h"

namespace hg {

// The process's CUDA backend, made (and Device::Cuda memory registered) on first use. Only call
// it when cuda_unavailable_reason() is empty.
Backend& cuda_backend();
// "" when a CUDA device is usable here; otherwise why ("no CUDA device: <CUDA error string>").
std::string cuda_unavailable_reason();

}  // namespace hg
