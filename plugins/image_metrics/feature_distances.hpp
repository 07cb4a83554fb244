#pragma once
// The distances between two sets of feature vectors that fd and kid report, free of any
// network (the metrics apply them to a classifier's features; the tests to raw points):
//
//   Frechet distance (Heusel et al. 2017, eq. 6 / sec. "FID"; Dowson & Landau 1982) between the
//   Gaussians fitted to the two sets:
//       d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
//   Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2): S1 S2 is similar to the symmetric
//   positive semi-definite S1^(1/2) S2 S1^(1/2), so the trace is the sum of the square roots of
//   the latter's eigenvalues. Both square roots come from symmetric eigendecompositions in double
//   (LAPACK through xt::linalg::eigh), eigenvalues below 0 (rounding) clipped to 0: no complex
//   parts to discard as with a general sqrtm.
//
//   Kernel distance (Binkowski et al. 2018, "KID", sec. 3 and appendix): the unbiased estimator
//   of MMD^2 (Gretton et al. 2012, eq. 3) with the cubic polynomial kernel
//   k(x, y) = (x.y / d + 1)^3,
//       MMD^2_u = 1/(m(m-1)) sum_(i != j) k(x_i, x_j) + 1/(n(n-1)) sum_(i != j) k(y_i, y_j)
//                 - 2/(m n) sum_(i, j) k(x_i, y_j),
//   averaged over random subsets of each set (without replacement within a subset).
#include <cstddef>

#include <xtensor/xtensor.hpp>

#include <diffusion/tensor/random.hpp>
#include <diffusion/tensor/tensor.hpp>

namespace diffusion::image_metrics {

/// Mean and covariance (divided by N - 1, as numpy.cov) of the rows of x (N, D), in double.
struct GaussianFit {
  xt::xtensor<double, 1> mean;
  xt::xtensor<double, 2> cov;
};
GaussianFit fit_gaussian(const Tensor& x);

/// The Frechet distance d^2 between N(mu1, s1) and N(mu2, s2); s1, s2 symmetric PSD.
double frechet_distance(const xt::xtensor<double, 1>& mu1, const xt::xtensor<double, 2>& s1,
                        const xt::xtensor<double, 1>& mu2, const xt::xtensor<double, 2>& s2);
/// The Frechet distance between the Gaussians fitted to the rows of a (N, D) and b (M, D).
double frechet_distance(const Tensor& a, const Tensor& b);

/// MMD^2_u between all rows of a (m, d) and all rows of b (n, d), cubic polynomial kernel;
/// m, n >= 2.
double mmd2_unbiased_cubic(const Tensor& a, const Tensor& b);

struct KernelDistance {
  double mean = 0.0;  ///< mean of MMD^2_u over the subsets
  double std = 0.0;   ///< its sample standard deviation over the subsets (0 for one subset)
};
/// MMD^2_u over `subsets` pairs of random subsets of `subset_size` rows of a and of b
/// (subset_size <= both row counts).
KernelDistance kernel_distance(const Tensor& a, const Tensor& b, std::size_t subsets, std::size_t subset_size, Rng& rng);

}  // namespace diffusion::image_metrics
