#include "core/bulk_memory.h"

#include <cstring>

namespace hg {

namespace {

// Buffers from 1 MiB on go in 256 KiB pieces (each a whole number of cache lines).
constexpr int64_t kBulkPiece = 256 << 10;
constexpr int64_t kBulkThreshold = 1 << 20;

template <class Piece>
void for_pieces(int64_t bytes, Piece&& piece) {
  const int64_t pieces = (bytes + kBulkPiece - 1) / kBulkPiece;
  const bool threaded = bytes >= kBulkThreshold;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (threaded)
#else
  (void)threaded;  // the fuzzing build (tests/fuzz) has no OpenMP: one thread there
#endif
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

}  // namespace hg
