#include "position_embedding.hpp"

#include <cmath>
#include <string>

namespace diffusion::dit {

Tensor sincos_position_embedding_2d(std::size_t dim, std::size_t grid_h, std::size_t grid_w) {
  if (dim == 0 || dim % 4 != 0)
    throw Error("sincos_position_embedding_2d: dim " + std::to_string(dim) + " must be a positive multiple of 4");
  const std::size_t quarter = dim / 4;
  Tensor e = Tensor::from_shape({grid_h * grid_w, dim});
  float* p = e.data();
  for (std::size_t i = 0; i < grid_h; ++i)
    for (std::size_t j = 0; j < grid_w; ++j) {
      float* row = p + (i * grid_w + j) * dim;
      for (std::size_t k = 0; k < quarter; ++k) {
        // MAE computes the frequencies in float64; so do we, then round once.
        const double w = std::pow(10000.0, -double(k) / double(quarter));
        row[k] = float(std::sin(double(j) * w));                   // column half: sin, cos
        row[quarter + k] = float(std::cos(double(j) * w));
        row[2 * quarter + k] = float(std::sin(double(i) * w));     // row half: sin, cos
        row[3 * quarter + k] = float(std::cos(double(i) * w));
      }
    }
  return e;
}

}  // namespace diffusion::dit
