#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
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

void Tensor::AlignedFree::operator()(float* p) const { std::free(p); }

static float* aligned_floats(int64_t n) {
  if (n == 0) return nullptr;
  size_t bytes = ((static_cast<size_t>(n) * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

Tensor::Tensor(Shape shape) { reset(shape); }

Tensor::Tensor(const Tensor& other) { *this = other; }

Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  if (!other.data_) {  // a default-constructed (empty) tensor copies as one
    shape_.clear();
    numel_ = 0;
    return *this;
  }
  reset(other.shape_);
  if (numel_) std::memcpy(data(), other.data(), sizeof(float) * numel_);
  return *this;
}

void Tensor::reset(const Shape& shape) {
  int64_t n = shape_numel(shape);
  if (n > capacity_) {
    data_.reset(aligned_floats(n));
    capacity_ = n;
  }
  shape_ = shape;
  numel_ = n;
  zero();
}

void Tensor::zero() {
  if (numel_) std::memset(data(), 0, sizeof(float) * numel_);
}

void Tensor::fill(float value) {
  for (int64_t i = 0; i < numel_; ++i) data_[i] = value;
}

}  // namespace hg
