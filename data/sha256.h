// SHA-256 by OpenSSL's libcrypto (EVP): `hourglass prep` stores the digest of its input stream in
// every shard so that a dataset can be traced back to the exact bytes it came from. A thin wrapper,
// so that the rest of hourglass neither includes OpenSSL headers nor handles its contexts.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace hg {

// Incremental digest, for a stream that arrives in blocks (prep reads its inputs 4 MB at a time).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  // The digest of everything passed to update(); the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();
  // finish() as 64 lower-case hex digits.
  std::string finish_hex();

 private:
  struct FreeContext {
    void operator()(evp_md_ctx_st* context) const;
  };
  std::unique_ptr<evp_md_ctx_st, FreeContext> context_;
};

// Digest of one buffer as hex (EVP_Digest in one call).
std::string sha256_hex(const void* data, size_t size);

}  // namespace hg
