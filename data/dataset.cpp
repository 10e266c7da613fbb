#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>

#include "core/error.h"
#include "data/hdf5_util.h"
#include "data/shard_format.h"

namespace fs = std::filesystem;

namespace hg {

namespace {

// Raw-data chunk cache off: a training window (~1 KB) lands at random in ~1 MB chunks and is never
// reused, HDF5 reads uncached, unfiltered chunks straight from the file for just the requested
// elements, and the OS page cache already keeps hot shards in memory. A cache would only cost
// memory per open shard on every rank. (Measured in bench_data: 0, 1 and 4 MiB caches read
// random windows equally fast.)
constexpr size_t kChunkCacheBytes = 0;
// Small sieve buffer: HDF5 would otherwise stage each small direct read through a 64 KiB one.
constexpr size_t kSieveBufferBytes = 4096;

std::mutex& library_mutex() {
  static std::mutex mutex;
  return mutex;
}

bool library_is_threadsafe() {
  static const bool threadsafe = [] {
    hbool_t value = false;
    H5is_library_threadsafe(&value);
    return static_cast<bool>(value);
  }();
  return threadsafe;
}

const std::string kRerun = "re-create the dataset with `hourglass prep`";

void require_split_name(const std::string& split) {
  for (const char* name : kSplits) {
    if (split == name) return;
  }
  throw UsageError("unknown data split '" + split + "': use train, valid or test");
}

}  // namespace

struct TokenDataset::Shard {
  std::string path;
  h5::Handle file;
  h5::Handle dataset;
  int64_t length = 0;
};

TokenDataset::~TokenDataset() {
  std::unique_lock<std::mutex> lock(library_mutex(), std::defer_lock);
  if (!library_is_threadsafe()) lock.lock();
  shards_.clear();
}
TokenDataset::TokenDataset(TokenDataset&&) noexcept = default;
TokenDataset& TokenDataset::operator=(TokenDataset&&) noexcept = default;

std::vector<std::string> dataset_splits(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (fs::exists(dir, ec)) {
      throw UsageError("data directory '" + dir + "' is not a directory: give the directory that " +
                       "`hourglass prep --output` created");
    }
    throw UsageError("data directory '" + dir + "' does not exist: create it with " +
                     "`hourglass prep --input FILE... --output " + dir + "`");
  }
  std::vector<std::string> splits;
  for (const char* split : kSplits) {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (parse_shard_file_name(entry.path().filename().string(), split) >= 0) {
        splits.push_back(split);
        break;
      }
    }
  }
  return splits;
}

namespace {

// The constructor's phases, each a function so that its checks read in the order a user meets
// them: the file names first (no HDF5 needed), then each file's signature, its attributes, and
// its /tokens dataset. The order of the checks is part of the contract: the first problem found
// is the one reported, so it must not change.

// Shard number -> path of every shard of `split` in `dir`; throws when there are none or when a
// number in 0 .. count - 1 is missing (`present`: the splits that do have shards, for the message).
std::map<int64_t, std::string> list_shard_files(const std::string& dir, const std::string& split,
                                                const std::vector<std::string>& present) {
  std::map<int64_t, std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    int64_t shard = parse_shard_file_name(entry.path().filename().string(), split);
    if (shard >= 0) files[shard] = entry.path().string();
  }
  if (files.empty()) {
    std::string found = present.empty() ? "no shards at all" : "shards of";
    for (const auto& s : present) found += " " + s;
    throw UsageError(
        "data directory '" + dir + "' has no shards of split '" + split + "' (expected " +
        (fs::path(dir) / shard_file_name(split, 0)).string() + "; found " + found + "): " +
        (present.empty()
             ? "create the dataset with `hourglass prep --output " + dir + "`"
             : "prepare it with --valid-bytes / --test-bytes > 0, or pick another split"));
  }
  const int64_t count = static_cast<int64_t>(files.size());
  for (int64_t i = 0; i < count; ++i) {
    if (!files.count(i)) {
      throw UsageError("shard " + (fs::path(dir) / shard_file_name(split, i)).string() +
                       " is missing (" + std::to_string(count) + " shards of split '" + split +
                       "' found, numbered up to " + std::to_string(files.rbegin()->first) +
                       "): " + kRerun);
    }
  }
  return files;
}

