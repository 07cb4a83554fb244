#pragma once
// Finite-difference gradient checks for autodiff ops.
//
// For f(inputs) -> Var, the checked scalar is L = sum(f(x) * R) with R a fixed random tensor of
// f's output shape: a random projection, so a gradient routed to the wrong output element (a
// missing transpose, a permuted axis) changes L's gradient and is caught even for non-scalar
// outputs. The analytic gradient comes from one backward with seed R; the numeric one from a
// fourth-order central difference, (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h, with L
// summed in double. The ops are float32, so h cannot be tiny: h = 2^-7 * max(1, |x|) keeps the
// rounding noise near 1e-5 while the O(h^4) truncation error stays far below the tolerance.
// A wrong factor of 2 or a transposed gradient misses the tolerance by orders of magnitude.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/tensor/random.hpp"

namespace grad_check {

using diffusion::Shape;
using diffusion::Tensor;
using diffusion::Var;
using Fn = std::function<Var(const std::vector<Var>&)>;

struct Options {
  /// Relative step: h = step * max(1, |x|), rounded to a power of two so x +- h is exact-ish.
  double step = 1.0 / 128;
  /// Per element: |analytic - numeric| <= atol * max(1, max|numeric|) + rtol * |numeric|.
  double rtol = 1e-2;
  double atol = 1e-3;
  /// Seed of the projection R.
  std::uint64_t seed = 7;
};

/// N(0, 1) entries.
inline Tensor normal(const Shape& s, std::uint64_t seed) {
  diffusion::Rng rng(seed);
  return rng.normal(s);
}

/// U[lo, hi) entries.
inline Tensor uniform(const Shape& s, std::uint64_t seed, float lo, float hi) {
  diffusion::Rng rng(seed);
  return rng.uniform(s, lo, hi);
}

/// Entries of magnitude in [lo, hi) with random sign: away from kinks (abs, relu) and poles (div).
inline Tensor away_from_zero(const Shape& s, std::uint64_t seed, float lo = 0.3f,
                             float hi = 1.5f) {
  diffusion::Rng rng(seed);
  Tensor t = rng.uniform(s, lo, hi);
  for (float& v : t) v = rng.uniform() < 0.5f ? -v : v;
  return t;
}

/// sum(f(xs) * r) in double, without recording a graph.
inline double projected(const Fn& f, const std::vector<Tensor>& xs, const Tensor& r) {
  diffusion::NoGradScope no_grad;
  std::vector<Var> vars;
  for (const Tensor& x : xs) vars.emplace_back(x, false);
  const Var y = f(vars);
  REQUIRE(diffusion::shape_of(y.value()) == diffusion::shape_of(r));
  double s = 0.0;
  const float* py = y.value().data();
  const float* pr = r.data();
  for (std::size_t i = 0; i < r.size(); ++i) s += static_cast<double>(py[i]) * pr[i];
  return s;
}

/// Checks every input's gradient of f against finite differences.
inline void check_gradients(const Fn& f, const std::vector<Tensor>& inputs,
                            const Options& opt = {}) {
  std::vector<Var> leaves;
  for (const Tensor& x : inputs) leaves.emplace_back(x, true);
  const Var y = f(leaves);
  diffusion::Rng rng(opt.seed);
  const Tensor r = rng.normal(diffusion::shape_of(y.value()));
  y.backward(r);

  std::size_t failures = 0, checked = 0;
  std::ostringstream report;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& analytic = leaves[i].grad();
    REQUIRE(diffusion::shape_of(analytic) == diffusion::shape_of(inputs[i]));
    std::vector<double> numeric(inputs[i].size());
    std::vector<Tensor> xs = inputs;
    for (std::size_t j = 0; j < inputs[i].size(); ++j) {
      const float x0 = inputs[i].data()[j];
      const double h =
          std::exp2(std::round(std::log2(opt.step * std::max(1.0, std::fabs(double(x0))))));
      const auto at = [&](double dx) {
        xs[i].data()[j] = static_cast<float>(x0 + dx);
        const double v = projected(f, xs, r);
        xs[i].data()[j] = x0;
        return v;
      };
      numeric[j] = (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h);
    }
    double scale = 1.0;
    for (double v : numeric) scale = std::max(scale, std::fabs(v));
    for (std::size_t j = 0; j < numeric.size(); ++j) {
      const double a = analytic.data()[j], n = numeric[j];
      ++checked;
      if (!(std::fabs(a - n) <= opt.atol * scale + opt.rtol * std::fabs(n))) {
        if (failures < 8)
          report << "input " << i << " " << diffusion::shape_str(inputs[i]) << " element " << j
                 << ": analytic " << a << " numeric " << n << "\n";
        ++failures;
      }
    }
  }
  INFO("gradient mismatches (" << failures << " of " << checked << "):\n" << report.str());
  CHECK(failures == 0);
}

}  // namespace grad_check
