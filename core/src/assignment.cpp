#include "diffusion/assignment.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>

#include "diffusion/tensor.hpp"

namespace diffusion {
namespace {

constexpr int kFree = -1;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Below this size the dense algorithm is fast enough and the sparse machinery is overhead.
constexpr int kSparseMinSize = 160;
// Candidate columns per row in the sparse phase; optimal partners are almost always among a
// row's few cheapest columns, and certification catches the rest.
constexpr int kCandidates = 12;
// Rounds of certify-and-extend before the dense algorithm finishes the job.
constexpr int kMaxRounds = 12;
// Extra columns a violating row gains per round (its most violated ones).
constexpr int kAddPerRound = 8;

// Jonker & Volgenant (1987), "A shortest augmenting path algorithm for dense and sparse linear
// assignment problems". Only column prices v are stored; a row's price is implicit,
// u_i = min_j (C[i, j] - v_j) over the row's edges. Every phase keeps each assigned row's column
// at that minimum: complementary slackness for (u, v), so a full assignment is optimal.
//
// Dense shortest-path searches cost O(n) per row visited, and on geometric costs (squared
// distances between two samples) each search visits a large share of the rows: O(n^3) in
// practice. So for large n the solver first works on a sparse graph of each row's cheapest
// columns (O(k log n) per row visited), then certifies the result against the full matrix:
// rows with a negative reduced cost C[i, j] - u_i - v_j < 0 on a missing edge gain those edges
// and are re-solved. When no row violates, (u, v) is dual feasible for the dense problem and the
// assignment is optimal for it, not just for the graph.
class Solver {
 public:
  Solver(const double* cost, int n)
      : c_(cost), n_(n), col_of_row_(n, kFree), row_of_col_(n, kFree), v_(n, kInf) {
    double scale = 0.0;
    for (std::size_t k = 0, total = std::size_t(n) * n; k < total; ++k)
      scale = std::max(scale, std::abs(cost[k]));
    // Reduced costs are differences of prices built up over many updates; below this they are
    // rounding noise, not violations (the total cost can be off by at most n * tol).
    tol_ = 1e-13 * (1.0 + scale);
  }

  Assignment run() {
    std::vector<int> best_row = column_minima();
    std::vector<int> free_rows;
    if (n_ < kSparseMinSize) {
      const Dense g{c_, n_};
      free_rows = initial_assignment(g, best_row);
      for (int f : free_rows) augment_dense(f);
      return result();
    }
    build_graph(best_row);
    const Sparse& g = graph_;
    free_rows = initial_assignment(g, best_row);
    for (int f : free_rows) augment_sparse(f);
    for (int round = 0; round < kMaxRounds; ++round) {
      free_rows = certify(/*extend=*/true);
      if (free_rows.empty()) return result();
      for (int f : free_rows) augment_sparse(f);
    }
    // Rare: hand what is left to the dense algorithm, which needs no certificate.
    free_rows = certify(/*extend=*/false);
    for (int f : free_rows) augment_dense(f);
    return result();
  }

 private:
  // A row's edges: every column (dense) or its candidate columns (sparse, CSR).
  struct Dense {
    const double* c;
    int n;
    template <class F>
    void each(int i, F&& f) const {
      const double* r = c + std::size_t(i) * n;
      for (int j = 0; j < n; ++j) f(j, r[j]);
    }
  };
  struct Sparse {
    std::vector<std::size_t> start;
    std::vector<int> col;
    std::vector<double> cost;
    template <class F>
    void each(int i, F&& f) const {
      for (std::size_t e = start[i]; e < start[i + 1]; ++e) f(col[e], cost[e]);
    }
  };

  const double* row(int i) const { return c_ + std::size_t(i) * n_; }

  // v_j = min_i C[i, j] and its row, read row by row so the matrix streams contiguously.
  std::vector<int> column_minima() {
    std::vector<int> best_row(n_, 0);
    for (int i = 0; i < n_; ++i) {
      const double* r = row(i);
      for (int j = 0; j < n_; ++j)
        if (r[j] < v_[j]) v_[j] = r[j], best_row[j] = i;
    }
    return best_row;
  }

