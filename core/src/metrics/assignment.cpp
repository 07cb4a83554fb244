#include "diffusion/metrics/assignment.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "diffusion/metrics/stop_request.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {
namespace {

constexpr int kFree = -1;
constexpr double kInf = std::numeric_limits<double>::infinity();

/// The smallest value across the SIMD lanes of `best` and its column in `best_at` (ties: the
/// lowest column), as the scalar tail of a vectorised scan expects them.
std::pair<double, int> lowest_lane(const xsimd::batch<double>& best, const xsimd::batch<double>& best_at) {
  constexpr int L = static_cast<int>(xsimd::batch<double>::size);
  double best_v[L], best_p[L];
  best.store_unaligned(best_v);
  best_at.store_unaligned(best_p);
  double lowest = kInf;
  int arg = kFree;
  for (int l = 0; l < L; ++l)
    if (best_v[l] < lowest || (best_v[l] == lowest && best_p[l] < arg))
      lowest = best_v[l], arg = static_cast<int>(best_p[l]);
  return {lowest, arg};
}

// The unscanned column nearest to the search tree, after relaxing one row's edges.
struct Nearest {
  double dist;
  int pos;
};

// Column models provide costs by column "position" and one Dijkstra relaxation step. Scanned
// columns must drop out of the relaxation; two ways, chosen by kMovesScanned:
// - true: the solver swaps each scanned column behind the unscanned ones (the model moves its
//   per-column data in swap()), so a step is one contiguous pass over positions [0, rem) that
//   gets shorter as the search grows (Crouse 2016 keeps a list of remaining columns; here the
//   data moves instead, so the pass needs no gathers). For columns computed on the fly.
// - false: columns stay put and a scanned column's distance is set to -inf, which no relaxation
//   improves and the minimum skips. For matrix rows, which must be read in order to stream.

// Columns of a dense cost matrix, in place.
class MatrixColumns {
 public:
  static constexpr bool kMovesScanned = false;
  MatrixColumns(const double* cost, int n) : c_(cost), n_(n) {}
  int size() const { return n_; }
  int original(int p) const { return p; }
  double cost(int i, int p) const { return row(i)[p]; }
  void costs(int i, double* out) const { std::copy(row(i), row(i) + n_, out); }
  // d[p] = min(d[p], C[i, p] - v[p] - h) for every column, vectorised, and the unscanned column
  // (d > -inf) of least distance, ties to the lowest position.
  Nearest relax(int i, double h, int, const double* v, double* d, double* pred,
                const int*) const {
    using B = xsimd::batch<double>;
    constexpr int L = static_cast<int>(B::size);
    const double* r = row(i);
    const B bh(h), row_id(static_cast<double>(i)), step(static_cast<double>(L)), scanned(-kInf);
    double lane[L];
    for (int l = 0; l < L; ++l) lane[l] = l;
    B at = B::load_unaligned(lane), best(kInf), best_at(-1.0);
    int p = 0;
    for (; p + L <= n_; p += L) {
      const B red = (B::load_unaligned(r + p) - B::load_unaligned(v + p)) - bh;
      B dd = B::load_unaligned(d + p);
      const auto better = red < dd;
      dd = xsimd::select(better, red, dd);
      dd.store_unaligned(d + p);
      xsimd::select(better, row_id, B::load_unaligned(pred + p)).store_unaligned(pred + p);
      const auto lower = (dd < best) & (dd != scanned);
      best = xsimd::select(lower, dd, best);
      best_at = xsimd::select(lower, at, best_at);
      at = at + step;
    }
    auto [lowest, arg] = lowest_lane(best, best_at);
    for (; p < n_; ++p) {
      const double red = r[p] - v[p] - h;
      if (red < d[p]) d[p] = red, pred[p] = i;
      if (d[p] < lowest && d[p] != -kInf) lowest = d[p], arg = p;
    }
    return {lowest, arg};
  }

