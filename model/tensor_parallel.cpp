#include "model/tensor_parallel.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>

#include "parallel/grid.h"

namespace hg {

namespace {

std::atomic<double> g_allreduce_seconds{0.0};
std::atomic<double> g_allreduce_cpu_seconds{0.0};

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void accumulate(std::atomic<double>& total, double seconds) {
  double now = total.load();
  while (!total.compare_exchange_weak(now, now + seconds)) {
  }
}

// The canonical tensor as [outer, along, inner] around `axis`.
struct Split3 {
  int64_t outer = 1, along = 1, inner = 1;
};
Split3 split_at(const Shape& shape, int axis) {
  Split3 s;
  for (int a = 0; a < static_cast<int>(shape.size()); ++a) {
    if (a < axis)
      s.outer *= shape[a];
    else if (a == axis)
      s.along = shape[a];
    else
      s.inner *= shape[a];
  }
  return s;
}

}  // namespace

TensorParallel make_tensor_parallel(const ProcessGrid& grid, const GridCommunicators& comms,
                                    const NestedGranularities& nested) {
  TensorParallel tp;
  tp.rank = grid.tp_rank();
  tp.size = grid.tp();
  tp.comm = comms.tp;
  tp.mpi_comm = grid.tp_comm();
  tp.nested = nested;
  return tp;
}

void tp_allreduce(const TensorParallel& tp, float* data, int64_t count) {
  if (!tp.active()) return;
  const double t0 = MPI_Wtime(), c0 = thread_cpu_seconds();
  tp.comm->allreduce_sum(data, count, "tensor-parallel all-reduce");  // data on tp.comm->memory()
  accumulate(g_allreduce_seconds, MPI_Wtime() - t0);
  accumulate(g_allreduce_cpu_seconds, thread_cpu_seconds() - c0);
}

double tp_allreduce_seconds() { return g_allreduce_seconds.load(); }
double tp_allreduce_cpu_seconds() { return g_allreduce_cpu_seconds.load(); }

std::vector<int> nested_band_boundaries(int total, const std::vector<int>& granularities) {
  std::set<int> widths = {total};
  for (int g : granularities) widths.insert(total / g);
  widths.erase(0);
  return {widths.begin(), widths.end()};
}

namespace {

// Why tp cannot split `total` units nested at `granularities` (each band evenly), or "".
// `band` names the bands ("FFN width", "head"), `units` what they hold ("units", "heads").
std::string band_problem(int total, const std::vector<int>& granularities, int tp,
                         const std::string& band_name, const std::string& units,
                         const std::string& fix) {
  const std::vector<int> widths = nested_band_boundaries(total, granularities);
  for (size_t i = widths.size(); i-- > 0;) {  // widest first
    const int band = widths[i] - (i > 0 ? widths[i - 1] : 0);
    if (band % tp != 0)
      return "must divide every MatFormer " + band_name + " band (width " +
             std::to_string(widths[i]) + " leaves " + std::to_string(band) + " " + units +
             " above the next nested width); change " + fix + " or tp";
  }
  return "";
}

}  // namespace

std::string tensor_parallel_problem(const ModelConfig& m, const NestedGranularities& nested,
                                    int tp) {
  if (tp < 1) return "must be at least 1";
  if (m.heads % tp != 0)
    return "must divide model.heads = " + std::to_string(m.heads) +
           " (heads are split across tensor-parallel ranks)";
  if (m.ffn % tp != 0)
    return "must divide model.ffn = " + std::to_string(m.ffn) +
           " (FFN hidden units are split across tensor-parallel ranks)";
  const SubmodelWidths stored = full_widths(m);
  for (int F : std::set<int>(stored.ffn.begin(), stored.ffn.end())) {
    std::string problem =
        band_problem(F, nested.ffn, tp, "FFN width", "units", "model.ffn, model.ffn_granularities");
    if (!problem.empty()) return problem;
  }
  for (int H : std::set<int>(stored.heads.begin(), stored.heads.end())) {
    std::string problem =
        band_problem(H, nested.heads, tp, "head", "heads", "model.heads, model.head_granularities");
    if (!problem.empty()) return problem;
  }
  return "";
}

std::vector<int64_t> nested_units(const TensorParallel& tp, int total,
                                  const std::vector<int>& granularities) {
  std::vector<int64_t> units;
  int lo = 0;
  for (int hi : nested_band_boundaries(total, granularities)) {
    const int band = hi - lo;
    if (band % tp.size != 0)
      throw std::logic_error("nested band [" + std::to_string(lo) + ", " + std::to_string(hi) +
                             ") does not split over " + std::to_string(tp.size) + " ranks");
    const int share = band / tp.size;
    for (int u = 0; u < share; ++u) units.push_back(lo + tp.rank * share + u);
    lo = hi;
  }
  return units;
}

int local_nested_width(const TensorParallel& tp, int total, const std::vector<int>& granularities,
                       int width) {
  if (!tp.active()) return width;
  int lo = 0, local = 0;
  for (int hi : nested_band_boundaries(total, granularities)) {
    if (hi > width) break;
    local += (hi - lo) / tp.size;
    lo = hi;
  }
  if (lo != width)
    throw std::logic_error("width " + std::to_string(width) +
                           " is not a band boundary of the tensor-parallel layout (of " +
                           std::to_string(total) + ")");
  return local;
}

std::vector<int64_t> head_columns(const TensorParallel& tp, int heads, int width,
                                  const std::vector<int>& granularities) {
  std::vector<int64_t> cols;
  for (int64_t head : nested_units(tp, heads, granularities))
    for (int c = 0; c < width; ++c) cols.push_back(head * width + c);
  return cols;
}

Shape local_shape(const Shape& canonical, const ParamSlice& slice) {
  Shape local = canonical;
  if (slice.sharded()) local.at(slice.axis) = static_cast<int64_t>(slice.index.size());
  return local;
}

int64_t canonical_offset(const Shape& canonical, const ParamSlice& slice, int64_t i) {
  if (!slice.sharded()) return i;
  const Split3 c = split_at(canonical, slice.axis);
  const int64_t along_local = static_cast<int64_t>(slice.index.size());
  const int64_t in = i % c.inner, a = (i / c.inner) % along_local, o = i / (c.inner * along_local);
  return (o * c.along + slice.index[a]) * c.inner + in;
}

void take_slice(float* local, const Tensor& canonical, const ParamSlice& slice) {
  if (!slice.sharded()) {
    std::memcpy(local, canonical.data(), sizeof(float) * canonical.numel());
    return;
  }
  const Split3 c = split_at(canonical.shape(), slice.axis);
  const int64_t n = static_cast<int64_t>(slice.index.size());
  for (int64_t o = 0; o < c.outer; ++o)
    for (int64_t a = 0; a < n; ++a)
      std::memcpy(local + (o * n + a) * c.inner,
                  canonical.data() + (o * c.along + slice.index[a]) * c.inner,
                  sizeof(float) * c.inner);
}

void put_slice(Tensor& canonical, const float* local, const ParamSlice& slice) {
  if (!slice.sharded()) {
    std::memcpy(canonical.data(), local, sizeof(float) * canonical.numel());
    return;
  }
  const Split3 c = split_at(canonical.shape(), slice.axis);
  const int64_t n = static_cast<int64_t>(slice.index.size());
  for (int64_t o = 0; o < c.outer; ++o)
    for (int64_t a = 0; a < n; ++a)
      std::memcpy(canonical.data() + (o * c.along + slice.index[a]) * c.inner,
                  local + (o * n + a) * c.inner, sizeof(float) * c.inner);
}

}  // namespace hg
