#include "data/prep.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "core/error.h"
#include "data/hdf5_util.h"
#include "data/sha256.h"
#include "data/shard_format.h"

namespace fs = std::filesystem;

namespace hg {

namespace {

// Largest chunk of /tokens. Readers fetch ~1 KB windows straight from the file (their chunk
// cache is off), so big chunks cost them nothing and keep the chunk index tiny.
constexpr int64_t kChunkTokens = int64_t{1} << 20;
constexpr size_t kReadBlockBytes = size_t{4} << 20;  // even: u16 tokens never straddle blocks

int64_t parse_count(const std::string& flag, const std::string& text, int64_t minimum) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < minimum) {
    throw UsageError("" + flag + " expects an integer >= " + std::to_string(minimum) + ", got '" +
                     text + "'");
  }
  return value;
}

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

// Progress on stderr: a redrawn bar on a terminal, a line every few seconds in a log file.
class Progress {
 public:
  Progress(bool enabled, std::string label, int64_t total_bytes)
      : enabled_(enabled),
        label_(std::move(label)),
        total_(std::max<int64_t>(total_bytes, 1)),
        tty_(isatty(fileno(stderr)) != 0),
        start_(Clock::now()),
        last_(start_) {}

  void advance(int64_t bytes) {
    done_ += bytes;
    if (!enabled_) return;
    auto now = Clock::now();
    double since = std::chrono::duration<double>(now - last_).count();
    if (since < (tty_ ? 0.2 : 5.0)) return;
    last_ = now;
    print(false);
  }

  void finish() {
    if (enabled_) print(true);
  }

 private:
  using Clock = std::chrono::steady_clock;

  void print(bool final_line) {
    double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    double fraction = static_cast<double>(done_) / static_cast<double>(total_);
    double rate = seconds > 0 ? static_cast<double>(done_) / 1e6 / seconds : 0.0;
    constexpr int kWidth = 30;
    int filled = static_cast<int>(fraction * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "%s%s [%s] %3.0f%% %.1f/%.1f MB %.1f MB/s%s", tty_ ? "\r" : "",
                 label_.c_str(), bar.c_str(), 100.0 * fraction, static_cast<double>(done_) / 1e6,
                 static_cast<double>(total_) / 1e6, rate, (final_line || !tty_) ? "\n" : "");
    std::fflush(stderr);
  }

  bool enabled_;
  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  bool tty_;
  Clock::time_point start_;
  Clock::time_point last_;
};

struct Input {
  fs::path path;
  int64_t bytes = 0;
};

// Reads the inputs in order as one byte stream, remembering where each block came from.
class InputStream {
 public:
  explicit InputStream(const std::vector<Input>& inputs) : inputs_(inputs) {}
  ~InputStream() {
    if (file_ != nullptr) std::fclose(file_);
  }

  // Up to `capacity` bytes from the current input (never spanning two inputs); 0 at the end.
  size_t read(uint8_t* buffer, size_t capacity) {
    while (true) {
      if (index_ >= inputs_.size()) return 0;
      const Input& input = inputs_[index_];
      if (file_ == nullptr) {
        file_ = std::fopen(input.path.c_str(), "rb");
        if (file_ == nullptr) {
          throw UsageError("cannot read input " + quoted(input.path) + ": " + std::strerror(errno));
        }
        offset_ = 0;
      }
      size_t want = static_cast<size_t>(
          std::min<int64_t>(static_cast<int64_t>(capacity), input.bytes - offset_));
      size_t got = want > 0 ? std::fread(buffer, 1, want, file_) : 0;
      if (got < want) {
        throw std::runtime_error("input " + quoted(input.path) + " ended after " +
                                 std::to_string(offset_ + static_cast<int64_t>(got)) + " of " +
                                 std::to_string(input.bytes) +
                                 " bytes: it changed while being read");
      }
      block_offset_ = offset_;
      offset_ += static_cast<int64_t>(got);
      if (got > 0) return got;
      std::fclose(file_);
      file_ = nullptr;
      ++index_;
    }
  }

