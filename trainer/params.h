// The parameters a rank holds, by canonical name (ARCHITECTURE.md §2), with their gradients and
// AdamW moments. Units register their tensors here when they are built; a pipeline stage builds
// only its own units, so its store holds only its own parameters.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace hg {

enum class ParamInit { Normal, Zero, One, DConvTaps };

struct Param {
  Tensor value;
  Tensor grad;        // accumulated over the micro-batches of a step
  Tensor exp_avg;     // AdamW first moment
  Tensor exp_avg_sq;  // AdamW second moment
  ParamInit init = ParamInit::Zero;
  float init_std = 0.0f;
  bool decay = false;  // weight decay applies (matrices only, §3)
};

class ParamStore {
 public:
  // Registers `name` with `shape` (value zero until init_all or a checkpoint fills it) and
  // returns it. Pointers into the Tensors stay valid: Params never move (std::map nodes).
  Param& add(const std::string& name, const Shape& shape, ParamInit init, float init_std = 0.0f);
  Param& at(const std::string& name);
  const Param& at(const std::string& name) const;
  bool contains(const std::string& name) const { return params_.count(name) != 0; }

  // §1.6: a parameter's init is keyed by (seed, Init, hash(name), element index), so any layout
  // and any subset of parameters gets the same values.
  void init_all(uint64_t seed);
  void zero_grads();

  std::map<std::string, Param>& all() { return params_; }
  const std::map<std::string, Param>& all() const { return params_; }
  int64_t count_elements() const;

 private:
  std::map<std::string, Param> params_;
};

// Names that get weight decay and normal init: the matrices (§3).
bool is_matrix_name(const std::string& name);

}  // namespace hg
