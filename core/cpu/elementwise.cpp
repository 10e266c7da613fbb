#include "core/elementwise.h"

#include <cstring>

namespace hg {

// Small buffers stay on one thread: waking a team costs more than adding a few thousand floats.
static constexpr int64_t kParallelThreshold = 1 << 15;

void add_into(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void copy(float* out, const float* x, int64_t n) { copy_bytes(out, x, sizeof(float) * n); }

namespace {

// Buffers from 1 MiB on go in 256 KiB pieces (each a whole number of cache lines).
constexpr int64_t kBulkPiece = 256 << 10;
constexpr int64_t kBulkThreshold = 1 << 20;

template <class Piece>
void for_pieces(int64_t bytes, Piece&& piece) {
  const int64_t pieces = (bytes + kBulkPiece - 1) / kBulkPiece;
#pragma omp parallel for schedule(static) if (bytes >= kBulkThreshold)
  for (int64_t k = 0; k < pieces; ++k) {
    const int64_t offset = k * kBulkPiece;
    piece(offset, offset + kBulkPiece < bytes ? kBulkPiece : bytes - offset);
  }
}

}  // namespace

void copy_bytes(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  for_pieces(bytes, [&](int64_t offset, int64_t len) {
    std::memcpy(static_cast<char*>(dst) + offset, static_cast<const char*>(src) + offset, len);
  });
}

void zero_bytes(void* dst, int64_t bytes) {
  if (bytes <= 0) return;
  for_pieces(bytes, [&](int64_t offset, int64_t len) {
    std::memset(static_cast<char*>(dst) + offset, 0, len);
  });
}

void scale_inplace(float* y, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

double sum_squares(const float* x, int64_t n) {
  // Serial on purpose: the grad-norm must not depend on the thread count.
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

}  // namespace hg