  // The input and byte offset within it of the last block returned by read().
  const fs::path& block_path() const { return inputs_[index_].path; }
  int64_t block_offset() const { return block_offset_; }

 private:
  const std::vector<Input>& inputs_;
  size_t index_ = 0;
  std::FILE* file_ = nullptr;
  int64_t offset_ = 0;
  int64_t block_offset_ = 0;
};

// Removes a directory tree on scope exit unless released: no partial output after a failure.
class TempDirectory {
 public:
  explicit TempDirectory(fs::path path) : path_(std::move(path)) {}
  ~TempDirectory() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  const fs::path& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

fs::path make_temp_directory(const fs::path& parent, const std::string& stem) {
  std::string pattern = (parent / ("." + stem + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw UsageError("cannot create a temporary directory in " + quoted(parent) + ": " +
                     std::strerror(errno) + " (the output's parent directory must be writable)");
  }
  return pattern;
}

// Writes the shards of the three splits in stream order.
class ShardWriter {
 public:
  ShardWriter(fs::path dir, std::array<int64_t, 3> split_tokens, int64_t shard_tokens,
              int token_bytes, int64_t vocab_size, std::vector<std::string> sources,
              std::vector<int64_t> source_bytes)
      : dir_(std::move(dir)),
        split_tokens_(split_tokens),
        shard_tokens_(shard_tokens),
        token_bytes_(token_bytes),
        vocab_size_(vocab_size),
        sources_(std::move(sources)),
        source_bytes_(std::move(source_bytes)),
        fapl_(h5::file_access(/*locking=*/true)) {}

  int64_t num_shards(int split) const {
    return (split_tokens_[split] + shard_tokens_ - 1) / shard_tokens_;
  }

  // Appends n tokens in the stored width (uint8 or uint16).
  void append(const void* tokens, int64_t n) {
    const auto* bytes = static_cast<const uint8_t*>(tokens);
    while (n > 0) {
      if (!dataset_.valid() || shard_written_ == shard_length_) open_next();
      int64_t take = std::min(n, shard_length_ - shard_written_);
      hsize_t dims[1] = {static_cast<hsize_t>(shard_length_)};
      hsize_t start[1] = {static_cast<hsize_t>(shard_written_)};
      hsize_t block[1] = {static_cast<hsize_t>(take)};
      h5::Handle file_space = h5::space(H5Screate_simple(1, dims, nullptr));
      h5::Handle memory_space = h5::space(H5Screate_simple(1, block, nullptr));
      h5::check(
          H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, block, nullptr),
          "select");
      h5::check(H5Dwrite(dataset_.get(), token_bytes_ == 1 ? H5T_NATIVE_UINT8 : H5T_NATIVE_UINT16,
                         memory_space.get(), file_space.get(), H5P_DEFAULT, bytes),
                "write tokens to " + current_path_.string());
      shard_written_ += take;
      bytes += take * token_bytes_;
      n -= take;
    }
  }

  // Closes the last shard and stamps every shard with the digest of the whole input.
  void finish(const std::string& sha256) {
    close_current();
    for (const auto& path : paths_) {
      h5::Handle file = h5::file(h5::check_id(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl_.get()),
                                              "reopen " + path.string()));
      h5::write_string_attribute(file.get(), "sha256", sha256);
      h5::check(H5Fclose(file.release()), "close " + path.string());
    }
  }

  const std::vector<fs::path>& paths() const { return paths_; }

 private:
  void close_current() {
    dataset_.reset();
    // Closing flushes the shard: its failure (a full disk) must surface, so it is checked here.
    if (file_.valid()) h5::check(H5Fclose(file_.release()), "close " + current_path_.string());
  }

