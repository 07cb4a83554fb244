#include "feature_distances.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <xtensor-blas/xlinalg.hpp>

namespace diffusion::image_metrics {
namespace {

void check_rows(const Tensor& x, std::size_t min_rows, const char* what) {
  if (x.dimension() != 2 || x.shape()[0] < min_rows)
    throw Error(std::string(what) + ": expected at least " + std::to_string(min_rows) + " rows of features (N, D), got " +
                shape_str(x));
}

xt::xtensor<double, 2> matmul(const xt::xtensor<double, 2>& a, const xt::xtensor<double, 2>& b) {
  const std::size_t n = a.shape()[0], k = a.shape()[1], m = b.shape()[1];
  xt::xtensor<double, 2> c = xt::zeros<double>({n, m});
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t l = 0; l < k; ++l) {
      const double ail = a(i, l);
      for (std::size_t j = 0; j < m; ++j) c(i, j) += ail * b(l, j);
    }
  return c;
}

/// The PSD square root V diag(sqrt(max(w, 0))) V^T of a symmetric matrix with eigenpairs (w, V).
xt::xtensor<double, 2> psd_sqrt(const xt::xtensor<double, 2>& s) {
  const auto [w, v] = xt::linalg::eigh(s);
  const std::size_t d = s.shape()[0];
  xt::xtensor<double, 2> vs = v;
  for (std::size_t j = 0; j < d; ++j) {
    const double r = std::sqrt(std::max(w(j), 0.0));
    for (std::size_t i = 0; i < d; ++i) vs(i, j) *= r;
  }
  return matmul(vs, xt::xtensor<double, 2>(xt::transpose(v)));
}

/// Rows of x (N, d) widened to double.
std::vector<double> widen(const Tensor& x) { return std::vector<double>(x.data(), x.data() + x.size()); }

double cubic_kernel(const double* x, const double* y, std::size_t d) {
  double dot = 0;
  for (std::size_t l = 0; l < d; ++l) dot += x[l] * y[l];
  const double base = dot / double(d) + 1.0;
  return base * base * base;
}

/// sum over pairs (i, j) of k(a_i, b_j), the diagonal left out when `skip_diagonal` (a = b:
/// then each pair i < j is computed once and counted twice, k being symmetric).
double kernel_sum(const double* a, std::size_t m, const double* b, std::size_t n, std::size_t d, bool skip_diagonal) {
  double total = 0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = skip_diagonal ? i + 1 : 0; j < n; ++j) total += cubic_kernel(a + i * d, b + j * d, d);
  return skip_diagonal ? 2.0 * total : total;
}

double mmd2_rows(const double* a, std::size_t m, const double* b, std::size_t n, std::size_t d) {
  return kernel_sum(a, m, a, m, d, true) / (double(m) * double(m - 1)) +
         kernel_sum(b, n, b, n, d, true) / (double(n) * double(n - 1)) -
         2.0 * kernel_sum(a, m, b, n, d, false) / (double(m) * double(n));
}

/// `k` distinct rows of x (N, d) drawn at random (a partial Fisher-Yates shuffle), as doubles.
std::vector<double> random_rows(const std::vector<double>& x, std::size_t rows, std::size_t d, std::size_t k, Rng& rng) {
  std::vector<std::size_t> order(rows);
  std::iota(order.begin(), order.end(), 0);
  for (std::size_t i = 0; i < k; ++i) std::swap(order[i], order[i + rng.integer(rows - i)]);
  std::vector<double> out(k * d);
  for (std::size_t i = 0; i < k; ++i) std::copy(x.begin() + order[i] * d, x.begin() + (order[i] + 1) * d, out.begin() + i * d);
  return out;
}

}  // namespace

GaussianFit fit_gaussian(const Tensor& x) {
  check_rows(x, 2, "fd");
  const std::size_t n = x.shape()[0], d = x.shape()[1];
  GaussianFit g{xt::zeros<double>({d}), xt::zeros<double>({d, d})};
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) g.mean(j) += x.data()[i * d + j];
  g.mean /= double(n);
  std::vector<double> centred(d);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < d; ++j) centred[j] = x.data()[i * d + j] - g.mean(j);
    for (std::size_t j = 0; j < d; ++j)
      for (std::size_t l = j; l < d; ++l) g.cov(j, l) += centred[j] * centred[l];
  }
  for (std::size_t j = 0; j < d; ++j)
    for (std::size_t l = j; l < d; ++l) g.cov(l, j) = g.cov(j, l) /= double(n - 1);
  return g;
}

