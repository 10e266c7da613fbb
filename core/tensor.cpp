#include "core/tensor.h"

#include <sstream>
#include <stdexcept>

namespace hg {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw std::invalid_argument("negative tensor dimension in " + shape_string(shape));
    n *= s;
  }
  return n;
}

std::string shape_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

void TensorRelease::operator()(float* p) const { device_memory(device).release(p); }

Tensor::Tensor(Shape shape, Device device)
    : device_(device), data_(nullptr, TensorRelease{device}) {
  reset(shape);
}

Tensor::Tensor(const Tensor& other)
    : device_(other.device_), data_(nullptr, TensorRelease{other.device_}) {
  *this = other;
}

// Takes `other`'s device: a copy lives where its source lives.
Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  if (!other.data_) {  // a default-constructed (empty) tensor copies as one
    shape_.clear();
    numel_ = 0;
    return *this;
  }
  if (device_ != other.device_) {
    data_ = std::unique_ptr<float[], TensorRelease>(nullptr, TensorRelease{other.device_});
    device_ = other.device_;
    capacity_ = 0;
  }
  reshape(other.shape_);  // not reset(): the copy writes every element, zeroing first is waste
  if (numel_) device_memory(device_).copy(data(), other.data(), sizeof(float) * numel_);
  return *this;
}

void Tensor::reshape(const Shape& shape) {
  int64_t n = shape_numel(shape);
  if (n > capacity_) {
    data_.reset(static_cast<float*>(device_memory(device_).allocate(sizeof(float) * n)));
    capacity_ = n;
  }
  shape_ = shape;
  numel_ = n;
}

void Tensor::reset(const Shape& shape) {
  reshape(shape);
  zero();
}

void Tensor::zero() {
  if (numel_) device_memory(device_).zero(data(), sizeof(float) * numel_);
}

void Tensor::fill(float value) {
  if (device_ == Device::Cpu) {
    for (int64_t i = 0; i < numel_; ++i) data_[i] = value;
    return;
  }
  std::vector<float> host(numel_, value);
  copy_from_host(host.data());
}

void Tensor::copy_to_host(float* host) const {
  if (numel_) device_memory(device_).to_host(host, data(), sizeof(float) * numel_);
}

void Tensor::copy_from_host(const float* host) {
  if (numel_) device_memory(device_).from_host(data(), host, sizeof(float) * numel_);
}

Tensor Tensor::to(Device device) const {
  if (device == device_ || !data_) return *this;
  Tensor out(shape_, device);
  if (device_ == Device::Cpu)
    out.copy_from_host(data());
  else if (device == Device::Cpu)
    copy_to_host(out.data());
  else
    throw std::logic_error("Tensor::to: between two devices through the host is not written");
  return out;
}

}  // namespace hg
