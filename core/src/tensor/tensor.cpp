#include "diffusion/tensor/tensor.hpp"

#include <sstream>

namespace diffusion {

Shape shape_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end()); }

std::string shape_str(const Shape& s) {
  std::ostringstream out;
  out << '(';
  for (std::size_t i = 0; i < s.size(); ++i) out << (i ? ", " : "") << s[i];
  if (s.size() == 1) out << ',';
  out << ')';
  return out.str();
}

std::size_t numel(const Shape& s) {
  std::size_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

Tensor full(const Shape& s, float value) {
  Tensor t = Tensor::from_shape(s);
  std::fill(t.begin(), t.end(), value);
  return t;
}

Tensor scalar(float value) {
  Tensor t = Tensor::from_shape(Shape{});
  t() = value;
  return t;
}

}  // namespace diffusion
