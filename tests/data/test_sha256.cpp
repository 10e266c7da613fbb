#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "data/sha256.h"

namespace hg {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, MillionAInPiecesOfEverySize) {
  const std::string a(1000000, 'a');
  Sha256 sha;
  size_t done = 0;
  for (size_t piece = 1; done < a.size(); piece = piece % 131 + 1) {
    size_t take = std::min(piece, a.size() - done);
    sha.update(a.data() + done, take);
    done += take;
  }
  EXPECT_EQ(sha.finish_hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(sha256_hex(a.data(), a.size()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// prep stamps shards with the incremental digest and tests recompute it with the one-shot one:
// the two paths must agree, including on an empty update and on a moved-from digest's target.
TEST(Sha256, IncrementalMatchesOneShotAfterMove) {
  const std::string text = "hourglass prep stamps every shard with this digest";
  Sha256 first;
  first.update(text.data(), 10);
  first.update(text.data(), 0);
  Sha256 moved = std::move(first);
  moved.update(text.data() + 10, text.size() - 10);
  EXPECT_EQ(moved.finish_hex(), sha256_hex(text.data(), text.size()));
}

}  // namespace
}  // namespace hg
