#include "toy_datasets.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace diffusion::toy {
namespace {

constexpr double kPi = 3.14159265358979323846;

[[noreturn]] void fail(const char* dataset, const std::string& what) {
  throw Error(std::string("toy data ") + dataset + ": " + what);
}

// A macro, so the message is only built when the check fails: a batch is drawn every training
// step, and a step makes no heap allocation.
#define TOY_REQUIRE(ok, dataset, what) \
  do {                                 \
    if (!(ok)) fail(dataset, what);    \
  } while (0)

std::string num(double v) { return std::to_string(v); }

// Noise is drawn even when its scale is 0, so the same seed gives the same underlying points at
// every noise level (common random numbers across a noise sweep).
void put(float* p, std::size_t i, double a, double b, double noise, Rng& rng) {
  const double ea = rng.normal(), eb = rng.normal();
  p[2 * i] = static_cast<float>(a + noise * ea);
  p[2 * i + 1] = static_cast<float>(b + noise * eb);
}

Tensor points(std::size_t n) { return Tensor::from_shape({n, 2}); }

template <class T>
T* prepare(std::vector<T>* out, std::size_t n) {
  if (!out) return nullptr;
  out->assign(n, T{});
  return out->data();
}

}  // namespace

Tensor moons(std::size_t n, double noise, Rng& rng, std::vector<int>* labels, bool even) {
  TOY_REQUIRE(noise >= 0.0 && std::isfinite(noise), "moons", "noise must be >= 0, got " + num(noise));
  Tensor x = points(n);
  float* p = x.data();
  int* lab = prepare(labels, n);
  // Point i at angle a in [0, pi] along its moon.
  const auto place = [&](std::size_t i, int moon, double a) {
    if (moon == 0)
      put(p, i, std::cos(a), std::sin(a), noise, rng);
    else
      put(p, i, 1.0 - std::cos(a), 0.5 - std::sin(a), noise, rng);
    if (lab) lab[i] = moon;
  };
  if (!even) {
    for (std::size_t i = 0; i < n; ++i) {
      const int moon = static_cast<int>(rng.integer(2));
      place(i, moon, kPi * rng.uniform_double());
    }
    return x;
  }
  // As sklearn's make_moons: n/2 points on the upper moon and the rest on the lower one, spread
  // evenly along each arc. Jittered strata (one uniform draw per stratum) instead of linspace
  // keep that evenness while every batch is a fresh draw. Rows are then shuffled, so any
  // prefix of the batch is a fair subsample.
  const std::size_t upper = n / 2;
  std::vector<std::size_t, PoolAllocator<std::size_t>> order(n);  // pooled: no heap allocation per batch
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.integer(i)]);
  for (std::size_t k = 0; k < n; ++k) {
    const int moon = k < upper ? 0 : 1;
    const std::size_t count = moon == 0 ? upper : n - upper, j = moon == 0 ? k : k - upper;
    place(order[k], moon, kPi * (double(j) + rng.uniform_double()) / double(count));
  }
  return x;
}

Tensor circles(std::size_t n, double noise, double factor, Rng& rng, std::vector<int>* labels) {
  TOY_REQUIRE(noise >= 0.0 && std::isfinite(noise), "circles",
          "noise must be >= 0, got " + num(noise));
  TOY_REQUIRE(factor > 0.0 && factor < 1.0, "circles",
          "factor (inner radius) must be in (0, 1), got " + num(factor));
  Tensor x = points(n);
  float* p = x.data();
  int* lab = prepare(labels, n);
  for (std::size_t i = 0; i < n; ++i) {
    const int circle = static_cast<int>(rng.integer(2));
    const double a = 2.0 * kPi * rng.uniform_double();
    const double r = circle == 0 ? 1.0 : factor;
    put(p, i, r * std::cos(a), r * std::sin(a), noise, rng);
    if (lab) lab[i] = circle;
  }
  return x;
}

Tensor swiss_roll(std::size_t n, double noise, Rng& rng, std::vector<float>* position) {
  TOY_REQUIRE(noise >= 0.0 && std::isfinite(noise), "swiss_roll",
          "noise must be >= 0, got " + num(noise));
  Tensor x = points(n);
  float* p = x.data();
  float* pos = prepare(position, n);
  for (std::size_t i = 0; i < n; ++i) {
    const double u = rng.uniform_double();
    const double t = 1.5 * kPi * (1.0 + 2.0 * u);
    put(p, i, t * std::cos(t) / 5.0, t * std::sin(t) / 5.0, noise, rng);
    if (pos) pos[i] = static_cast<float>(u);
  }
  return x;
}

