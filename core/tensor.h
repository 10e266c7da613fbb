// A float32 tensor on the host: a shape and one owned, 64-byte aligned, zero-initialised buffer.
// Ownership is explicit: a Tensor owns its memory; views are plain `float*` with dims alongside.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace hg {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_string(const Shape& shape);  // "[2, 3]"

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);  // zero-filled
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

  void zero();
  void fill(float value);
  // Reallocates only when the element count grows; contents are zeroed either way.
  void reset(const Shape& shape);

 private:
  struct AlignedFree {
    void operator()(float* p) const;
  };
  Shape shape_;
  int64_t numel_ = 0;
  int64_t capacity_ = 0;
  std::unique_ptr<float[], AlignedFree> data_;
};

}  // namespace hg
