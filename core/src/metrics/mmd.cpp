#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "diffusion/metrics/metrics.hpp"
#include "diffusion/metrics/stop_request.hpp"

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

// Points stored coordinate-major (coordinate k of point j at c[k * n + j]), so distances from one
// point to a run of others are contiguous loads.
struct Columns {
  std::vector<double> c;
  std::size_t n, dim;
  Columns(const Tensor& t, std::size_t dim_) : c(t.size()), n(t.size() / dim_), dim(dim_) {
    const float* p = t.data();
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t k = 0; k < dim; ++k) c[k * n + j] = p[j * dim + k];
  }
  double at(std::size_t j, std::size_t k) const { return c[k * n + j]; }
};

// sum over j in [begin, b.n) of sum_s exp(-gamma_s ||a_i - b_j||^2). The exponentials dominate
// the cost (S per pair), so they are evaluated in SIMD batches over a row of distances.
double row_kernel_sum(const Columns& a, std::size_t i, const Columns& b, std::size_t begin,
                      const std::vector<double>& gammas, std::vector<double>& d2) {
  using B = xsimd::batch<double>;
  constexpr std::size_t L = B::size;
  const std::size_t m = b.n - begin;
  d2.assign(m, 0.0);
  for (std::size_t k = 0; k < a.dim; ++k) {
    const double ak = a.at(i, k);
    const double* bk = b.c.data() + k * b.n + begin;
    for (std::size_t j = 0; j < m; ++j) {
      const double t = ak - bk[j];
      d2[j] += t * t;
    }
  }
  B acc(0.0);
  double tail = 0.0;
  for (double g : gammas) {
    const B neg_g(-g);
    std::size_t j = 0;
    for (; j + L <= m; j += L) acc += xsimd::exp(neg_g * B::load_unaligned(d2.data() + j));
    for (; j < m; ++j) tail += std::exp(-g * d2[j]);
  }
  return xsimd::hadd(acc) + tail;
}

// Sum of k(a_i, a_j) over ordered pairs i != j: each unordered pair once, doubled.
double within_sum(const Columns& a, const std::vector<double>& gammas) {
  std::vector<double> d2;
  double total = 0.0;
  for (std::size_t i = 0; i + 1 < a.n; ++i) {
    throw_if_stop_requested();  // a row is O(n S): a stop is seen within milliseconds
    total += row_kernel_sum(a, i, a, i + 1, gammas, d2);
  }
  return 2.0 * total;
}

double cross_sum(const Columns& a, const Columns& b, const std::vector<double>& gammas) {
  std::vector<double> d2;
  double total = 0.0;  // per-row partial sums keep the running total's rounding small
  for (std::size_t i = 0; i < a.n; ++i) {
    throw_if_stop_requested();
    total += row_kernel_sum(a, i, b, 0, gammas, d2);
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
  const Columns xc(x, dim), yc(y, dim);
  const double nd = static_cast<double>(n), md = static_cast<double>(m);
  const double kxx = within_sum(xc, gammas) / (nd * (nd - 1.0));
  const double kyy = within_sum(yc, gammas) / (md * (md - 1.0));
  const double kxy = cross_sum(xc, yc, gammas) / (nd * md);
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
