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
  /// sum_i cost(i, col_of_row[i]), summed in double from the input costs.
  double cost = 0.0;
  /// Dual potentials: u_i + v_j <= cost(i, j) for all i, j, with equality on the assignment
  /// (up to rounding), so sum(u) + sum(v) == cost proves optimality (LP duality).
  std::vector<double> row_potential;
  std::vector<double> col_potential;
};

/// Solves min over permutations p of sum_i C[i, p(i)] for a square n x n cost matrix given
/// row-major (C[i, j] = cost[i * n + j]); every entry must be finite (throws Error otherwise).
/// Jonker & Volgenant (1987): column reduction, augmenting row reduction, then Dijkstra
/// shortest augmenting paths on reduced costs C[i, j] - v_j. Exact in double precision;
/// O(n^3) worst case, far less for geometric costs. n == 0 gives an empty assignment.
Assignment solve_assignment(const double* cost, std::size_t n);

/// The same, for a cost matrix held in a vector of size n * n (throws Error on a size mismatch).
Assignment solve_assignment(const std::vector<double>& cost, std::size_t n);

}  // namespace diffusion
