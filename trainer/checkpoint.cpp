#include "trainer/checkpoint.h"

#include <sstream>

#include "core/elementwise.h"
#include "core/error.h"

namespace hg {

void export_params(const ParamStore& store, CheckpointData& data, bool with_optimizer) {
  for (const auto& [name, p] : store.all()) {
    data.params[name] = p.value;
    if (with_optimizer) {
      data.exp_avg[name] = p.exp_avg;
      data.exp_avg_sq[name] = p.exp_avg_sq;
    }
  }
}

void import_params(ParamStore& store, const CheckpointData& data, bool with_optimizer,
                   bool allow_extra, const std::string& source) {
  std::ostringstream problems;
  int count = 0;
  for (const auto& [name, p] : store.all()) {
    auto it = data.params.find(name);
    if (it == data.params.end()) {
      problems << "\n  missing " << name << " " << shape_string(p.value.shape());
      ++count;
    } else if (it->second.shape() != p.value.shape()) {
      problems << "\n  " << name << ": checkpoint " << shape_string(it->second.shape())
               << ", model " << shape_string(p.value.shape());
      ++count;
    }
  }
  if (!allow_extra)
    for (const auto& [name, t] : data.params)
      if (!store.contains(name)) {
        problems << "\n  unexpected " << name << " " << shape_string(t.shape());
        ++count;
      }
  if (count)
    throw UsageError(source + " does not match the model configuration (" +
                     std::to_string(count) + " mismatched tensors):" + problems.str() +
                     "\nUse a checkpoint of this configuration, or build the configuration "
                     "stored in the checkpoint (`hourglass info` prints it).");
  for (auto& [name, p] : store.all()) {
    copy(p.value.data(), data.params.at(name).data(), p.value.numel());
    auto m = data.exp_avg.find(name), v = data.exp_avg_sq.find(name);
    if (with_optimizer && m != data.exp_avg.end() && v != data.exp_avg_sq.end()) {
      copy(p.exp_avg.data(), m->second.data(), p.value.numel());
      copy(p.exp_avg_sq.data(), v->second.data(), p.value.numel());
    } else {
      p.exp_avg.zero();
      p.exp_avg_sq.zero();
    }
  }
}

}  // namespace hg
