#include "diffusion/tensor/quasi_random.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace diffusion {
namespace {

constexpr double kPi = 3.14159265358979323846;

/// The first d primes: Halton's bases.
std::vector<std::uint64_t> first_primes(std::size_t d) {
  std::vector<std::uint64_t> primes;
  for (std::uint64_t c = 2; primes.size() < d; ++c) {
    bool prime = true;
    for (std::uint64_t p : primes) {
      if (p * p > c) break;
      if (c % p == 0) { prime = false; break; }
    }
    if (prime) primes.push_back(c);
  }
  return primes;
}

/// One dimension of a digit-permuted Halton sequence. Digits below position K (base^K >= 2^40)
/// are dropped and each point is taken at the centre of its base^-K cell, so values are never 0
/// or 1 and a point's coordinate is uniform on a grid far finer than a float can resolve.
class PermutedRadicalInverse {
 public:
  PermutedRadicalInverse(std::uint64_t base, Rng& rng) : base_(base) {
    while (cells_ < (std::uint64_t(1) << 40)) cells_ *= base_, ++digits_;
    perm_.resize(digits_ * base_);
    for (std::size_t k = 0; k < digits_; ++k) {
      std::uint64_t* p = perm_.data() + k * base_;
      std::iota(p, p + base_, std::uint64_t(0));
      for (std::uint64_t i = base_; i > 1; --i) std::swap(p[i - 1], p[rng.integer(i)]);
    }
  }

  /// The i-th point's coordinate in (0, 1).
  double operator()(std::uint64_t i) const {
    // Digit k of i (weight base^-(k+1)) is permuted by perm_[k]; zero digits beyond i's length
    // are permuted too, so every point lands uniformly at random within its elementary cell.
    // Horner's rule, digit 0 of i first: it ends up as the leading digit of the fraction.
    std::uint64_t v = 0;
    for (std::size_t k = 0; k < digits_; ++k) {
      v = v * base_ + perm_[k * base_ + i % base_];
      i /= base_;
    }
    return (static_cast<double>(v) + 0.5) / static_cast<double>(cells_);
  }

 private:
  std::uint64_t base_;
  std::uint64_t cells_ = 1;
  std::size_t digits_ = 0;
  std::vector<std::uint64_t> perm_;
};

}  // namespace

double normal_quantile(double p) {
  if (!(p >= 0.0 && p <= 1.0)) return std::numeric_limits<double>::quiet_NaN();
  if (p == 0.0) return -std::numeric_limits<double>::infinity();
  if (p == 1.0) return std::numeric_limits<double>::infinity();
  // Solve in the lower half, where 1 - p is exact (p >= 0.5) and Phi(x) = erfc(-x / sqrt 2) / 2
  // keeps full relative precision far into the tail.
  const bool upper = p > 0.5;
  const double q = upper ? 1.0 - p : p;
  // Start: Abramowitz & Stegun 26.2.23 (absolute error < 4.5e-4).
  const double t = std::sqrt(-2.0 * std::log(q));
  double x = -(t - (2.515517 + t * (0.802853 + t * 0.010328)) /
                       (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))));
  // Halley's method on Phi(x) - q converges cubically: three steps reach rounding error.
  for (int it = 0; it < 3; ++it) {
    const double density = std::exp(-0.5 * x * x) / std::sqrt(2.0 * kPi);
    if (density == 0.0) break;  // q below ~1e-300: keep the start, Phi's tail underflows
    const double r = (0.5 * std::erfc(-x / std::sqrt(2.0)) - q) / density;
    x -= r / (1.0 + 0.5 * x * r);
  }
  return upper ? -x : x;
}

Tensor rqmc_normal(const Shape& shape, Rng& rng, float mean, float std) {
  if (shape.empty()) throw Error("rqmc_normal: the shape needs a leading sample dimension");
  const std::size_t n = shape[0];
  std::size_t d = 1;
  for (std::size_t k = 1; k < shape.size(); ++k) d *= shape[k];
  if (d > kMaxRqmcDimension)
    throw Error("rqmc_normal: samples of " + std::to_string(d) +
                " values are beyond randomised Halton's use (at most " +
                std::to_string(kMaxRqmcDimension) + "); draw them independently instead");
  std::vector<PermutedRadicalInverse> dims;
  dims.reserve(d);
  for (std::uint64_t base : first_primes(d)) dims.emplace_back(base, rng);
  Tensor x = Tensor::from_shape(shape);
  float* px = x.data();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j)
      px[i * d + j] = static_cast<float>(mean + double(std) * normal_quantile(dims[j](i)));
  return x;
}

}  // namespace diffusion
