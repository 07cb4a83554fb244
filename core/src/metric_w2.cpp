#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "diffusion/assignment.hpp"
#include "diffusion/metrics.hpp"

namespace diffusion {
namespace {

// Above this dimension the cost matrix comes from one dgemm (||a||^2 + ||b||^2 - 2 a.b): O(N^2 D)
// either way, but BLAS is ~10x faster for image-sized D. Below it, direct differences are exact
// for float inputs and already cheap next to the assignment.
constexpr std::size_t kGemmMinDim = 32;

std::vector<double> squared_distances(const std::vector<double>& x, const std::vector<double>& y,
                                      std::size_t n, std::size_t dim) {
  std::vector<double> cost(n * n);
  if (dim < kGemmMinDim) {
    for (std::size_t i = 0; i < n; ++i) {
      const double* a = x.data() + i * dim;
      double* out = cost.data() + i * n;
      for (std::size_t j = 0; j < n; ++j) {
        const double* b = y.data() + j * dim;
        double s = 0.0;
        for (std::size_t k = 0; k < dim; ++k) {
          const double t = a[k] - b[k];
          s += t * t;
        }
        out[j] = s;
      }
    }
    return cost;
  }
  std::vector<double> xx(n), yy(n);
  for (std::size_t i = 0; i < n; ++i) {
    double sx = 0.0, sy = 0.0;
    for (std::size_t k = 0; k < dim; ++k) {
      sx += x[i * dim + k] * x[i * dim + k];
      sy += y[i * dim + k] * y[i * dim + k];
    }
    xx[i] = sx, yy[i] = sy;
  }
  const int ni = static_cast<int>(n), di = static_cast<int>(dim);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, ni, di, -2.0, x.data(), di, y.data(),
              di, 0.0, cost.data(), ni);
  for (std::size_t i = 0; i < n; ++i) {
    double* out = cost.data() + i * n;
    // Cancellation can leave a tiny negative value for near-coincident points.
    for (std::size_t j = 0; j < n; ++j) out[j] = std::max(0.0, out[j] + xx[i] + yy[j]);
  }
  return cost;
}

}  // namespace

double w2_exact(const Tensor& x, const Tensor& y) {
  const std::size_t dim = detail::point_dim("w2_exact", x, y);
  const std::size_t n = x.shape()[0];
  if (y.shape()[0] != n)
    throw Error("w2_exact: needs equal sample sizes (x " + shape_str(x) + ", y " + shape_str(y) +
                "); use sliced_w2 for unequal sizes");
  const std::vector<double> cost =
      squared_distances(detail::to_double(x), detail::to_double(y), n, dim);
  const Assignment a = solve_assignment(cost, n);
  return std::sqrt(a.cost / static_cast<double>(n));
}

}  // namespace diffusion