// The shard opened read-only; a file without the HDF5 signature and one HDF5 cannot open get
// different messages, because their fixes differ (wrong file vs. damaged copy).
h5::Handle open_shard_file(const std::string& path, hid_t fapl) {
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) {
    h5::last_error();
    throw UsageError(path +
                     " is not an HDF5 file (no HDF5 signature; empty, truncated at its start, " +
                     "or another kind of file named like a shard): " + kRerun);
  }
  h5::Handle file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl));
  if (!file.valid()) {
    std::string why = h5::last_error();
    // This process may already hold the file open with locking on (HDF5 then refuses a second
    // open with other locking flags); the default access list shares that open file.
    file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!file.valid()) {
      h5::last_error();
      throw UsageError(path + " cannot be opened as HDF5 (" + why +
                       "): if it is truncated or damaged, " + "e.g. a copy that did not finish, " +
                       kRerun + " or copy it again");
    }
  }
  return file;
}

// What one shard's root attributes say, once checked against its own name and the set it is in.
struct ShardAttributes {
  int64_t vocab_size;
  std::string sha256;  // "" when absent
};

// Checks the attributes that each shard must carry on its own: format, version, vocabulary, and
// that it is shard `index` of `count` of `split`. `first_path` ("" for the first shard) only
// names the shard a version mismatch is measured against.
ShardAttributes check_shard_attributes(hid_t root, const std::string& path, const std::string& dir,
                                       const std::string& split, int64_t index, int64_t count,
                                       const std::string& first_path) {
  auto format = h5::read_string_attribute(root, "format");
  if (!format || *format != kTokenFormat) {
    throw UsageError(path + " is not an hourglass token shard (root attribute format is " +
                     (format ? "'" + *format + "'" : std::string("missing")) + ", expected '" +
                     kTokenFormat +
                     "'): only files written by `hourglass prep` belong in a data directory");
  }
  auto version = h5::read_int64_attribute(root, "version");
  if (!version || *version != kTokenFormatVersion) {
    throw UsageError(path + " has token-format version " +
                     (version ? std::to_string(*version) : "(missing)") +
                     ", but this hourglass reads version " + std::to_string(kTokenFormatVersion) +
                     (first_path.empty() ? "" : " (as " + first_path + " has)") + ": " + kRerun +
                     " from the original input with this build");
  }
  auto vocab = h5::read_int64_attribute(root, "vocab_size");
  if (!vocab || *vocab < 1 || *vocab > 65536) {
    throw UsageError(path + " has no valid vocab_size attribute (" +
                     (vocab ? std::to_string(*vocab) : "missing") + "): " + kRerun);
  }
  auto split_attr = h5::read_string_attribute(root, "split");
  auto shard_attr = h5::read_int64_attribute(root, "shard");
  auto num_shards = h5::read_int64_attribute(root, "num_shards");
  if (!split_attr || *split_attr != split || !shard_attr || *shard_attr != index) {
    throw UsageError(path + " says it is shard " +
                     (shard_attr ? std::to_string(*shard_attr) : "?") + " of split '" +
                     (split_attr ? *split_attr : "?") + "', not shard " + std::to_string(index) +
                     " of '" + split + "' as its name says: shard files were renamed; " + kRerun);
  }
  if (!num_shards || *num_shards != count) {
    throw UsageError(path + " belongs to a set of " +
                     (num_shards ? std::to_string(*num_shards) : "?") + " shards of split '" +
                     split + "', but " + dir + " holds " + std::to_string(count) +
                     ": a shard is missing or left over from another run; " + kRerun);
  }
  return {*vocab, h5::read_string_attribute(root, "sha256").value_or("")};
}

// A shard's /tokens dataset, open, with its token width in bytes and its length.
struct TokenArray {
  h5::Handle dataset;
  int token_bytes;
  int64_t length;
};

// Opens /tokens and checks its shape and type: 1-D unsigned integers of 1 or 2 bytes. The
// existence test comes first, under its own QuietErrors, so that a shard without /tokens gets a
// plain message rather than HDF5's error stack.
TokenArray open_token_array(hid_t root, const std::string& path, hid_t dapl) {
  {
    h5::QuietErrors quiet_open;
    if (H5Lexists(root, kTokenDataset, H5P_DEFAULT) <= 0) {
      h5::last_error();
      throw UsageError(path + " has no /" + kTokenDataset + " dataset: " + kRerun);
    }
  }
  h5::Handle dataset = h5::dataset(H5Dopen2(root, kTokenDataset, dapl));
  if (!dataset.valid()) {
    throw UsageError(path + ": cannot open /" + kTokenDataset + " (" + h5::last_error() +
                     "): " + kRerun);
  }
  h5::Handle space = h5::space(H5Dget_space(dataset.get()));
  h5::Handle type = h5::type(H5Dget_type(dataset.get()));
  hsize_t dims[1] = {0};
  if (H5Sget_simple_extent_ndims(space.get()) != 1 || H5Tget_class(type.get()) != H5T_INTEGER ||
      H5Tget_sign(type.get()) != H5T_SGN_NONE ||
      (H5Tget_size(type.get()) != 1 && H5Tget_size(type.get()) != 2)) {
    throw UsageError(path + ": /" + kTokenDataset +
                     " is not a 1-D uint8 or uint16 dataset: " + kRerun);
  }
  const std::string missing = h5::missing_data(dataset.get());
  if (!missing.empty())
    throw UsageError(path + ": /" + kTokenDataset + missing +
                     ": the shard is truncated or damaged; " + kRerun);
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  int bytes = static_cast<int>(H5Tget_size(type.get()));
  return {std::move(dataset), bytes, static_cast<int64_t>(dims[0])};
}

