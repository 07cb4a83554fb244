#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "diffusion/metrics.hpp"

namespace diffusion {
namespace {

double squared_distance(const double* a, const double* b, std::size_t dim) {
  double s = 0.0;
  for (std::size_t k = 0; k < dim; ++k) {
    const double t = a[k] - b[k];
    s += t * t;
  }
  return s;
}

// sum_s exp(-gamma_s d2), gamma_s = 1 / (2 s^2).
double kernel(double d2, const std::vector<double>& gammas) {
  double k = 0.0;
  for (double g : gammas) k += std::exp(-g * d2);
  return k;
}

// Sum of k(a_i, a_j) over ordered pairs i != j: each unordered pair once, doubled.
double within_sum(const std::vector<double>& a, std::size_t n, std::size_t dim,
                  const std::vector<double>& gammas) {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double* ai = a.data() + i * dim;
    double row = 0.0;  // per-row partial sums keep the running total's rounding small
    for (std::size_t j = i + 1; j < n; ++j)
      row += kernel(squared_distance(ai, a.data() + j * dim, dim), gammas);
    total += row;
  }
  return 2.0 * total;
}

double cross_sum(const std::vector<double>& a, std::size_t n, const std::vector<double>& b,
                 std::size_t m, std::size_t dim, const std::vector<double>& gammas) {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double* ai = a.data() + i * dim;
    double row = 0.0;
    for (std::size_t j = 0; j < m; ++j)
      row += kernel(squared_distance(ai, b.data() + j * dim, dim), gammas);
    total += row;
  }
  return total;
}

// Indices of at most `cap` evenly strided points out of n.
std::vector<std::size_t> strided(std::size_t n, std::size_t cap) {
  std::vector<std::size_t> idx;
  const std::size_t take = std::min(n, cap);
  for (std::size_t k = 0; k < take; ++k) idx.push_back(k * n / take);
  return idx;
}

}  // namespace

double mmd_rbf(const Tensor& x, const Tensor& y, const std::vector<double>& bandwidths) {
  const std::size_t dim = detail::point_dim("mmd_rbf", x, y);
  const std::size_t n = x.shape()[0], m = y.shape()[0];
  if (n < 2 || m < 2)
    throw Error("mmd_rbf: the unbiased estimator needs at least 2 points per set (x " +
                shape_str(x) + ", y " + shape_str(y) + ")");
  if (bandwidths.empty()) throw Error("mmd_rbf: needs at least one bandwidth");
  std::vector<double> gammas;
  for (double s : bandwidths) {
    if (!(s > 0.0) || !std::isfinite(s))
      throw Error("mmd_rbf: bandwidths must be positive and finite, got " + std::to_string(s));
    gammas.push_back(1.0 / (2.0 * s * s));
  }
  const std::vector<double> xd = detail::to_double(x), yd = detail::to_double(y);
  const double nd = static_cast<double>(n), md = static_cast<double>(m);
  const double kxx = within_sum(xd, n, dim, gammas) / (nd * (nd - 1.0));
  const double kyy = within_sum(yd, m, dim, gammas) / (md * (md - 1.0));
  const double kxy = cross_sum(xd, n, yd, m, dim, gammas) / (nd * md);
  return kxx + kyy - 2.0 * kxy;
}

const std::vector<double>& default_mmd_bandwidths() {
  static const std::vector<double> bandwidths{0.05, 0.1, 0.2, 0.5, 1.0, 2.0};
  return bandwidths;
}

double median_heuristic_bandwidth(const Tensor& x, const Tensor& y) {
  const std::size_t dim = detail::point_dim("median_heuristic_bandwidth", x, y);
  const std::vector<double> xd = detail::to_double(x), yd = detail::to_double(y);
  // Pool (a strided subset of) both sets; 1000 points give ~5e5 distances, plenty for a median.
  std::vector<const double*> pts;
  const bool subsample = x.shape()[0] + y.shape()[0] > 1000;
  for (std::size_t i : strided(x.shape()[0], subsample ? 500 : x.shape()[0]))
    pts.push_back(xd.data() + i * dim);
  for (std::size_t i : strided(y.shape()[0], subsample ? 500 : y.shape()[0]))
    pts.push_back(yd.data() + i * dim);
  std::vector<double> d2;
  d2.reserve(pts.size() * (pts.size() - 1) / 2);
  for (std::size_t i = 0; i < pts.size(); ++i)
    for (std::size_t j = i + 1; j < pts.size(); ++j)
      d2.push_back(squared_distance(pts[i], pts[j], dim));
  if (d2.empty()) return 1.0;
  // Upper median: for an even count the two middle values differ negligibly for our use.
  auto mid = d2.begin() + static_cast<std::ptrdiff_t>(d2.size() / 2);
  std::nth_element(d2.begin(), mid, d2.end());
  const double median = std::sqrt(*mid);
  return median > 0.0 ? median : 1.0;
}

}  // namespace diffusion