  void open_next() {
    close_current();
    if (split_ >= 0 && shard_ + 1 < num_shards(split_)) {
      ++shard_;
    } else {
      do {
        ++split_;
      } while (split_ < 3 && split_tokens_[split_] == 0);
      if (split_ >= 3) throw std::logic_error("more tokens than the splits hold");
      shard_ = 0;
    }
    shard_length_ = std::min(shard_tokens_, split_tokens_[split_] - shard_ * shard_tokens_);
    shard_written_ = 0;
    current_path_ = dir_ / shard_file_name(kSplits[split_], shard_);
    paths_.push_back(current_path_);

    file_ = h5::file(
        h5::check_id(H5Fcreate(current_path_.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl_.get()),
                     "create " + current_path_.string()));
    hid_t root = file_.get();
    h5::write_string_attribute(root, "format", kTokenFormat);
    h5::write_int64_attribute(root, "version", kTokenFormatVersion);
    h5::write_int64_attribute(root, "vocab_size", vocab_size_);
    h5::write_string_attribute(root, "split", kSplits[split_]);
    h5::write_int64_attribute(root, "shard", shard_);
    h5::write_int64_attribute(root, "num_shards", num_shards(split_));
    h5::write_string_list_attribute(root, "sources", sources_);
    h5::write_int64_list_attribute(root, "source_bytes", source_bytes_);

    hsize_t dims[1] = {static_cast<hsize_t>(shard_length_)};
    hsize_t chunk[1] = {static_cast<hsize_t>(std::min(shard_length_, kChunkTokens))};
    h5::Handle space = h5::space(H5Screate_simple(1, dims, nullptr));
    h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
    h5::check(H5Pset_chunk(dcpl.get(), 1, chunk), "set chunk");
    h5::check(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER),
              "set fill time");  // every token is written
    dataset_ = h5::dataset(h5::check_id(
        H5Dcreate2(root, kTokenDataset, token_bytes_ == 1 ? H5T_STD_U8LE : H5T_STD_U16LE,
                   space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
        "create /tokens in " + current_path_.string()));
  }

  fs::path dir_;
  std::array<int64_t, 3> split_tokens_;
  int64_t shard_tokens_;
  int token_bytes_;
  int64_t vocab_size_;
  std::vector<std::string> sources_;
  std::vector<int64_t> source_bytes_;
  h5::Handle fapl_;
  h5::Handle file_;
  h5::Handle dataset_;
  int split_ = -1;
  int64_t shard_ = 0;
  int64_t shard_length_ = 0;
  int64_t shard_written_ = 0;
  fs::path current_path_;
  std::vector<fs::path> paths_;
};

[[noreturn]] void bad_token(const InputStream& stream, int64_t index_in_block, int token_bytes,
                            int64_t id, int64_t vocab_size, bool vocab_given) {
  int64_t byte_offset = stream.block_offset() + index_in_block * token_bytes;
  throw UsageError("input " + quoted(stream.block_path()) + " holds token id " +
                   std::to_string(id) + " at byte offset " + std::to_string(byte_offset) +
                   ", not below the vocabulary size " + std::to_string(vocab_size) +
                   (vocab_given
                        ? ": pass a larger --vocab-size (or omit it to use the largest id + 1)"
                        : ": check --format"));
}

// A directory that --force may replace: empty, or holding only shard files.
void check_replaceable(const fs::path& output) {
  if (!fs::is_directory(output)) {
    throw UsageError("output " + quoted(output) +
                     " exists and is not a directory: --force only replaces a " +
                     "dataset directory; remove it yourself or choose another --output");
  }
  for (const auto& entry : fs::directory_iterator(output)) {
    std::string name = entry.path().filename().string();
    bool shard = false;
    for (const char* split : kSplits) shard = shard || parse_shard_file_name(name, split) >= 0;
    if (!shard || !entry.is_regular_file()) {
      throw UsageError("refusing to replace " + quoted(output) + " with --force: it holds " +
                       quoted(entry.path()) +
                       ", which hourglass prep did not write; remove it yourself or " +
                       "choose another --output");
    }
  }
}