  // Each row's kCandidates cheapest columns, plus every column's cheapest row so that column
  // reduction's pairs are edges and every column can be reached.
  void build_graph(const std::vector<int>& best_row) {
    const int k = std::min(kCandidates, n_);
    extra_.assign(n_, {});
    for (int j = 0; j < n_; ++j) extra_[best_row[j]].push_back(j);
    candidates_.assign(std::size_t(n_) * k, 0);
    std::vector<double> buf(n_);
    for (int i = 0; i < n_; ++i) {
      const double* r = row(i);
      std::copy(r, r + n_, buf.begin());
      std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end());
      const double kth = buf[k - 1];
      int* out = &candidates_[std::size_t(i) * k];
      int taken = 0;
      for (int j = 0; j < n_ && taken < k; ++j)  // strictly cheaper first, then ties
        if (r[j] < kth) out[taken++] = j;
      for (int j = 0; j < n_ && taken < k; ++j)
        if (r[j] == kth) out[taken++] = j;
    }
    rebuild_graph();
  }

  // CSR of candidates + extra edges, duplicates removed.
  void rebuild_graph() {
    const int k = std::min(kCandidates, n_);
    Sparse& g = graph_;
    g.start.assign(n_ + 1, 0);
    g.col.clear();
    g.cost.clear();
    std::vector<int> cols;
    for (int i = 0; i < n_; ++i) {
      cols.assign(&candidates_[std::size_t(i) * k], &candidates_[std::size_t(i) * k] + k);
      cols.insert(cols.end(), extra_[i].begin(), extra_[i].end());
      std::sort(cols.begin(), cols.end());
      cols.erase(std::unique(cols.begin(), cols.end()), cols.end());
      for (int j : cols) g.col.push_back(j), g.cost.push_back(row(i)[j]);
      g.start[i + 1] = g.col.size();
    }
  }

  // Column reduction, reduction transfer and two passes of augmenting row reduction (JV
  // sections 3.1-3.2). Cheap, and usually leaves a minority of rows for the path searches.
  template <class G>
  std::vector<int> initial_assignment(const G& g, const std::vector<int>& best_row) {
    // Scanning columns from the last lets the lowest-index column win a row several want.
    std::vector<int> times_chosen(n_, 0);
    for (int j = n_ - 1; j >= 0; --j) {
      const int i = best_row[j];
      if (times_chosen[i]++ == 0) col_of_row_[i] = j, row_of_col_[j] = i;
    }
    // Reduction transfer: a row matched by exactly one column hands its slack to that column's
    // price, making the column less attractive to others; it stays optimal for its own row.
    std::vector<int> free_rows;
    for (int i = 0; i < n_; ++i) {
      if (times_chosen[i] == 0) {
        free_rows.push_back(i);
      } else if (times_chosen[i] == 1) {
        const int j1 = col_of_row_[i];
        double slack = kInf;
        g.each(i, [&](int j, double cij) {
          if (j != j1) slack = std::min(slack, cij - v_[j]);
        });
        if (slack < kInf) v_[j1] -= slack;
      }
    }
    for (int pass = 0; pass < 2 && !free_rows.empty(); ++pass)
      free_rows = augmenting_row_reduction(g, free_rows);
    return free_rows;
  }

