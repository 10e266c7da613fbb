#include "data/sha256.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace hg {
namespace {

// libcrypto reports failure (out of memory, a FIPS provider refusing SHA-256) by return value;
// a digest that silently stayed unfinished would stamp shards with a wrong sha256.
void check(int ok, const char* call) {
  if (ok != 1) throw std::runtime_error(std::string("SHA-256: OpenSSL ") + call + " failed");
}

std::string to_hex(const uint8_t* bytes, size_t size) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * size);
  for (size_t i = 0; i < size; ++i) {
    hex += digits[bytes[i] >> 4];
    hex += digits[bytes[i] & 15];
  }
  return hex;
}

}  // namespace

void Sha256::FreeContext::operator()(evp_md_ctx_st* context) const { EVP_MD_CTX_free(context); }

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  if (!context_) throw std::runtime_error("SHA-256: OpenSSL EVP_MD_CTX_new failed");
  check(EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, size_t size) {
  check(EVP_DigestUpdate(context_.get(), data, size), "EVP_DigestUpdate");
}

std::array<uint8_t, 32> Sha256::finish() {
  std::array<uint8_t, 32> digest;
  unsigned int length = 0;
  check(EVP_DigestFinal_ex(context_.get(), digest.data(), &length), "EVP_DigestFinal_ex");
  if (length != digest.size()) throw std::logic_error("SHA-256: digest is not 32 bytes");
  return digest;
}

std::string Sha256::finish_hex() {
  std::array<uint8_t, 32> digest = finish();
  return to_hex(digest.data(), digest.size());
}

std::string sha256_hex(const void* data, size_t size) {
  std::array<uint8_t, 32> digest;
  unsigned int length = 0;
  check(EVP_Digest(data, size, digest.data(), &length, EVP_sha256(), nullptr), "EVP_Digest");
  if (length != digest.size()) throw std::logic_error("SHA-256: digest is not 32 bytes");
  return to_hex(digest.data(), digest.size());
}

}  // namespace hg