// A shard's token width must be the first shard's (`first_path` "" for the first shard itself)
// and wide enough for every id of its vocabulary.
void check_token_width(const std::string& path, int token_bytes, const std::string& first_path,
                       int first_token_bytes, int vocab_size) {
  if (!first_path.empty() && token_bytes != first_token_bytes) {
    throw UsageError(path + " stores " + std::to_string(8 * token_bytes) + "-bit tokens but " +
                     first_path + " stores " + std::to_string(8 * first_token_bytes) +
                     "-bit ones: " + kRerun);
  }
  if (token_bytes == 1 && vocab_size > 256) {
    throw UsageError(path + " stores uint8 tokens but declares vocab_size " +
                     std::to_string(vocab_size) + ": " + kRerun);
  }
}

// The access property lists every shard is opened with: file locking off (many readers, see
// dataset.h), a small sieve buffer and no chunk cache (see kSieveBufferBytes, kChunkCacheBytes).
struct ShardAccess {
  h5::Handle file;
  h5::Handle dataset;
};

ShardAccess shard_access() {
  ShardAccess access{h5::file_access(/*locking=*/false), h5::plist(H5Pcreate(H5P_DATASET_ACCESS))};
  h5::check(H5Pset_sieve_buf_size(access.file.get(), kSieveBufferBytes), "set sieve buffer size");
  h5::check(H5Pset_chunk_cache(access.dataset.get(), H5D_CHUNK_CACHE_NSLOTS_DEFAULT,
                               kChunkCacheBytes, 1.0),
            "set chunk cache");
  return access;
}

}  // namespace

TokenDataset::TokenDataset(const std::string& dir, const std::string& split)
    : dir_(dir), split_(split) {
  require_split_name(split);
  std::vector<std::string> present = dataset_splits(dir);
  const std::map<int64_t, std::string> files = list_shard_files(dir, split, present);
  const int64_t count = static_cast<int64_t>(files.size());

  std::unique_lock<std::mutex> lock(library_mutex(), std::defer_lock);
  if (!library_is_threadsafe()) lock.lock();
  h5::QuietErrors quiet;
  const ShardAccess access = shard_access();

  // The first shard sets what the split is (vocabulary, prep run, token width, sources); every
  // later one must agree with it, and the messages name the first as the one it differs from.
  std::string first_path;
  shard_starts_.push_back(0);
  for (const auto& [index, path] : files) {
    auto shard = std::make_unique<Shard>();
    shard->path = path;
    shard->file = open_shard_file(path, access.file.get());
    hid_t root = shard->file.get();
    ShardAttributes attributes =
        check_shard_attributes(root, path, dir, split, index, count, first_path);
    if (first_path.empty()) {
      vocab_size_ = static_cast<int>(attributes.vocab_size);
      sha256_ = attributes.sha256;
      sources_ =
          h5::read_string_list_attribute(root, "sources").value_or(std::vector<std::string>{});
      source_bytes_ =
          h5::read_int64_list_attribute(root, "source_bytes").value_or(std::vector<int64_t>{});
    } else if (attributes.vocab_size != vocab_size_) {
      throw UsageError(path + " has vocab_size " + std::to_string(attributes.vocab_size) + " but " +
                       first_path + " has " + std::to_string(vocab_size_) +
                       ": shards of different vocabularies cannot be mixed; " + kRerun);
    } else if (attributes.sha256 != sha256_) {
      throw UsageError(path + " comes from a different prep run than " + first_path +
                       " (their input sha256 attributes differ): shards of different datasets "
                       "cannot be mixed; " +
                       kRerun);
    }
    TokenArray tokens = open_token_array(root, path, access.dataset.get());
    shard->dataset = std::move(tokens.dataset);
    check_token_width(path, tokens.token_bytes, first_path, token_bytes_, vocab_size_);
    if (first_path.empty()) token_bytes_ = tokens.token_bytes;
    if (tokens.length == 0) throw UsageError(path + " holds no tokens: " + kRerun);
    shard->length = tokens.length;
    shard_starts_.push_back(shard_starts_.back() + shard->length);
    if (first_path.empty()) first_path = path;
    shards_.push_back(std::move(shard));
  }
  num_tokens_ = shard_starts_.back();
}