 private:
  const double* row(int i) const { return c_ + std::size_t(i) * n_; }
  const double* c_;
  int n_;
};

// Squared distances to points y_j, computed on the fly: no n x n matrix, and for small dims the
// data of all columns (dim + 3 doubles each) stays in cache. Coordinates are stored by dimension
// (coordinate k of position p at ys_[k * n + p]) so a SIMD batch of columns loads contiguously.
// Dim > 0 fixes the dimension at compile time; Dim == 0 reads it at run time.
template <int Dim>
class EuclideanColumns {
 public:
  static constexpr bool kMovesScanned = true;
  EuclideanColumns(const double* x, const double* y, int n, int dim)
      : x_(x), n_(n), dim_(Dim > 0 ? Dim : dim), orig_(n), ys_(std::size_t(dim_) * n) {
    std::iota(orig_.begin(), orig_.end(), 0);
    for (int k = 0; k < dim_; ++k)
      for (int j = 0; j < n; ++j) ys_[std::size_t(k) * n + j] = y[std::size_t(j) * dim_ + k];
  }
  int size() const { return n_; }
  int original(int p) const { return orig_[p]; }
  void swap(int p, int q) {
    std::swap(orig_[p], orig_[q]);
    for (int k = 0; k < dim(); ++k) {
      double* yk = ys_.data() + std::size_t(k) * n_;
      std::swap(yk[p], yk[q]);
    }
  }
  double cost(int i, int p) const {
    const double* xi = x_ + std::size_t(i) * dim();
    double t = xi[0] - ys_[p];
    double s = t * t;
    for (int k = 1; k < dim(); ++k) t = xi[k] - ys_[std::size_t(k) * n_ + p], s = s + t * t;
    return s;
  }
  void costs(int i, double* out) const {
    for (int p = 0; p < n_; ++p) out[p] = cost(i, p);
  }
  // d[p] = min(d[p], C[i, p] - v[p] - h) over positions [0, rem), vectorised, and the nearest of
  // them, ties to the lowest position.
  Nearest relax(int i, double h, int rem, const double* v, double* d, double* pred,
                const int*) const {
    using B = xsimd::batch<double>;
    constexpr int L = static_cast<int>(B::size);
    const int dim = this->dim();
    const double* xi = x_ + std::size_t(i) * dim;
    const double* y0 = ys_.data();
    const B x0(xi[0]), bh(h), row_id(static_cast<double>(i)), step(static_cast<double>(L));
    double lane[L];
    for (int l = 0; l < L; ++l) lane[l] = l;
    B at = B::load_unaligned(lane), best(kInf), best_at(-1.0);
    int p = 0;
    for (; p + L <= rem; p += L) {
      B t = x0 - B::load_unaligned(y0 + p);
      B s = t * t;
      for (int k = 1; k < dim; ++k) {
        t = B(xi[k]) - B::load_unaligned(y0 + std::size_t(k) * n_ + p);
        s = s + t * t;
      }
      const B r = (s - B::load_unaligned(v + p)) - bh;
      B dd = B::load_unaligned(d + p);
      const auto better = r < dd;
      dd = xsimd::select(better, r, dd);
      dd.store_unaligned(d + p);
      xsimd::select(better, row_id, B::load_unaligned(pred + p)).store_unaligned(pred + p);
      const auto lower = dd < best;
      best = xsimd::select(lower, dd, best);
      best_at = xsimd::select(lower, at, best_at);
      at = at + step;
    }
    auto [lowest, arg] = lowest_lane(best, best_at);
    for (; p < rem; ++p) {
      const double r = cost(i, p) - v[p] - h;
      if (r < d[p]) d[p] = r, pred[p] = i;
      if (d[p] < lowest) lowest = d[p], arg = p;
    }
    return {lowest, arg};
  }

