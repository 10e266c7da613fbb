#include "model/params.h"

#include <stdexcept>
#include <vector>

#include "core/random.h"
#include "core/shard.h"

namespace hg {

bool is_matrix_name(const std::string& name) {
  static const char* kSuffixes[] = {"weight", "wq", "wk", "wv", "wo", "w1", "w2"};
  auto last = name.substr(name.rfind('/') + 1);
  for (const char* s : kSuffixes)
    if (last == s) return true;
  return false;
}

Param& ParamStore::add(const std::string& name, const Shape& shape, ParamInit init, float init_std,
                       ParamSlice slice) {
  if (params_.count(name)) throw std::logic_error("parameter registered twice: " + name);
  Param& p = params_[name];
  order_.push_back(name);
  const Shape local = local_shape(shape, slice);
  const Device device = backend_->device();
  p.value = Tensor(local, device);
  p.grad = Tensor(local, device);
  const ShardRange shard = shard_range(p.value.numel(), shard_rank_, shard_count_);
  p.shard_offset = shard.begin;
  p.sharded = shard_count_ > 1;
  p.exp_avg = shard_count_ == 1 ? Tensor(local, device) : Tensor(Shape{shard.size()}, device);
  p.exp_avg_sq = shard_count_ == 1 ? Tensor(local, device) : Tensor(Shape{shard.size()}, device);
  p.canonical_shape = shape;
  p.slice = std::move(slice);
  p.init = init;
  p.init_std = init_std;
  p.decay = is_matrix_name(name);
  return p;
}

void ParamStore::set_data_parallel_shard(int rank, int count) {
  if (count < 1 || rank < 0 || rank >= count)
    throw std::invalid_argument("data-parallel shard " + std::to_string(rank) + " of " +
                                std::to_string(count));
  if (!params_.empty() && shard_count_ != 1)
    throw std::logic_error("a sharded store's moments cannot be resharded");
  shard_rank_ = rank;
  shard_count_ = count;
  if (count == 1) return;
  for (auto& [name, p] : params_) {
    const ShardRange shard = shard_range(p.value.numel(), rank, count);
    p.shard_offset = shard.begin;
    p.sharded = true;
    std::vector<float> whole(static_cast<size_t>(p.value.numel()));
    for (Tensor* moment : {&p.exp_avg, &p.exp_avg_sq}) {
      moment->copy_to_host(whole.data());
      Tensor own(Shape{shard.size()}, p.value.device());
      own.copy_from_host(whole.data() + shard.begin);
      *moment = std::move(own);
    }
  }
}

Param& ParamStore::at(const std::string& name) {
  auto it = params_.find(name);
  if (it == params_.end()) throw std::out_of_range("no parameter named " + name);
  return it->second;
}

const Param& ParamStore::at(const std::string& name) const {
  auto it = params_.find(name);
  if (it == params_.end()) throw std::out_of_range("no parameter named " + name);
  return it->second;
}

// Values are drawn on the host and copied to the store's device.
void ParamStore::init_all(uint64_t seed) {
  uint64_t key = random_key(seed, RandomPurpose::Init);
  for (auto& [name, p] : params_) {
    Tensor host(p.value.shape());
    float* v = host.data();
    int64_t n = host.numel();
    switch (p.init) {
      case ParamInit::Zero: break;
      case ParamInit::One: host.fill(1.0f); break;
      case ParamInit::Normal: {
        uint64_t id = hash_name(name);
        for (int64_t i = 0; i < n; ++i)
          v[i] = p.init_std *
                 normal_at(key, counter_of(id, static_cast<uint64_t>(
                                                   canonical_offset(p.canonical_shape, p.slice, i))));
        break;
      }
      case ParamInit::DConvTaps: {
        // [3, C]: tap 0 multiplies Z[t] (§1.6: [0.5, 1/6, 1/6]).
        int64_t C = host.dim(1);
        const float taps[3] = {0.5f, 1.0f / 6.0f, 1.0f / 6.0f};
        for (int a = 0; a < 3; ++a)
          for (int64_t c = 0; c < C; ++c) v[a * C + c] = taps[a];
        break;
      }
    }
    p.value.copy_from_host(host.data());
    p.exp_avg.zero();
    p.exp_avg_sq.zero();
  }
}

void ParamStore::zero_grads() {
  for (auto& [name, p] : params_) p.grad.zero();
}

int64_t ParamStore::count_elements() const {
  int64_t n = 0;
  for (const auto& [name, p] : params_) n += p.value.numel();
  return n;
}

}  // namespace hg