  // Each free row takes its cheapest column, lowering that column's price to the second-cheapest
  // level so the displaced owner moves on; when the two cheapest tie, the row takes the second
  // one instead of cycling. Returns the rows still free.
  template <class G>
  std::vector<int> augmenting_row_reduction(const G& g, std::vector<int> queue) {
    std::vector<int> still_free;
    // Strict price drops guarantee progress in exact arithmetic, but by tiny steps near ties;
    // the budget hands long chains to the path searches, which are exact anyway.
    std::size_t budget = 8 * std::size_t(n_) + queue.size();
    std::size_t k = 0;
    while (k < queue.size()) {
      const int i = queue[k++];
      double u1 = kInf, u2 = kInf;
      int j1 = kFree, j2 = kFree;
      g.each(i, [&](int j, double cij) {
        const double h = cij - v_[j];
        if (h < u2) {
          if (h >= u1) {
            u2 = h, j2 = j;
          } else {
            u2 = u1, j2 = j1;
            u1 = h, j1 = j;
          }
        }
      });
      if (j2 == kFree) {  // a row with a single edge: leave it to the path search
        still_free.push_back(i);
        continue;
      }
      int displaced = row_of_col_[j1];
      const bool strict = u1 < u2;
      if (strict) {
        v_[j1] -= u2 - u1;
      } else if (displaced != kFree) {
        j1 = j2;
        displaced = row_of_col_[j1];
      }
      col_of_row_[i] = j1;
      row_of_col_[j1] = i;
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

  // Scanned columns get cheaper by how much closer than the sink they were, keeping every
  // assigned column optimal for its row and making the path tight; then flip the path.
  void finish_path(int f, int sink, double mind, const std::vector<int>& scanned,
                   const double* d, const int* pred) {
    for (int j : scanned) v_[j] += d[j] - mind;
    for (int j = sink;;) {
      const int i = pred[j];
      row_of_col_[j] = i;
      const int prev = col_of_row_[i];
      col_of_row_[i] = j;
      if (i == f) break;
      j = prev;
    }
  }

  // JV's dense augmentation: Dijkstra from free row f over reduced costs, without a heap. Columns
  // at the current minimum distance are scanned as one batch, which matters when costs tie.
  void augment_dense(int f) {
    const int n = n_;
    d_.resize(n);
    pred_.resize(n);
    cols_.resize(n);
    double* d = d_.data();
    int* pred = pred_.data();
    int* cols = cols_.data();
    const double* v = v_.data();
    const int* owner = row_of_col_.data();

    const double* rf = row(f);
    for (int j = 0; j < n; ++j) d[j] = rf[j] - v[j], pred[j] = f, cols[j] = j;

    // cols[0, low): scanned; cols[low, up): at distance `mind`, not yet scanned; cols[up, n): rest.
    int low = 0, up = 0, sink = kFree;
    double mind = 0.0;
    while (sink == kFree) {
      if (low == up) {
        mind = d[cols[up++]];
        for (int k = up; k < n; ++k) {
          const int j = cols[k];
          const double h = d[j];
          if (h <= mind) {
            if (h < mind) up = low, mind = h;
            cols[k] = cols[up], cols[up++] = j;
          }
        }
        for (int k = low; k < up; ++k)
          if (owner[cols[k]] == kFree) {
            sink = cols[k];
            break;
          }
        if (sink != kFree) break;
      }
      const int j1 = cols[low++];
      const int i = owner[j1];
      const double* r = row(i);
      const double h = r[j1] - v[j1] - mind;  // u_i relative to the tree
      for (int k = up; k < n; ++k) {
        const int j = cols[k];
        const double dj = r[j] - v[j] - h;
        if (dj < d[j]) {
          pred[j] = i;
          // <= rather than ==: rounding can put dj an ulp below mind; treat it as a tie.
          if (dj <= mind) {
            d[j] = mind;
            if (owner[j] == kFree) {
              sink = j;
              break;
            }
            cols[k] = cols[up], cols[up++] = j;
          } else {
            d[j] = dj;
          }
        }
      }
    }
    scanned_.assign(cols, cols + low);
    finish_path(f, sink, mind, scanned_, d, pred);
  }

  // Dijkstra from free row f on the sparse graph with a binary heap (lazy deletion). If no free
  // column is reachable through the graph, row f gets every column as an edge and retries.
  void augment_sparse(int f) {
    const int n = n_;
    if (dist_.size() != std::size_t(n)) {
      dist_.assign(n, kInf);
      pred_.assign(n, kFree);
      stamp_.assign(n, 0);
    }
    ++search_;
    double* d = dist_.data();
    int* pred = pred_.data();
    const double* v = v_.data();
    const int* owner = row_of_col_.data();
    touched_.clear();
    scanned_.clear();
    heap_.clear();
    // Among equal distances a free column pops first: it ends the search.
    const auto key = [owner](int j) { return 2 * j + (owner[j] == kFree ? 0 : 1); };
    const auto later = [](const std::pair<double, int>& a, const std::pair<double, int>& b) {
      return a > b;
    };
    int sink = kFree;
    double mind = 0.0;
    const auto relax = [&](int i, double h) {
      graph_.each(i, [&](int j, double cij) {
        if (stamp_[j] == search_) return;  // already scanned
        const double dj = cij - v[j] - h;
        if (dj < d[j]) {
          if (d[j] == kInf) touched_.push_back(j);
          d[j] = dj;
          pred[j] = i;
          heap_.emplace_back(dj, key(j));
          std::push_heap(heap_.begin(), heap_.end(), later);
        }
      });
    };
    relax(f, 0.0);
    while (true) {
      if (heap_.empty()) break;
      std::pop_heap(heap_.begin(), heap_.end(), later);
      const auto [dj, code] = heap_.back();
      heap_.pop_back();
      const int j = code >> 1;
      if (stamp_[j] == search_ || dj > d[j]) continue;  // stale entry
      mind = dj;
      if (owner[j] == kFree) {
        sink = j;
        break;
      }
      stamp_[j] = search_;
      scanned_.push_back(j);
      const int i = owner[j];
      relax(i, row(i)[j] - v[j] - mind);
    }
    if (sink != kFree) {
      // Rounding can leave a scanned column an ulp beyond the sink; clamp so prices only drop.
      for (int j : scanned_) d[j] = std::min(d[j], mind);
      finish_path(f, sink, mind, scanned_, d, pred);
    }
    for (int j : touched_) d[j] = kInf;
    if (sink == kFree) {
      extra_[f].resize(n);
      for (int j = 0; j < n; ++j) extra_[f][j] = j;
      rebuild_graph();
      augment_sparse(f);
    }
  }

  // Checks C[i, j] - v_j >= u_i - tol for every row against the full matrix. Violating rows are
  // unassigned and returned; with `extend`, each first gains its most violated missing columns.
  std::vector<int> certify(bool extend) {
    std::vector<int> violating;
    std::vector<std::pair<double, int>> worst;
    std::vector<int> mark(n_, -1);
    bool added = false;
    for (int i = 0; i < n_; ++i) {
      const double* r = row(i);
      const int xi = col_of_row_[i];
      const double ui = r[xi] - v_[xi];
      const double* v = v_.data();
      worst.clear();
      for (int j = 0; j < n_; ++j) {
        const double red = r[j] - v[j] - ui;
        if (red < -tol_) worst.emplace_back(red, j);
      }
      if (worst.empty()) continue;
      if (extend) {
        graph_.each(i, [&](int j, double) { mark[j] = i; });
        // Violations on existing edges are rounding: the sparse search already saw them.
        worst.erase(std::remove_if(worst.begin(), worst.end(),
                                   [&](const std::pair<double, int>& w) { return mark[w.second] == i; }),
                    worst.end());
        if (worst.empty()) continue;
        const std::size_t take = std::min<std::size_t>(kAddPerRound, worst.size());
        std::partial_sort(worst.begin(), worst.begin() + take, worst.end());
        for (std::size_t t = 0; t < take; ++t) extra_[i].push_back(worst[t].second);
        added = true;
      }
      violating.push_back(i);
    }
    if (added) rebuild_graph();
    for (int i : violating) {
      row_of_col_[col_of_row_[i]] = kFree;
      col_of_row_[i] = kFree;
    }
    return violating;
  }

  Assignment result() const {
    Assignment a;
    a.col_of_row.resize(n_);
    a.row_potential.resize(n_);
    a.col_potential.assign(v_.begin(), v_.end());
    for (int i = 0; i < n_; ++i) {
      const int j = col_of_row_[i];
      const double cij = row(i)[j];
      a.col_of_row[i] = std::size_t(j);
      a.row_potential[i] = cij - v_[j];
      a.cost += cij;
    }
    return a;
  }

  const double* c_;
  int n_;
  double tol_ = 0.0;
  std::vector<int> col_of_row_, row_of_col_;
  std::vector<double> v_;
  // Sparse graph: candidate columns (n x k) and edges added later (certification, fallbacks).
  Sparse graph_;
  std::vector<int> candidates_;
  std::vector<std::vector<int>> extra_;
  // Search scratch, reused across augmentations.
  std::vector<double> d_, dist_;
  std::vector<int> pred_, cols_, scanned_, touched_;
  std::vector<std::uint32_t> stamp_;
  std::uint32_t search_ = 0;
  std::vector<std::pair<double, int>> heap_;
};

}  // namespace

Assignment solve_assignment(const double* cost, std::size_t n) {
  if (n > std::size_t(std::numeric_limits<int>::max() / 2))
    throw Error("solve_assignment: n = " + std::to_string(n) + " is too large");
  const std::size_t total = n * n;
  for (std::size_t k = 0; k < total; ++k)
    if (!std::isfinite(cost[k]))
      throw Error("solve_assignment: cost[" + std::to_string(k / n) + ", " +
                  std::to_string(k % n) + "] is not finite (" + std::to_string(cost[k]) + ")");
  if (n == 0) return Assignment{};
  if (n == 1) return Assignment{{0}, cost[0], {cost[0]}, {0.0}};
  return Solver(cost, static_cast<int>(n)).run();
}

Assignment solve_assignment(const std::vector<double>& cost, std::size_t n) {
  if (cost.size() != n * n)
    throw Error("solve_assignment: cost has " + std::to_string(cost.size()) +
                " entries, expected n * n = " + std::to_string(n * n));
  return solve_assignment(cost.data(), n);
}

}  // namespace diffusion