 private:
  int dim() const { return Dim > 0 ? Dim : dim_; }
  const double* x_;
  int n_, dim_;
  std::vector<int> orig_;
  std::vector<double> ys_;
};

// Jonker & Volgenant (1987), "A shortest augmenting path algorithm for dense and sparse linear
// assignment problems". Only column prices v are stored; a row's price is implicit,
// u_i = min_j (C[i, j] - v_j). Every phase keeps each assigned row's column at that minimum,
// which is complementary slackness for (u, v): once every row is assigned, it is optimal.
template <class Columns>
class Solver {
 public:
  explicit Solver(Columns& columns)
      : m_(columns),
        n_(columns.size()),
        col_of_row_(n_, kFree),
        owner_(n_, kFree),
        v_(n_, kInf),
        d_(n_),
        pred_(n_),
        buf_(n_) {}

  // From scratch: column reduction, one pass of augmenting row reduction, path searches. (More
  // reduction passes barely change the number of rows the searches visit in total: the cheap
  // early augmentations are the ones they save.)
  void run() {
    std::vector<int> free_rows = column_reduction();
    free_rows = augmenting_row_reduction(std::move(free_rows));
    for (int f : free_rows) augment(f);
  }

  // Assignment and potentials in the original column order; the cost is summed from the model.
  Assignment result() const {
    Assignment a;
    a.col_of_row.resize(n_);
    a.row_potential.resize(n_);
    a.col_potential.resize(n_);
    for (int i = 0; i < n_; ++i) {
      const int p = col_of_row_[i];
      const double cip = m_.cost(i, p);
      a.col_of_row[i] = static_cast<std::size_t>(m_.original(p));
      a.row_potential[i] = cip - v_[p];
      a.cost += cip;
    }
    for (int p = 0; p < n_; ++p) a.col_potential[m_.original(p)] = v_[p];
    return a;
  }

 private:
  // v_j = min_i C[i, j]; each column takes its cheapest row if that row is still free (columns
  // scanned from the last, so the lowest-index column wins a row several want).
  std::vector<int> column_reduction() {
    double* c = buf_.data();
    std::vector<int> best_row(n_, 0);
    for (int i = 0; i < n_; ++i) {  // row by row: costs are produced a row at a time
      throw_if_stop_requested();
      m_.costs(i, c);
      for (int p = 0; p < n_; ++p)
        if (c[p] < v_[p]) v_[p] = c[p], best_row[p] = i;
    }
    std::vector<int> times_chosen(n_, 0);
    for (int p = n_ - 1; p >= 0; --p) {
      const int i = best_row[p];
      if (times_chosen[i]++ == 0) col_of_row_[i] = p, owner_[p] = i;
    }
    // Reduction transfer: a row matched by exactly one column hands its slack to that column's
    // price, making the column less attractive to others; it stays optimal for its own row.
    std::vector<int> free_rows;
    for (int i = 0; i < n_; ++i) {
      if (times_chosen[i] == 0) {
        free_rows.push_back(i);
      } else if (times_chosen[i] == 1) {
        throw_if_stop_requested();
        const int p1 = col_of_row_[i];
        m_.costs(i, c);
        double slack = kInf;
        for (int p = 0; p < n_; ++p)
          if (p != p1) slack = std::min(slack, c[p] - v_[p]);
        if (slack < kInf) v_[p1] -= slack;
      }
    }
    return free_rows;
  }

