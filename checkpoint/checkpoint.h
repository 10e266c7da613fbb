// Between a rank's ParamStore and the canonical checkpoint content (§5).
#pragma once
#include <string>

#include "checkpoint/checkpoint_io.h"
#include "model/params.h"

namespace hg {

// Copies the store's tensors (and moments when with_optimizer) into `data` as full canonical
// tensors. Under tensor parallelism (store.tensor_parallel().size > 1) this is collective over
// the group: the slices are gathered and assembled on tensor-parallel rank 0, which fills `data`;
// the other ranks leave it empty.
void export_params(const ParamStore& store, CheckpointData& data, bool with_optimizer);

// Fills the store from `data` (full canonical tensors; each rank takes its tensor-parallel
// slice): every parameter of the store must be present with its canonical shape (a checkpoint
// may hold more, e.g. other stages' parameters, when allow_extra). Otherwise throws UsageError
// listing every mismatched name and shape. Moments are loaded when with_optimizer and present,
// else zeroed.
void import_params(ParamStore& store, const CheckpointData& data, bool with_optimizer,
                   bool allow_extra, const std::string& source);

}  // namespace hg