double frechet_distance(const xt::xtensor<double, 1>& mu1, const xt::xtensor<double, 2>& s1,
                        const xt::xtensor<double, 1>& mu2, const xt::xtensor<double, 2>& s2) {
  const std::size_t d = mu1.size();
  if (mu2.size() != d || s1.shape()[0] != d || s1.shape()[1] != d || s2.shape()[0] != d || s2.shape()[1] != d)
    throw Error("fd: the two Gaussians have different dimensions");
  double mean_term = 0, trace = 0;
  for (std::size_t j = 0; j < d; ++j) mean_term += (mu1(j) - mu2(j)) * (mu1(j) - mu2(j)), trace += s1(j, j) + s2(j, j);
  // Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2): the sum of the square roots of the
  // eigenvalues of a symmetric PSD matrix (symmetrised against rounding).
  const xt::xtensor<double, 2> r = psd_sqrt(s1);
  xt::xtensor<double, 2> m = matmul(matmul(r, s2), r);
  m = 0.5 * (m + xt::transpose(m));
  const auto w = xt::linalg::eigvalsh(m);
  double trace_sqrt = 0;
  for (std::size_t j = 0; j < d; ++j) trace_sqrt += std::sqrt(std::max(w(j), 0.0));
  return mean_term + trace - 2.0 * trace_sqrt;
}

double frechet_distance(const Tensor& a, const Tensor& b) {
  check_rows(a, 2, "fd (samples)");
  check_rows(b, 2, "fd (reference)");
  if (a.shape()[1] != b.shape()[1]) throw Error("fd: samples " + shape_str(a) + " and reference " + shape_str(b) + " differ");
  const GaussianFit ga = fit_gaussian(a), gb = fit_gaussian(b);
  return frechet_distance(ga.mean, ga.cov, gb.mean, gb.cov);
}

double mmd2_unbiased_cubic(const Tensor& a, const Tensor& b) {
  check_rows(a, 2, "kid (samples)");
  check_rows(b, 2, "kid (reference)");
  if (a.shape()[1] != b.shape()[1]) throw Error("kid: samples " + shape_str(a) + " and reference " + shape_str(b) + " differ");
  const std::vector<double> x = widen(a), y = widen(b);
  return mmd2_rows(x.data(), a.shape()[0], y.data(), b.shape()[0], a.shape()[1]);
}

KernelDistance kernel_distance(const Tensor& a, const Tensor& b, std::size_t subsets, std::size_t subset_size, Rng& rng) {
  check_rows(a, 2, "kid (samples)");
  check_rows(b, 2, "kid (reference)");
  const std::size_t d = a.shape()[1], m = a.shape()[0], n = b.shape()[0];
  if (b.shape()[1] != d) throw Error("kid: samples " + shape_str(a) + " and reference " + shape_str(b) + " differ");
  if (subsets == 0 || subset_size < 2 || subset_size > std::min(m, n))
    throw Error("kid: subsets of " + std::to_string(subset_size) + " rows out of " + std::to_string(m) + " samples and " +
                std::to_string(n) + " reference rows (need 2 <= subset_size <= both)");
  const std::vector<double> x = widen(a), y = widen(b);
  std::vector<double> values;
  for (std::size_t s = 0; s < subsets; ++s) {
    const std::vector<double> xs = random_rows(x, m, d, subset_size, rng), ys = random_rows(y, n, d, subset_size, rng);
    values.push_back(mmd2_rows(xs.data(), subset_size, ys.data(), subset_size, d));
  }
  KernelDistance k;
  for (const double v : values) k.mean += v / double(values.size());
  if (values.size() > 1) {
    double var = 0;
    for (const double v : values) var += (v - k.mean) * (v - k.mean);
    k.std = std::sqrt(var / double(values.size() - 1));
  }
  return k;
}

}  // namespace diffusion::image_metrics
