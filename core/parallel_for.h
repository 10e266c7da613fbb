// Threading inside a rank: layers use these instead of OpenMP pragmas, so that the threading
// model lives in one place. Static schedules keep results bit-identical run to run (each index's
// work is done the same way whatever the thread count; reductions are never split across threads).
#pragma once
#include <cstdint>

namespace hg {

int num_threads();
void set_num_threads(int n);

// Calls body(i) for i in [0, n), spread over the rank's threads.
template <class Body>
void parallel_for(int64_t n, Body&& body) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

// Same, but with dynamic scheduling for uneven work (causal attention rows).
template <class Body>
void parallel_for_dynamic(int64_t n, Body&& body) {
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) body(i);
}

}  // namespace hg
