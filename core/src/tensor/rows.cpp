#include "diffusion/tensor/rows.hpp"

#include <algorithm>
#include <string>

namespace diffusion {
namespace {

/// Floats per row of t (shape (N, ...), N > 0).
std::size_t row_size(const Tensor& t) { return t.size() / t.shape()[0]; }

}  // namespace

Tensor row_range(const Tensor& t, std::size_t begin, std::size_t end) {
  if (t.dimension() == 0 || begin > end || end > t.shape()[0])
    throw Error("row_range: rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of a tensor of shape " +
                shape_str(t));
  Shape s = shape_of(t);
  s[0] = end - begin;
  Tensor r = Tensor::from_shape(s);
  if (end > begin) std::copy(t.data() + begin * row_size(t), t.data() + end * row_size(t), r.data());
  return r;
}

Tensor first_rows(const Tensor& t, std::size_t n) {
  if (t.dimension() == 0) throw Error("first_rows: a scalar has no rows");
  return n >= t.shape()[0] ? t : row_range(t, 0, n);
}

void set_row_range(Tensor& into, std::size_t begin, const Tensor& rows) {
  bool fits = into.dimension() > 0 && rows.dimension() == into.dimension() &&
              begin + rows.shape()[0] <= into.shape()[0];
  for (std::size_t k = 1; fits && k < rows.dimension(); ++k) fits = rows.shape()[k] == into.shape()[k];
  if (!fits)
    throw Error("set_row_range: rows of shape " + shape_str(rows) + " at row " + std::to_string(begin) +
                " of a tensor of shape " + shape_str(into));
  if (rows.size() > 0) std::copy(rows.begin(), rows.end(), into.data() + begin * row_size(into));
}

}  // namespace diffusion