  // Each free row takes its cheapest column, lowering that column's price to the second-cheapest
  // level so the displaced owner moves on; when the two cheapest tie, the row takes the second
  // one instead of cycling. Returns the rows still free.
  std::vector<int> augmenting_row_reduction(std::vector<int> queue) {
    double* c = buf_.data();
    std::vector<int> still_free;
    // Strict price drops guarantee progress in exact arithmetic, but by tiny steps near ties;
    // the budget hands long chains to the path searches, which are exact anyway.
    std::size_t budget = std::size_t(n_);
    std::size_t k = 0;
    while (k < queue.size()) {
      const int i = queue[k++];
      throw_if_stop_requested();
      m_.costs(i, c);
      double u1 = kInf, u2 = kInf;
      int p1 = kFree, p2 = kFree;
      for (int p = 0; p < n_; ++p) {
        const double h = c[p] - v_[p];
        if (h < u2) {
          if (h >= u1) {
            u2 = h, p2 = p;
          } else {
            u2 = u1, p2 = p1;
            u1 = h, p1 = p;
          }
        }
      }
      int displaced = owner_[p1];
      const bool strict = u1 < u2;
      if (strict) {
        v_[p1] -= u2 - u1;
      } else if (displaced != kFree) {
        p1 = p2;
        displaced = owner_[p1];
      }
      col_of_row_[i] = p1;
      owner_[p1] = i;
      if (displaced != kFree) {
        col_of_row_[displaced] = kFree;
        if (strict && budget > 0) {
          --budget;
          queue[--k] = displaced;  // reprocess at once: its slot is done with
        } else {
          still_free.push_back(displaced);
        }
      }
    }
    return still_free;
  }

  void swap(int p, int q) {
    if (p == q) return;
    m_.swap(p, q);
    std::swap(v_[p], v_[q]);
    std::swap(d_[p], d_[q]);
    std::swap(pred_[p], pred_[q]);
    std::swap(owner_[p], owner_[q]);
    if (owner_[p] != kFree) col_of_row_[owner_[p]] = p;
    if (owner_[q] != kFree) col_of_row_[owner_[q]] = q;
  }

  // Dijkstra from free row f over reduced costs until the nearest column is free, one row
  // relaxation per step; then the price update and the augmentation along the path.
  void augment(int f) {
    double* d = d_.data();
    std::fill(d, d + n_, kInf);
    scanned_.clear();
    int rem = n_;  // kMovesScanned: positions [0, rem) unscanned, [rem, n) scanned
    int i = f, sink = kFree;
    double h = 0.0, mind = 0.0;  // h: row i's price relative to the tree's root
    while (sink == kFree) {
      // One relaxation is O(n): a stop request is seen within one, however long the path.
      throw_if_stop_requested();
      const Nearest near = m_.relax(i, h, rem, v_.data(), d, pred_.data(), owner_.data());
      mind = near.dist;
      int p = near.pos;
      if (owner_[p] == kFree) {
        sink = p;
        break;
      }
      if constexpr (Columns::kMovesScanned) {
        swap(p, --rem);
        p = rem;
      } else {
        scanned_.emplace_back(p, d[p]);
        d[p] = -kInf;
      }
      i = owner_[p];
      h = m_.cost(i, p) - v_[p] - mind;
    }
    // Scanned columns get cheaper by how much closer than the sink they were: every assigned
    // column stays optimal for its row and the whole path becomes tight. (The min guards
    // against a rounding step that left a scanned column an ulp beyond the sink.)
    if constexpr (Columns::kMovesScanned) {
      for (int p = rem; p < n_; ++p) v_[p] += std::min(d[p], mind) - mind;
    } else {
      for (const auto& [p, dist] : scanned_) v_[p] += std::min(dist, mind) - mind;
    }
    for (int p = sink;;) {
      const int r = static_cast<int>(pred_[p]);
      owner_[p] = r;
      const int prev = col_of_row_[r];
      col_of_row_[r] = p;
      if (r == f) break;
      p = prev;
    }
  }