std::string TokenDataset::shard_path(int shard) const { return shards_.at(shard)->path; }

TokenDataset::Location TokenDataset::locate(int64_t offset) const {
  if (offset < 0 || offset >= num_tokens_) {
    throw std::out_of_range("token offset " + std::to_string(offset) + " outside split '" + split_ +
                            "' of " + std::to_string(num_tokens_) + " tokens");
  }
  auto next = std::upper_bound(shard_starts_.begin(), shard_starts_.end(), offset);
  int shard = static_cast<int>(next - shard_starts_.begin()) - 1;
  return {shard, offset - shard_starts_[shard]};
}

void TokenDataset::read(int64_t offset, int64_t count, int32_t* out) const {
  if (count == 0) return;
  if (offset < 0 || count < 0 || offset > num_tokens_ - count) {
    throw std::out_of_range("tokens [" + std::to_string(offset) + ", " +
                            std::to_string(offset + count) + ") outside split '" + split_ +
                            "' of " + dir_ + " (" + std::to_string(num_tokens_) + " tokens)");
  }
  // Tokens land in their stored width first (no HDF5 type conversion on the read path), then
  // widen here, checking ids against the vocabulary on the way: cheap next to the read itself.
  thread_local std::vector<uint16_t> staging;  // uint8 tokens use its first `count` bytes
  staging.resize(static_cast<size_t>(count));
  const hid_t memory_type = token_bytes_ == 1 ? H5T_NATIVE_UINT8 : H5T_NATIVE_UINT16;
  const bool check_ids = vocab_size_ < (token_bytes_ == 1 ? 256 : 65536);

  std::unique_lock<std::mutex> lock(library_mutex(), std::defer_lock);
  if (!library_is_threadsafe()) lock.lock();
  h5::QuietErrors quiet;
  int64_t done = 0;
  while (done < count) {
    Location at = locate(offset + done);
    const Shard& shard = *shards_[at.shard];
    int64_t n = std::min(count - done, shard.length - at.offset);
    hsize_t shard_dims[1] = {static_cast<hsize_t>(shard.length)};
    hsize_t start[1] = {static_cast<hsize_t>(at.offset)};
    hsize_t block[1] = {static_cast<hsize_t>(n)};
    h5::Handle file_space = h5::space(H5Screate_simple(1, shard_dims, nullptr));
    h5::Handle memory_space = h5::space(H5Screate_simple(1, block, nullptr));
    h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, block, nullptr),
              "select tokens in " + shard.path);
    void* staged = token_bytes_ == 1
                       ? static_cast<void*>(reinterpret_cast<uint8_t*>(staging.data()) + done)
                       : static_cast<void*>(staging.data() + done);
    // The shard's metadata passed every check at open, so a read that fails found its chunk
    // index or data damaged (tests/fuzz/fuzz_file_bytes): bad input, like a token id out of range.
    if (H5Dread(shard.dataset.get(), memory_type, memory_space.get(), file_space.get(), H5P_DEFAULT,
                staged) < 0) {
      throw UsageError("reading tokens [" + std::to_string(at.offset) + ", " +
                       std::to_string(at.offset + n) + ") of " + shard.path +
                       " failed (HDF5: " + h5::last_error() + "): the shard is damaged; " + kRerun +
                       " or copy it again");
    }
    done += n;
  }
  if (token_bytes_ == 1) {
    const auto* narrow = reinterpret_cast<const uint8_t*>(staging.data());
    for (int64_t i = 0; i < count; ++i) out[i] = narrow[i];
  } else {
    for (int64_t i = 0; i < count; ++i) out[i] = staging[i];
  }
  if (staging.capacity() > (size_t{1} << 24))
    staging = {};  // a whole-split read keeps no 32 MB per thread
  if (check_ids) {
    for (int64_t i = 0; i < count; ++i) {
      if (out[i] >= vocab_size_) {
        Location at = locate(offset + i);
        throw UsageError(shards_[at.shard]->path + " holds token id " + std::to_string(out[i]) +
                         " at offset " + std::to_string(at.offset) + ", not below its vocab_size " +
                         std::to_string(vocab_size_) +
                         ": the shard is damaged or its attributes were edited; " + kRerun);
      }
    }
  }
}

void require_vocabulary_fits(const TokenDataset& data, const std::string& data_name,
                             int model_vocab, const std::string& model_name,
                             const std::string& fix) {
  require(data.vocab_size() <= model_vocab,
          data_name + " has vocabulary " + std::to_string(data.vocab_size()) + " but " +
              model_name + " is " + std::to_string(model_vocab) + ": token ids from " +
              std::to_string(model_vocab) + " up have no embedding row; " + fix);
}

}  // namespace hg