Tensor eight_gaussians(std::size_t n, double stddev, double radius, Rng& rng,
                       std::vector<int>* labels) {
  TOY_REQUIRE(stddev >= 0.0 && std::isfinite(stddev), "eight_gaussians",
          "stddev must be >= 0, got " + num(stddev));
  TOY_REQUIRE(radius > 0.0 && std::isfinite(radius), "eight_gaussians",
          "radius must be > 0, got " + num(radius));
  Tensor x = points(n);
  float* p = x.data();
  int* lab = prepare(labels, n);
  for (std::size_t i = 0; i < n; ++i) {
    const int k = static_cast<int>(rng.integer(8));
    const double a = k * kPi / 4.0;
    put(p, i, radius * std::cos(a), radius * std::sin(a), stddev, rng);
    if (lab) lab[i] = k;
  }
  return x;
}

double eight_gaussians_log_density(double x, double y, double stddev, double radius) {
  TOY_REQUIRE(stddev > 0.0 && std::isfinite(stddev), "eight_gaussians",
              "a density needs stddev > 0, got " + num(stddev));
  double lp[8], top = -std::numeric_limits<double>::infinity();
  for (int k = 0; k < 8; ++k) {
    const double a = k * kPi / 4, dx = x - radius * std::cos(a), dy = y - radius * std::sin(a);
    lp[k] = -(dx * dx + dy * dy) / (2 * stddev * stddev);
    top = std::max(top, lp[k]);
  }
  double sum = 0;
  for (const double l : lp) sum += std::exp(l - top);
  return top + std::log(sum / 8) - std::log(2 * kPi * stddev * stddev);
}

Tensor checkerboard(std::size_t n, Rng& rng, std::vector<int>* labels) {
  Tensor x = points(n);
  float* p = x.data();
  int* lab = prepare(labels, n);
  // A coordinate lo + 2u, u < 1, can round up to the cell's upper edge in float; keep it inside.
  const auto in_cell = [&rng](int cell) {
    const float lo = 2.0f * static_cast<float>(cell), hi = lo + 2.0f;
    const float v = lo + 2.0f * rng.uniform();
    return v < hi ? v : std::nextafter(hi, lo);
  };
  for (std::size_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng.integer(8));
    // Cells are indexed by floor(coord / 2) in {-2, -1, 0, 1}; two black cells per board row,
    // shifted by one in odd rows.
    const int cy = -2 + c / 2;
    const int cx = -2 + 2 * (c % 2) + (cy + 2) % 2;
    p[2 * i] = in_cell(cx);
    p[2 * i + 1] = in_cell(cy);
    if (lab) lab[i] = c;
  }
  return x;
}

Tensor pinwheel(std::size_t n, double radial_std, double tangential_std, std::size_t arms,
                double rate, Rng& rng, std::vector<int>* labels) {
  TOY_REQUIRE(radial_std >= 0.0 && tangential_std >= 0.0, "pinwheel",
          "radial_std and tangential_std must be >= 0, got " + num(radial_std) + ", " +
              num(tangential_std));
  TOY_REQUIRE(arms >= 1, "pinwheel", "needs at least one arm");
  TOY_REQUIRE(std::isfinite(rate), "pinwheel", "rate must be finite");
  Tensor x = points(n);
  float* p = x.data();
  int* lab = prepare(labels, n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto k = rng.integer(arms);
    const double r = 1.0 + radial_std * rng.normal();
    const double w = tangential_std * rng.normal();
    // The spiral: points further out along the arm are rotated more, by rate * exp(r).
    const double a = 2.0 * kPi * static_cast<double>(k) / static_cast<double>(arms) +
                     rate * std::exp(r);
    const double c = std::cos(a), s = std::sin(a);
    p[2 * i] = static_cast<float>(2.0 * (c * r - s * w));
    p[2 * i + 1] = static_cast<float>(2.0 * (s * r + c * w));
    if (lab) lab[i] = static_cast<int>(k);
  }
  return x;
}

}  // namespace diffusion::toy
