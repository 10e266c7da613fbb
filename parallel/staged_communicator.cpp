#include "parallel/staged_communicator.h"

#include <numeric>
#include <stdexcept>
#include <utility>
#include <vector>

namespace hg {
namespace {

// One non-blocking op's host copy and where its result goes on the device.
struct Staging {
  std::vector<float> host;
  float* result = nullptr;  // device; nullptr for a send (nothing comes back)
  int64_t offset = 0;       // the result is host[offset, offset + count)
  int64_t count = 0;
  bool in_use = false;
};

class HostStagedCommunicator final : public Communicator {
 public:
  HostStagedCommunicator(std::shared_ptr<Communicator> host, Device device)
      : host_(std::move(host)), device_(device) {
    if (host_->memory() != Device::Cpu)
      throw std::invalid_argument("host staging needs a communicator over host memory");
  }
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const char* name() const override { return "mpi (host-staged)"; }
  Device memory() const override { return device_; }

  bool allreduce_sum(float* data, int64_t count, const char* what) override {
    Pending pending = iallreduce_sum(data, count, what);
    return wait(pending);
  }
  Pending iallreduce_sum(float* data, int64_t count, const char* what) override {
    const int s = stage(data, count, data, 0, count);
    return started(host_->iallreduce_sum(slot(s).host.data(), count, what), s);
  }
  Pending ireduce_scatter_sum(const float* data, float* shard, const std::vector<int>& counts,
                              const char* what) override {
    // host = [the whole packed input | this rank's shard]: one buffer, the shard read back.
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    const int64_t mine = counts.at(rank());
    const int s = stage(data, total, shard, total, mine);
    slot(s).host.resize(static_cast<size_t>(total + mine));
    float* host = slot(s).host.data();
    return started(host_->ireduce_scatter_sum(host, host + total, counts, what), s);
  }
  Pending iallgather(float* data, const std::vector<int>& counts,
                     const std::vector<int>& displacements, const char* what) override {
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    const int s = stage(data, total, data, 0, total);
    return started(host_->iallgather(slot(s).host.data(), counts, displacements, what), s);
  }
  Pending isend(const float* data, int64_t count, int peer, int tag, const char* what) override {
    const int s = stage(data, count, nullptr, 0, 0);
    return started(host_->isend(slot(s).host.data(), count, peer, tag, what), s);
  }
  Pending irecv(float* data, int64_t count, int peer, int tag, const char* what) override {
    const int s = stage(nullptr, count, data, 0, count);
    return started(host_->irecv(slot(s).host.data(), count, peer, tag, what), s);
  }
  bool test(Pending& pending) override {
    if (!host_->test(pending)) return false;
    finish(pending);
    return true;
  }
  bool wait(Pending& pending) override {
    if (!host_->wait(pending)) return false;
    finish(pending);
    return true;
  }

 private:
  Staging& slot(int s) { return slots_[static_cast<size_t>(s)]; }

  // A free slot holding `count` host floats, a copy of `input` (device) when given.
  int stage(const float* input, int64_t count, float* result, int64_t offset, int64_t n) {
    size_t s = 0;
    while (s < slots_.size() && slots_[s].in_use) ++s;
    if (s == slots_.size()) slots_.emplace_back();
    Staging& st = slots_[s];
    st.host.resize(static_cast<size_t>(count));
    if (input) copy_to_host(device_, st.host.data(), input, count);
    st.result = result;
    st.offset = offset;
    st.count = n;
    st.in_use = true;
    return static_cast<int>(s);
  }
  static Pending started(Pending pending, int s) {
    pending.staged = s;
    return pending;
  }
  // The host op is complete: its result to the device, the slot free again.
  void finish(Pending& pending) {
    if (pending.staged < 0) return;
    Staging& st = slot(pending.staged);
    if (st.result) copy_from_host(device_, st.result, st.host.data() + st.offset, st.count);
    st.in_use = false;
    pending.staged = -1;
  }

  std::shared_ptr<Communicator> host_;
  Device device_;
  std::vector<Staging> slots_;  // reused: a step's ops stage into the same host buffers
};

}  // namespace

std::shared_ptr<Communicator> make_host_staged(std::shared_ptr<Communicator> host, Device device) {
  if (device == Device::Cpu) return host;
  return std::make_shared<HostStagedCommunicator>(std::move(host), device);
}

}  // namespace hg
