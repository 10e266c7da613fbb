// Cached incremental decoding of the whole model (issue 17, ARCHITECTURE.md §9.4): the logits of
// new tokens from caches of everything the earlier tokens left, each new token costing about one
// row of work at each level instead of a forward over the window.
//
// What is kept, per sequence:
//   every stack block:  its attention's AttentionDecodeCache (window keys/values at the block's
//                       resolution, compressed chunks, the running chunk, DConv's last two rows)
//   down/i:             the last k-1 rows the next shortened row pools (after the k-1 shift, and
//                       after LNa with attention resampling), and that MHA's keys and values
//   up/i:               the upsampled rows of the latest shortened output row, and that MHA's
//                       keys and values
// With the k-1 shift, shortened row j pools rows jk-k+1 .. jk of its level, so the shortened
// stack runs one row when row jk is in (once every k rows), and the upsampled output of that row
// serves rows jk .. jk+k-1. Positions count from the last reset(): the caches hold one window of
// the training forward, whose logits they reproduce (up to float rounding).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "model/stage_model.h"

namespace hg {

class Decoder {
 public:
  // `model` holds every unit on this process, without tensor parallelism; it must outlive the
  // decoder. `batch` sequences advance together. `widths`: the active FFN width and head count of
  // every stack block (MatFormer, §1.5, §9.6), null = each block's full width; read here only.
  Decoder(StageModel& model, int64_t batch, const SubmodelWidths* widths = nullptr);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Appends tokens [batch, count] (row-major, count >= 1) at positions position() ..
  // position() + count - 1 and sets logits [batch, count, V] (=) to theirs. A prompt is prefilled
  // by one call; decoding appends one token per call. position() + count <= seq_len.
  void append(const int32_t* tokens, int64_t count, Tensor& logits);
  // Empties every cache: the next append starts a new window at position 0.
  void reset();
  int64_t position() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace hg
