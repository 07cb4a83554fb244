#include <algorithm>
#include <cmath>
#include <vector>

#include "diffusion/metrics/metrics.hpp"
#include "diffusion/metrics/stop_request.hpp"

namespace diffusion {
namespace {

// <theta, p_i> for every point, in double.
void project(const std::vector<double>& points, std::size_t count, std::size_t dim,
             const double* theta, std::vector<double>& out) {
  out.resize(count);
  const double* p = points.data();
  for (std::size_t i = 0; i < count; ++i, p += dim) {
    double s = 0.0;
    for (std::size_t k = 0; k < dim; ++k) s += p[k] * theta[k];
    out[i] = s;
  }
}

// W2^2 between the uniform empirical measures of two sorted 1-D samples: the integral over
// t in [0, 1] of the squared difference of their quantile functions. Both are step functions
// with steps at multiples of 1/n and 1/m, so walking the merged steps is exact. Positions are
// counted in units of 1/(n m) so step boundaries compare exactly.
double w2_squared_sorted(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t n = a.size(), m = b.size();
  if (n == m) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double t = a[i] - b[i];
      s += t * t;
    }
    return s / static_cast<double>(n);
  }
  double s = 0.0;
  std::size_t i = 0, j = 0, at = 0;
  while (i < n && j < m) {
    const std::size_t end_a = (i + 1) * m, end_b = (j + 1) * n;
    const std::size_t end = std::min(end_a, end_b);
    const double t = a[i] - b[j];
    s += static_cast<double>(end - at) * t * t;
    at = end;
    if (end_a == end) ++i;
    if (end_b == end) ++j;
  }
  return s / (static_cast<double>(n) * static_cast<double>(m));
}

}  // namespace

double sliced_w2(const Tensor& x, const Tensor& y, std::size_t projections, Rng& rng) {
  const std::size_t dim = detail::point_dim("sliced_w2", x, y);
  if (projections == 0) throw Error("sliced_w2: needs at least one projection");
  const std::size_t n = x.shape()[0], m = y.shape()[0];
  const std::vector<double> xd = detail::to_double(x), yd = detail::to_double(y);
  std::vector<double> theta(dim), px, py;
  double total = 0.0;
  for (std::size_t p = 0; p < projections; ++p) {
    // One projection sorts n + m numbers: a stop is seen between sorts (~1 s at n = 10^7).
    throw_if_stop_requested();
    // A normalised standard normal is uniform on the sphere; a zero draw (probability ~0 in
    // float) is redrawn rather than divided by.
    double norm2 = 0.0;
    while (norm2 == 0.0) {
      norm2 = 0.0;
      for (auto& t : theta) {
        t = static_cast<double>(rng.normal());
        norm2 += t * t;
      }
    }
    const double inv = 1.0 / std::sqrt(norm2);
    for (auto& t : theta) t *= inv;
    project(xd, n, dim, theta.data(), px);
    project(yd, m, dim, theta.data(), py);
    std::sort(px.begin(), px.end());
    throw_if_stop_requested();
    std::sort(py.begin(), py.end());
    total += w2_squared_sorted(px, py);
  }
  return std::sqrt(total / static_cast<double>(projections));
}

}  // namespace diffusion