  Columns& m_;
  int n_;
  std::vector<int> col_of_row_, owner_;  // row -> position, position -> row
  std::vector<double> v_, d_;
  std::vector<double> pred_;  // row indices, as doubles so the SIMD relaxation can blend them
  std::vector<double> buf_;
  std::vector<std::pair<int, double>> scanned_;  // !kMovesScanned: position, distance
};

template <class Columns>
Assignment solve(Columns& columns) {
  Solver<Columns> solver(columns);
  solver.run();
  return solver.result();
}

// Above dim 3, streaming rows of one n x n matrix beats computing costs on the fly (2-3x at
// dim 8-16, n = 5000), as long as the matrix fits in this budget.
constexpr std::size_t kMaxMatrixBytes = std::size_t(1) << 30;

std::vector<double> squared_distances(const double* x, const double* y, std::size_t n,
                                      std::size_t dim);

Assignment solve_points(const double* x, const double* y, int n, int dim) {
  // (A multiscale start from the solution on every second point, in the spirit of Merigot 2011,
  // was tried and dropped: from its extrapolated prices the reduction leaves far more rows to
  // the path searches than column reduction does from scratch, 2-20x slower on moons at n = 2000
  // and 5000, against moons or a Gaussian.)
  if (dim == 1) {
    EuclideanColumns<1> columns(x, y, n, dim);
    return solve(columns);
  }
  if (dim == 2) {
    EuclideanColumns<2> columns(x, y, n, dim);
    return solve(columns);
  }
  if (dim == 3) {
    EuclideanColumns<3> columns(x, y, n, dim);
    return solve(columns);
  }
  if (std::size_t(n) * std::size_t(n) * sizeof(double) > kMaxMatrixBytes) {
    EuclideanColumns<0> columns(x, y, n, dim);
    return solve(columns);
  }
  const std::vector<double> cost = squared_distances(x, y, n, dim);
  MatrixColumns columns(cost.data(), n);
  return solve(columns);
}

void check_size(std::size_t n) {
  if (n > std::size_t(std::numeric_limits<int>::max() / 2))
    throw Error("solve_assignment: n = " + std::to_string(n) + " is too large");
}

// Above this dimension the squared distances come from one dgemm (||a||^2 + ||b||^2 - 2 a.b):
// O(n^2 dim) either way, but BLAS is ~10x faster for image-sized dim. Below it, direct
// differences, which are exact for float inputs.
constexpr std::size_t kGemmMinDim = 32;

std::vector<double> squared_distances(const double* x, const double* y, std::size_t n,
                                      std::size_t dim) {
  std::vector<double> cost(n * n);
  if (dim < kGemmMinDim) {
    for (std::size_t i = 0; i < n; ++i) {
      throw_if_stop_requested();
      const double* a = x + i * dim;
      double* out = cost.data() + i * n;
      for (std::size_t j = 0; j < n; ++j) {
        const double* b = y + j * dim;
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
  std::vector<double> xx(n, 0.0), yy(n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < dim; ++k) {
      xx[i] += x[i * dim + k] * x[i * dim + k];
      yy[i] += y[i * dim + k] * y[i * dim + k];
    }
  const int ni = static_cast<int>(n), di = static_cast<int>(dim);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, ni, di, -2.0, x, di, y, di, 0.0,
              cost.data(), ni);
  for (std::size_t i = 0; i < n; ++i) {
    double* out = cost.data() + i * n;
    // Cancellation can leave a tiny negative value for near-coincident points.
    for (std::size_t j = 0; j < n; ++j) out[j] = std::max(0.0, out[j] + xx[i] + yy[j]);
  }
  return cost;
}

}  // namespace

Assignment solve_assignment(const double* cost, std::size_t n) {
  check_size(n);
  const std::size_t total = n * n;
  for (std::size_t k = 0; k < total; ++k)
    if (!std::isfinite(cost[k]))
      throw Error("solve_assignment: cost[" + std::to_string(k / n) + ", " +
                  std::to_string(k % n) + "] is not finite (" + std::to_string(cost[k]) + ")");
  if (n == 0) return Assignment{};
  MatrixColumns columns(cost, static_cast<int>(n));
  return solve(columns);
}

Assignment solve_assignment(const std::vector<double>& cost, std::size_t n) {
  if (cost.size() != n * n)
    throw Error("solve_assignment: cost has " + std::to_string(cost.size()) +
                " entries, expected n * n = " + std::to_string(n * n));
  return solve_assignment(cost.data(), n);
}

Assignment solve_assignment_sqeuclidean(const double* x, const double* y, std::size_t n,
                                        std::size_t dim) {
  check_size(n);
  if (dim == 0) throw Error("solve_assignment_sqeuclidean: dim must be positive");
  for (std::size_t k = 0; k < n * dim; ++k)
    if (!std::isfinite(x[k]) || !std::isfinite(y[k]))
      throw Error("solve_assignment_sqeuclidean: point " + std::to_string(k / dim) +
                  " has a non-finite coordinate");
  if (n == 0) return Assignment{};

  // Centre both sets and scale each to unit root-mean-square norm (see the header):
  // xs = (x - mean x) / sx, ys = (y - mean y) / sy; delta = mean(x) - mean(y).
  std::vector<double> xs(x, x + n * dim), ys(y, y + n * dim), delta(dim, 0.0);
  for (std::size_t k = 0; k < dim; ++k) {
    double mx = 0.0, my = 0.0;
    for (std::size_t i = 0; i < n; ++i) mx += x[i * dim + k], my += y[i * dim + k];
    mx /= double(n), my /= double(n);
    for (std::size_t i = 0; i < n; ++i) xs[i * dim + k] -= mx, ys[i * dim + k] -= my;
    delta[k] = mx - my;
  }
  const auto rms = [n](const std::vector<double>& p) {
    double s = 0.0;
    for (double t : p) s += t * t;
    s = std::sqrt(s / double(n));
    return s > 0.0 ? s : 1.0;  // a single repeated point: every permutation is optimal
  };
  const double sx = rms(xs), sy = rms(ys);
  for (double& t : xs) t /= sx;
  for (double& t : ys) t /= sy;

  Assignment a = solve_points(xs.data(), ys.data(), static_cast<int>(n), static_cast<int>(dim));

  // Back to the points as given. With xc = sx xs, yc = sy ys the centred points,
  //   C[i, j] = |xc_i|^2 + |yc_j|^2 + 2 delta.xc_i - 2 delta.yc_j + |delta|^2
  //             + sx sy (Cs[i, j] - |xs_i|^2 - |ys_j|^2),
  // so u_i = sx sy (us_i - |xs_i|^2) + |xc_i|^2 + 2 delta.xc_i + |delta|^2 and
  // v_j = sx sy (vs_j - |ys_j|^2) + |yc_j|^2 - 2 delta.yc_j stay feasible and tight.
  double delta2 = 0.0;
  for (double t : delta) delta2 += t * t;
  const double sxy = sx * sy;
  a.cost = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double* xi = x + i * dim;
    const double* yj = y + a.col_of_row[i] * dim;
    double cost = 0.0, xs2 = 0.0, ys2 = 0.0, xc2 = 0.0, yc2 = 0.0, dx = 0.0, dy = 0.0;
    for (std::size_t k = 0; k < dim; ++k) {
      const double t = xi[k] - yj[k];
      cost += t * t;
      // Potentials of row i and of column i.
      const double a1 = xs[i * dim + k], b1 = ys[i * dim + k];
      xs2 += a1 * a1, ys2 += b1 * b1;
      xc2 += (sx * a1) * (sx * a1), yc2 += (sy * b1) * (sy * b1);
      dx += delta[k] * sx * a1, dy += delta[k] * sy * b1;
    }
    a.cost += cost;
    a.row_potential[i] = sxy * (a.row_potential[i] - xs2) + xc2 + 2.0 * dx + delta2;
    a.col_potential[i] = sxy * (a.col_potential[i] - ys2) + yc2 - 2.0 * dy;
  }
  return a;
}

}  // namespace diffusion
