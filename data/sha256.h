// SHA-256 (FIPS 180-4), small and dependency-free: `hourglass prep` stores the digest of its input
// stream in every shard so that a dataset can be traced back to the exact bytes it came from.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace hg {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  // The digest of everything passed to update(); the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();
  // finish() as 64 lower-case hex digits.
  std::string finish_hex();

 private:
  void compress(const uint8_t* block);  // one 64-byte block into state_

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_;  // a partial block
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Digest of one buffer as hex.
std::string sha256_hex(const void* data, size_t size);

}  // namespace hg
