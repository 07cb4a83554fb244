#pragma once
// Sample-quality metrics: distances between a generated sample set x (N, D) and a reference set
// y (M, D). Inputs are float32; every sum is accumulated in double and the result is a double.
// A tensor of rank > 2 is read as points in its flattened trailing dimensions ((N, C, H, W) is N
// points in C*H*W dimensions); a rank-1 tensor (N,) is N points on the line.
#include <cstddef>
#include <string>
#include <vector>

#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// Exact 2-Wasserstein distance between the uniform empirical measures of x and y, N == M:
///   W2(x, y) = sqrt( min over permutations p of (1/N) sum_i ||x_i - y_p(i)||^2 ).
/// (Birkhoff: for equal sizes and uniform weights the optimal plan is a permutation.) Solved
/// exactly by solve_assignment_sqeuclidean (assignment.hpp): costs on the fly for D <= 3, else an
/// N x N matrix (8 N^2 bytes). N = 5000 in 2-D takes ~2 s. Throws Error if N != M or the
/// dimensions differ.
double w2_exact(const Tensor& x, const Tensor& y);

/// Sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015):
///   SW2(x, y) = sqrt( (1/P) sum_{p=1..P} W2^2(<theta_p, x>, <theta_p, y>) ),
/// theta_p uniform on the unit sphere S^{D-1} (D normals from rng.normal(), normalised, drawn in
/// order p = 1..P). The 1-D W2^2 is exact: for N == M the mean squared difference of the sorted
/// projections; for N != M the integral over t in [0, 1] of (F^-1(t) - G^-1(t))^2 of the two
/// empirical quantile functions. The average is an unbiased Monte Carlo estimate of SW2^2.
/// For y = x + v: SW2^2 = E[(theta.v)^2] = |v|^2 / D.
double sliced_w2(const Tensor& x, const Tensor& y, std::size_t projections, Rng& rng);

/// Squared maximum mean discrepancy (Gretton et al. 2012, JMLR, eq. 3: the unbiased U-statistic)
/// with a sum of Gaussian kernels k(a, b) = sum_s exp(-||a - b||^2 / (2 s^2)):
///   MMD_u^2 = 1/(N(N-1)) sum_{i!=j} k(x_i, x_j) + 1/(M(M-1)) sum_{i!=j} k(y_i, y_j)
///             - 2/(NM) sum_{i,j} k(x_i, y_j).
/// Unbiased, so it can be slightly negative when x and y come from one distribution. Needs
/// N, M >= 2 and positive bandwidths. O((N + M)^2 (D + S)) time (the exponentials in SIMD),
/// O((N + M) D) memory.
double mmd_rbf(const Tensor& x, const Tensor& y, const std::vector<double>& bandwidths);

/// Default MMD bandwidths {0.05, 0.1, 0.2, 0.5, 1, 2}: spans the scales of the 2-D toy data sets
/// in their raw coordinates (unit-size moons, radius-2 eight Gaussians, [-4, 4]^2 checkerboard).
const std::vector<double>& default_mmd_bandwidths();

/// Median heuristic (Gretton et al. 2012): the median pairwise distance ||a - b|| over the pooled
/// sample x u y, a good single bandwidth when the data scale is unknown. Deterministic: when
/// N + M > 1000, uses every k-th point of each set (evenly strided, 500 from each at most).
/// Returns 1 when the median is 0 (most points coincide), where any bandwidth is as good.
double median_heuristic_bandwidth(const Tensor& x, const Tensor& y);

/// Energy distance (Szekely & Rizzo 2013), the V-statistic over all pairs, diagonals included:
///   E(x, y) = 2/(NM) sum_{i,j} ||x_i - y_j|| - 1/N^2 sum_{i,j} ||x_i - x_j||
///             - 1/M^2 sum_{i,j} ||y_i - y_j||.
/// The squared form (not its square root): >= 0 always, 0 for identical sets (up to rounding), and
/// 2 |a - b| between point masses at a and b. O((N + M)^2 D) time.
double energy_distance(const Tensor& x, const Tensor& y);

namespace detail {

/// The point dimension D shared by x and y (product of the trailing dimensions; 1 for rank 1).
/// Throws Error naming `metric` if either set is a scalar or empty, or if the trailing
/// dimensions differ.
inline std::size_t point_dim(const char* metric, const Tensor& x, const Tensor& y) {
  const auto& sx = x.shape();
  const auto& sy = y.shape();
  const auto fail = [&](const std::string& why) {
    throw Error(std::string(metric) + ": " + why + " (x " + shape_str(x) + ", y " + shape_str(y) +
                ")");
  };
  if (sx.empty() || sy.empty()) fail("point sets must have rank >= 1, (N, D...)");
  if (sx[0] == 0 || sy[0] == 0) fail("point sets must be non-empty");
  if (sx.size() != sy.size()) fail("point dimensions differ");
  std::size_t dim = 1;
  for (std::size_t k = 1; k < sx.size(); ++k) {
    if (sx[k] != sy[k]) fail("point dimensions differ");
    dim *= sx[k];
  }
  if (dim == 0) fail("points have zero dimension");
  return dim;
}

/// The elements of t widened to double, in row-major order (differences of floats taken in
/// double are exact, so pairwise distances lose nothing before the sum).
inline std::vector<double> to_double(const Tensor& t) {
  return std::vector<double>(t.data(), t.data() + t.size());
}

}  // namespace detail

}  // namespace diffusion