// prep_dataset's phases. Each decides one thing and checks the options that bear on it, in the
// order a user meets them: the order of the checks is part of the contract (the first problem is
// the one reported), and nothing is written to disk until every check has passed.

// The inputs as given: present, readable files with whole tokens, in order.
std::vector<Input> check_inputs(const std::vector<std::string>& names, bool u16) {
  std::vector<Input> inputs;
  for (const auto& name : names) {
    std::error_code ec;
    fs::path path(name);
    auto status = fs::status(path, ec);
    if (!fs::exists(status)) throw UsageError("input " + quoted(path) + " does not exist");
    if (fs::is_directory(status)) {
      throw UsageError("input " + quoted(path) + " is a directory: give the files inside it");
    }
    int64_t bytes = static_cast<int64_t>(fs::file_size(path, ec));
    if (ec) throw UsageError("cannot read input " + quoted(path) + ": " + ec.message());
    if (bytes == 0)
      throw UsageError("input " + quoted(path) + " is empty: there is nothing to tokenize");
    if (u16 && bytes % 2 != 0) {
      throw UsageError(
          "input " + quoted(path) + " has an odd number of bytes (" + std::to_string(bytes) +
          "), so it is not a file of little-endian uint16 token ids: use --format bytes for text");
    }
    // Opened once here so that an unreadable input fails before any output exists.
    if (std::FILE* probe = std::fopen(path.c_str(), "rb")) {
      std::fclose(probe);
    } else {
      throw UsageError("cannot read input " + quoted(path) + ": " + std::strerror(errno));
    }
    inputs.push_back({path, bytes});
  }
  return inputs;
}

struct OutputTarget {
  fs::path path;  // absolute and normalised, without a trailing separator
  bool replace;   // it exists and --force allows replacing it
};

// The output: absent, or a dataset directory that --force may replace; never one of the inputs
// or a directory above one (replacing it would delete the input being read).
OutputTarget check_output(const std::string& name, const std::vector<Input>& inputs, bool force) {
  fs::path output = fs::absolute(fs::path(name)).lexically_normal();
  if (!output.has_filename()) output = output.parent_path();
  for (const auto& input : inputs) {
    fs::path absolute = fs::absolute(input.path).lexically_normal();
    auto [end, unused] =
        std::mismatch(output.begin(), output.end(), absolute.begin(), absolute.end());
    (void)unused;
    if (end == output.end()) {
      throw UsageError("output " + quoted(output) + " would contain or replace the input " +
                       quoted(input.path) + ": choose another --output");
    }
  }
  const bool replace = fs::exists(fs::symlink_status(output));
  if (replace) {
    if (!force) {
      throw UsageError("output " + quoted(output) +
                       " already exists: pass --force to replace it, or " +
                       "choose another --output");
    }
    check_replaceable(output);
  }
  return {output, replace};
}

// The vocabulary size: --vocab-size, 256 for bytes, or for u16 without it the largest id + 1,
// found by a first pass over the inputs (the stored token width depends on it, and the shards'
// sizes on the width, so it must be known before the first shard is created).
int64_t choose_vocab_size(const PrepOptions& options, bool u16, const std::vector<Input>& inputs,
                          int64_t total_bytes) {
  int64_t vocab_size = options.vocab_size;
  if (!u16 && vocab_size > 256) {
    throw UsageError("--vocab-size " + std::to_string(vocab_size) +
                     " is too large for --format bytes " + "(at most 256)");
  }
  if (u16 && vocab_size > 65536) {
    throw UsageError("--vocab-size " + std::to_string(vocab_size) +
                     " is too large for --format u16 " + "(ids are uint16, so at most 65536)");
  }
  if (vocab_size == 0 && !u16) vocab_size = 256;
  if (vocab_size != 0) return vocab_size;
  std::vector<uint8_t> block(kReadBlockBytes);
  Progress progress(options.progress, "prep: scanning ids", total_bytes);
  InputStream stream(inputs);
  int64_t largest = 0;
  while (size_t got = stream.read(block.data(), block.size())) {
    for (size_t i = 0; i + 1 < got; i += 2)
      largest = std::max<int64_t>(largest, block[i] | (block[i + 1] << 8));
    progress.advance(static_cast<int64_t>(got));
  }
  progress.finish();
  return largest + 1;
}

