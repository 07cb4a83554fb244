#pragma once
// Exact dense linear assignment: the combinatorial core of exact optimal transport between two
// uniform empirical measures of equal size (w2_exact, minibatch-OT flow matching).
#include <cstddef>
#include <vector>

namespace diffusion {

/// An optimal assignment together with the dual potentials that certify it.
struct Assignment {
  /// col_of_row[i] is the column assigned to row i (a permutation of 0..n-1).
  std::vector<std::size_t> col_of_row;
  /// sum_i C[i, col_of_row[i]], summed in double from the costs as given.
  double cost = 0.0;
  /// Dual potentials: u_i + v_j <= C[i, j] for all i, j, with equality on the assignment (both up
  /// to rounding), so sum(u) + sum(v) == cost certifies optimality (LP duality).
  std::vector<double> row_potential;
  std::vector<double> col_potential;
};

/// Solves min over permutations p of sum_i C[i, p(i)] for a square n x n cost matrix given
/// row-major (C[i, j] = cost[i * n + j]); every entry must be finite (throws Error otherwise).
/// Jonker & Volgenant (1987): column reduction and augmenting row reduction, then one Dijkstra
/// shortest augmenting path per remaining row on reduced costs C[i, j] - v_j. Exact in double
/// precision; O(n^3) worst case, much less in practice. n == 0 gives an empty assignment.
Assignment solve_assignment(const double* cost, std::size_t n);

/// The same, for a cost matrix held in a vector of size n * n (throws Error on a size mismatch).
Assignment solve_assignment(const std::vector<double>& cost, std::size_t n);

/// The assignment for squared Euclidean costs C[i, j] = ||x_i - y_j||^2 between two sets of n
/// points (x, y row-major n x dim). The optimal permutation maximises sum_i x_i . y_p(i), so it
/// does not change when either set is translated or scaled by a positive factor; both sets are
/// centred and scaled to unit RMS norm first, so a mean offset or a spread mismatch no longer
/// has to be transported point by point (the path searches get several times shorter). For
/// n >= 1200 the search starts from prices extrapolated from the problem on every other point
/// (recursively), which helps most when the two sets differ in shape. For dim <= 3 costs are
/// computed on the fly with SIMD (O(n dim) memory); above, from an n x n matrix (8 n^2 bytes,
/// dgemm for dim >= 32) while it fits in 1 GiB, on the fly beyond. Cost and potentials refer to
/// the points as given. Throws Error on non-finite coordinates or dim == 0.
Assignment solve_assignment_sqeuclidean(const double* x, const double* y, std::size_t n,
                                        std::size_t dim);

}  // namespace diffusion
