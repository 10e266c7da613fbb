// A float32 tensor: a shape and one owned, 64-byte aligned, zero-initialised buffer on one device
// (core/device.h; host memory unless constructed otherwise). Ownership is explicit: a Tensor owns
// its memory; views are plain `float*` with dims alongside. Element access (operator[], fill's
// loop) is for host tensors; a device tensor's data() is a device pointer, read through
// copy_to_host.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"

namespace hg {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_string(const Shape& shape);  // "[2, 3]"

// Frees a tensor's buffer on the device it came from.
struct TensorRelease {
  Device device = Device::Cpu;
  void operator()(float* p) const;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, Device device = Device::Cpu);  // zero-filled
  Tensor(std::initializer_list<int64_t> shape) : Tensor(Shape(shape)) {}
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }

  const Shape& shape() const { return shape_; }
  int64_t dim(int axis) const { return shape_.at(axis); }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  bool empty() const { return numel_ == 0; }
  Device device() const { return device_; }

  void zero();
  void fill(float value);
  // Reallocates only when the element count grows; contents are zeroed either way.
  // The device stays the tensor's own.
  void reset(const Shape& shape);
  // host (=) all numel() values / all numel() values (=) host, whatever the device.
  void copy_to_host(float* host) const;
  void copy_from_host(const float* host);
  // A copy of this tensor on `device` (the same device: an ordinary copy).
  Tensor to(Device device) const;

 private:
  // reset without the zeroing, for a caller that writes every element.
  void reshape(const Shape& shape);

  Shape shape_;
  Device device_ = Device::Cpu;
  int64_t numel_ = 0;
  int64_t capacity_ = 0;
  std::unique_ptr<float[], TensorRelease> data_;
};

}  // namespace hg