// How the token stream is cut: tokens per split (train, valid, test) and per shard.
struct ShardLayout {
  std::array<int64_t, 3> split_tokens;
  int64_t shard_tokens;
};

// Validation and test are contiguous ranges at the end of the stream (5% each by default), so no
// training window can overlap them; the split flags count input bytes, hence whole u16 tokens.
ShardLayout plan_layout(const PrepOptions& options, int input_token_bytes, int64_t total_bytes,
                        int stored_bytes) {
  const int64_t total_tokens = total_bytes / input_token_bytes;
  auto split_size = [&](int64_t bytes, const char* flag) -> int64_t {
    if (bytes < 0) return total_tokens / 20;
    if (bytes % input_token_bytes != 0) {
      throw UsageError(std::string(flag) + " " + std::to_string(bytes) +
                       " is not a whole number of uint16 tokens: give an even number of bytes");
    }
    return bytes / input_token_bytes;
  };
  const int64_t valid_tokens = split_size(options.valid_bytes, "--valid-bytes");
  const int64_t test_tokens = split_size(options.test_bytes, "--test-bytes");
  if (valid_tokens > total_tokens || test_tokens > total_tokens - valid_tokens ||
      valid_tokens + test_tokens >= total_tokens) {
    throw UsageError("--valid-bytes and --test-bytes (" +
                     std::to_string(valid_tokens * input_token_bytes) + " + " +
                     std::to_string(test_tokens * input_token_bytes) +
                     ") leave no training data out of " + std::to_string(total_bytes) +
                     " input bytes: make them smaller");
  }
  const int64_t shard_tokens = options.shard_bytes / stored_bytes;
  if (shard_tokens < 1) {
    throw UsageError("--shard-bytes " + std::to_string(options.shard_bytes) +
                     " is smaller than one " + std::to_string(stored_bytes) + "-byte token");
  }
  return {{total_tokens - valid_tokens - test_tokens, valid_tokens, test_tokens}, shard_tokens};
}

// One block of u16 input: checks every id against the vocabulary and appends the ids in the
// stored width (uint8 when the vocabulary fits in a byte).
void append_u16_block(ShardWriter& writer, const InputStream& stream, const uint8_t* block,
                      int64_t n, int64_t vocab_size, bool vocab_given, int stored_bytes,
                      std::vector<uint16_t>& wide, std::vector<uint8_t>& narrow) {
  wide.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = block[2 * i] | (block[2 * i + 1] << 8);
    if (id >= vocab_size) bad_token(stream, i, 2, id, vocab_size, vocab_given);
    wide[i] = static_cast<uint16_t>(id);
  }
  if (stored_bytes == 2) {
    writer.append(wide.data(), n);
  } else {
    narrow.assign(wide.begin(), wide.end());
    writer.append(narrow.data(), n);
  }
}

