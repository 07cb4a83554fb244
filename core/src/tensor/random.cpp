#include "diffusion/tensor/random.hpp"

#include <cmath>

namespace diffusion {
namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// FNV-1a: a stable hash of a stream name, independent of the standard library.
std::uint64_t hash_name(std::string_view name) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

}  // namespace

Rng::Rng(std::uint64_t seed) : seed_(seed) {
  std::uint64_t x = seed;
  for (auto& w : s_) w = splitmix64(x);
}

Rng Rng::split(std::string_view name) const {
  std::uint64_t x = seed_ ^ 0x5851f42d4c957f2dULL;
  std::uint64_t a = splitmix64(x);
  return Rng(a ^ hash_name(name));
}

Rng Rng::split(std::uint64_t index) const {
  std::uint64_t x = seed_ ^ 0x14057b7ef767814fULL;
  std::uint64_t a = splitmix64(x);
  std::uint64_t y = index;
  return Rng(a ^ splitmix64(y));
}

std::uint64_t Rng::next_u64() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float Rng::uniform() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }

double Rng::uniform_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

float Rng::normal() {
  // Box-Muller; 1 - u keeps the log argument in (0, 1].
  const double u1 = 1.0 - uniform_double();
  const double u2 = uniform_double();
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

std::uint64_t Rng::integer(std::uint64_t n) {
  if (n == 0) throw Error("Rng::integer: n must be positive");
  // Lemire's nearly-divisionless method: multiply-high with rejection of the biased range.
  __uint128_t m = static_cast<__uint128_t>(next_u64()) * n;
  auto low = static_cast<std::uint64_t>(m);
  if (low < n) {
    const std::uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<__uint128_t>(next_u64()) * n;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

void Rng::fill_normal(Tensor& t, float mean, float std) {
  float* p = t.data();
  const std::size_t n = t.size();
  std::size_t i = 0;
  // Both Box-Muller outputs are used: a pair of uniforms gives a pair of normals.
  for (; i + 1 < n; i += 2) {
    const double u1 = 1.0 - uniform_double();
    const double u2 = uniform_double();
    const double r = std::sqrt(-2.0 * std::log(u1));
    p[i] = mean + std * static_cast<float>(r * std::cos(2.0 * M_PI * u2));
    p[i + 1] = mean + std * static_cast<float>(r * std::sin(2.0 * M_PI * u2));
  }
  if (i < n) p[i] = mean + std * normal();
}

void Rng::fill_uniform(Tensor& t, float lo, float hi) {
  for (auto& v : t) v = lo + (hi - lo) * uniform();
}

void Rng::fill_integer(Tensor& t, std::uint64_t n) {
  for (auto& v : t) v = static_cast<float>(integer(n));
}

Tensor Rng::normal(const Shape& shape, float mean, float std) {
  Tensor t = Tensor::from_shape(shape);
  fill_normal(t, mean, std);
  return t;
}

Tensor Rng::uniform(const Shape& shape, float lo, float hi) {
  Tensor t = Tensor::from_shape(shape);
  fill_uniform(t, lo, hi);
  return t;
}

Tensor Rng::integer(const Shape& shape, std::uint64_t n) {
  Tensor t = Tensor::from_shape(shape);
  fill_integer(t, n);
  return t;
}

}  // namespace diffusion
