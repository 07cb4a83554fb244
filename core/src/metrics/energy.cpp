#include <algorithm>
#include <cmath>
#include <vector>

#include "diffusion/metrics/metrics.hpp"
#include "diffusion/metrics/stop_request.hpp"

namespace diffusion {
namespace {

double distance(const double* a, const double* b, std::size_t dim) {
  double s = 0.0;
  for (std::size_t k = 0; k < dim; ++k) {
    const double t = a[k] - b[k];
    s += t * t;
  }
  return std::sqrt(s);
}

// sum_{i,j} ||a_i - b_j||, accumulated per row.
double distance_sum(const std::vector<double>& a, std::size_t n, const std::vector<double>& b,
                    std::size_t m, std::size_t dim) {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    throw_if_stop_requested();  // a row is O(m D): a stop is seen within milliseconds
    const double* ai = a.data() + i * dim;
    double row = 0.0;
    for (std::size_t j = 0; j < m; ++j) row += distance(ai, b.data() + j * dim, dim);
    total += row;
  }
  return total;
}

// sum_{i,j} ||a_i - a_j|| over all ordered pairs (the diagonal is zero): half the work of
// distance_sum(a, a) by symmetry.
double within_distance_sum(const std::vector<double>& a, std::size_t n, std::size_t dim) {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    throw_if_stop_requested();
    const double* ai = a.data() + i * dim;
    double row = 0.0;
    for (std::size_t j = i + 1; j < n; ++j) row += distance(ai, a.data() + j * dim, dim);
    total += row;
  }
  return 2.0 * total;
}

}  // namespace

double energy_distance(const Tensor& x, const Tensor& y) {
  const std::size_t dim = detail::point_dim("energy_distance", x, y);
  const std::size_t n = x.shape()[0], m = y.shape()[0];
  const std::vector<double> xd = detail::to_double(x), yd = detail::to_double(y);
  const double nd = static_cast<double>(n), md = static_cast<double>(m);
  const double exy = distance_sum(xd, n, yd, m, dim) / (nd * md);
  const double exx = within_distance_sum(xd, n, dim) / (nd * nd);
  const double eyy = within_distance_sum(yd, m, dim) / (md * md);
  // The V-statistic is a squared MMD (for the kernel -||a - b||), so >= 0; only rounding of the
  // three sums can push it below.
  return std::max(0.0, 2.0 * exy - exx - eyy);
}

}  // namespace diffusion