// Writes every shard into `dir` in one pass over the inputs and returns the SHA-256 of the input
// stream, which every shard is stamped with at the end (it is known only after the last byte).
std::string write_shards(const fs::path& dir, const PrepOptions& options,
                         const std::vector<Input>& inputs, int64_t total_bytes,
                         const ShardLayout& layout, int64_t vocab_size, int stored_bytes) {
  const bool u16 = options.format == "u16";
  const int input_token_bytes = u16 ? 2 : 1;
  std::vector<std::string> source_names;
  std::vector<int64_t> source_bytes;
  for (const auto& input : inputs) {
    source_names.push_back(input.path.filename().string());
    source_bytes.push_back(input.bytes);
  }
  h5::QuietErrors quiet;
  ShardWriter writer(dir, layout.split_tokens, layout.shard_tokens, stored_bytes, vocab_size,
                     source_names, source_bytes);
  Progress progress(options.progress, "prep: writing shards", total_bytes);
  InputStream stream(inputs);
  Sha256 sha;
  std::vector<uint8_t> block(kReadBlockBytes);
  std::vector<uint8_t> narrow;
  std::vector<uint16_t> wide;
  while (size_t got = stream.read(block.data(), block.size())) {
    sha.update(block.data(), got);
    const int64_t n = static_cast<int64_t>(got) / input_token_bytes;
    if (u16) {
      append_u16_block(writer, stream, block.data(), n, vocab_size, options.vocab_size > 0,
                       stored_bytes, wide, narrow);
    } else {
      if (vocab_size < 256) {
        for (int64_t i = 0; i < n; ++i) {
          if (block[i] >= vocab_size) bad_token(stream, i, 1, block[i], vocab_size, true);
        }
      }
      writer.append(block.data(), n);
    }
    progress.advance(static_cast<int64_t>(got));
  }
  std::string digest = sha.finish_hex();
  writer.finish(digest);
  progress.finish();
  return digest;
}

// Renames the finished dataset from `temp` to `output`. When replacing, the old dataset moves
// aside first, so that `output` names a whole dataset at every moment but between two renames;
// it is put back if the second rename fails.
void move_into_place(TempDirectory& temp, const OutputTarget& output, const fs::path& parent,
                     const std::string& stem) {
  if (output.replace) {
    TempDirectory old(make_temp_directory(parent, stem + ".old"));
    fs::rename(output.path, old.path());
    try {
      fs::rename(temp.path(), output.path);
    } catch (...) {
      fs::rename(old.path(), output.path);
      old.release();
      throw;
    }
  } else {
    fs::rename(temp.path(), output.path);
  }
  temp.release();
}

void print_summary(const fs::path& output, int64_t vocab_size, int stored_bytes,
                   const std::string& digest, const ShardLayout& layout) {
  std::printf("prep: wrote %s: vocabulary %lld (%s tokens), sha256 %s\n", output.c_str(),
              static_cast<long long>(vocab_size), stored_bytes == 1 ? "uint8" : "uint16",
              digest.c_str());
  for (int s = 0; s < 3; ++s) {
    int64_t shards = (layout.split_tokens[s] + layout.shard_tokens - 1) / layout.shard_tokens;
    std::printf("prep:   %-5s %12lld tokens in %lld shard%s\n", kSplits[s],
                static_cast<long long>(layout.split_tokens[s]), static_cast<long long>(shards),
                shards == 1 ? "" : "s");
  }
  std::fflush(stdout);
}

}  // namespace

std::string prep_usage() {
  return "usage: hourglass prep --input FILE... --output DIR [--format bytes|u16] [--vocab-size "
         "V]\n"
         "                      [--valid-bytes N] [--test-bytes N] [--shard-bytes N] [--force] "
         "[--quiet]\n"
         "  --input FILE...    raw files read in order as one stream\n"
         "  --output DIR       dataset directory to create (shards <split>-NNNNN.h5)\n"
         "  --format F         bytes (one token per byte, vocabulary 256) or u16 (little-endian "
         "uint16 ids)\n"
         "  --vocab-size V     vocabulary size; default 256 for bytes, the largest id + 1 for u16\n"
         "  --valid-bytes N    input bytes for the validation split (default 5% of the input)\n"
         "  --test-bytes N     input bytes for the test split (default 5% of the input)\n"
         "  --shard-bytes N    stored bytes per shard (default 67108864)\n"
         "  --force            replace an existing dataset directory\n"
         "  --quiet            no progress line\n";
}

PrepOptions parse_prep_args(const std::vector<std::string>& args) {
  PrepOptions options;
  size_t i = (!args.empty() && args[0] == "prep") ? 1 : 0;
  auto value_of = [&](const std::string& flag, std::string& inline_value,
                      bool has_inline) -> std::string {
    if (has_inline) return inline_value;
    if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0) {
      throw UsageError("" + flag + " needs a value\n" + prep_usage());
    }
    return args[++i];
  };
  bool saw_input = false;
  for (; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string inline_value;
    bool has_inline = false;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline = true;
    }
    if (flag == "--input") {
      saw_input = true;
      if (has_inline) options.inputs.push_back(inline_value);
      while (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0)
        options.inputs.push_back(args[++i]);
    } else if (flag == "--output") {
      options.output = value_of(flag, inline_value, has_inline);
    } else if (flag == "--format") {
      options.format = value_of(flag, inline_value, has_inline);
      if (options.format != "bytes" && options.format != "u16") {
        throw UsageError("--format must be bytes or u16, got '" + options.format + "'");
      }
    } else if (flag == "--vocab-size") {
      options.vocab_size = parse_count(flag, value_of(flag, inline_value, has_inline), 1);
    } else if (flag == "--valid-bytes") {
      options.valid_bytes = parse_count(flag, value_of(flag, inline_value, has_inline), 0);
    } else if (flag == "--test-bytes") {
      options.test_bytes = parse_count(flag, value_of(flag, inline_value, has_inline), 0);
    } else if (flag == "--shard-bytes") {
      options.shard_bytes = parse_count(flag, value_of(flag, inline_value, has_inline), 1);
    } else if (flag == "--force" && !has_inline) {
      options.force = true;
    } else if (flag == "--quiet" && !has_inline) {
      options.progress = false;
    } else if ((flag == "--help" || flag == "-h") && !has_inline) {
      options.help = true;
    } else {
      throw UsageError("unknown argument '" + args[i] + "'\n" + prep_usage());
    }
  }
  if (options.help) return options;
  if (!saw_input || options.inputs.empty())
    throw UsageError("no --input FILE given\n" + prep_usage());
  if (options.output.empty()) throw UsageError("no --output DIR given\n" + prep_usage());
  return options;
}

void prep_dataset(const PrepOptions& options) {
  if (options.inputs.empty()) throw UsageError("no --input FILE given");
  if (options.output.empty()) throw UsageError("no --output DIR given");
  if (options.format != "bytes" && options.format != "u16") {
    throw UsageError("--format must be bytes or u16, got '" + options.format + "'");
  }
  const bool u16 = options.format == "u16";
  const int input_token_bytes = u16 ? 2 : 1;

  const std::vector<Input> inputs = check_inputs(options.inputs, u16);
  int64_t total_bytes = 0;
  for (const auto& input : inputs) total_bytes += input.bytes;
  const OutputTarget output = check_output(options.output, inputs, options.force);
  const int64_t vocab_size = choose_vocab_size(options, u16, inputs, total_bytes);
  const int stored_bytes = vocab_size <= 256 ? 1 : 2;
  const ShardLayout layout = plan_layout(options, input_token_bytes, total_bytes, stored_bytes);

  // Write into a hidden directory next to the output; rename it into place when complete.
  const fs::path parent = output.path.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec)
    throw UsageError("cannot create the output's parent directory " + quoted(parent) + ": " +
                     ec.message());
  const std::string stem = output.path.filename().string();
  TempDirectory temp(make_temp_directory(parent, stem + ".prep"));
  const std::string digest =
      write_shards(temp.path(), options, inputs, total_bytes, layout, vocab_size, stored_bytes);
  move_into_place(temp, output, parent, stem);
  print_summary(output.path, vocab_size, stored_bytes, digest, layout);
}

int prep_main(const std::vector<std::string>& args) {
  PrepOptions options = parse_prep_args(args);
  if (options.help) {
    std::fputs(prep_usage().c_str(), stdout);
    return 0;
  }
  prep_dataset(options);
  return 0;
}

}  // namespace hg
