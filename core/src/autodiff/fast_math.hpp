#pragma once
// Float exp, sin and cos written so that GCC vectorises the loops that call them (8 lanes with
// AVX2), and the activation functions built on them. Internal to the core.
//
// Why not std::exp / std::sin: a libm call keeps every loop that makes it scalar; in a small
// MLP's training step silu alone was a third of the time, and the sinusoidal time embedding's
// sin/cos another 5%. Why bit masks rather than `x > 89 ? inf : y` or clamping floats: GCC
// threads such branches (or sinks the arithmetic into them) and then refuses to vectorise.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "diffusion/autodiff/autodiff.hpp"

namespace diffusion::fast {

inline std::int32_t bits(float x) {
  std::int32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
inline float from_bits(std::int32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

/// exp(x) after Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r,
/// and 2^n written into exponent bits (as two factors, so n = 128 and the subnormal range come
/// out right). Within 2 ulp of std::exp; inf/0/NaN where it gives them.
inline float exp(float x) {
  // Round x/ln2 to an integer by adding 1.5 * 2^23: the sum's low mantissa bits hold it.
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  std::int32_t k = bits(t) - 0x4B400000;
  float r = x - n * 0.693359375f;  // ln2 split in two so that n ln2 is exact
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  k = k > 128 ? 128 : k;  // beyond these the product overflows to inf or underflows to 0
  k = k < -160 ? -160 : k;
  const std::int32_t k1 = k >> 1, k2 = k - k1;
  const float y = p * from_bits((k1 + 127) << 23) * from_bits((k2 + 127) << 23);
  // |x| so large that the rounding trick fails: force inf or 0 (NaN falls through as NaN).
  const std::int32_t hi = -static_cast<std::int32_t>(x > 89.0f);
  const std::int32_t lo = -static_cast<std::int32_t>(x < -104.0f);
  return from_bits((bits(y) & ~(hi | lo)) | (0x7F800000 & hi));
}

inline float sigmoid(float x) { return 1.0f / (1.0f + fast::exp(-x)); }

/// erf(x) by Abramowitz & Stegun 7.1.26 on |x|, erf = 1 - t (a1 + t (a2 + ... a5 t)) e^{-x^2} with
/// t = 1 / (1 + p |x|), and x's sign copied back: absolute error below 1.5e-7 (about 2 ulp of
/// 1 + erf, which is what GELU reads), and it vectorises through fast::exp where std::erf made
/// GELU a third of a DiT training step.
inline float erf(float x) {
  const std::int32_t sign = bits(x) & static_cast<std::int32_t>(0x80000000);
  const float ax = from_bits(bits(x) & 0x7FFFFFFF);
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  const float poly =
      t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float e = 1.0f - poly * fast::exp(-ax * ax);
  return from_bits(bits(e) | sign);
}

/// Beyond this |x| the three-part reduction by pi/4 loses accuracy; callers use std::sin/cos.
constexpr float kTrigMaxArg = 8192.0f;

/// sin(x) (quadrant = 0) or cos(x) (quadrant = 1) after Cephes' sinf/cosf, for |x| <=
/// kTrigMaxArg: x is reduced by a multiple j of pi/4 (pi/4 in three parts, so j pi/4 is exact)
/// and a polynomial for sin or cos on [-pi/4, pi/4] picked by the octant. Within 2 ulp there.
/// cos(x) = sin(x + pi/2): it is the same code one quadrant on.
inline float sin_quadrant(float x, std::int32_t quadrant) {
  const std::int32_t sign_x = bits(x) & static_cast<std::int32_t>(0x80000000);
  // |x|, capped at kTrigMaxArg so the int conversion below is defined (NaN caps too); as
  // integers, since non-negative floats order like their bits and an integer min vectorises.
  const std::int32_t abits = bits(x) & 0x7FFFFFFF, cap = 0x46000000;  // cap: 8192.f
  const std::int32_t over = -static_cast<std::int32_t>(abits > cap);
  const float ax = from_bits((abits & ~over) | (cap & over));
  std::int32_t j = static_cast<std::int32_t>(ax * 1.27323954473516f);  // 4/pi
  j = (j + 1) & ~1;  // even octant: the nearest multiple of pi/2
  const float y = static_cast<float>(j);
  const float r = ((ax - y * 0.78515625f) - y * 2.4187564849853515625e-4f) -
                  y * 3.77489497744594108e-8f;
  const float z = r * r;
  const float s = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * r + r;
  const float c =
      ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z -
      0.5f * z + 1.0f;
  // Quarter turns from sin at |x|: q = j/2 (+1 for cos). Odd q swaps to the cos polynomial,
  // q & 2 flips the sign; sin is odd (so x's sign applies) while cos is even.
  const std::int32_t q = (j >> 1) + quadrant;
  const std::int32_t use_c = -(q & 1);
  const float v = from_bits((bits(c) & use_c) | (bits(s) & ~use_c));
  const std::int32_t flip = ((q & 2) << 30) ^ (sign_x & (quadrant - 1));
  return from_bits(bits(v) ^ flip);
}

/// f(z) for a fused activation.
inline float activate(Activation a, float z) {
  switch (a) {
    case Activation::relu: return z > 0.0f ? z : 0.0f;
    case Activation::silu: return z * sigmoid(z);
    case Activation::gelu: return 0.5f * z * (1.0f + fast::erf(z * 0.70710678118654752f));
    case Activation::tanh: return std::tanh(z);
    case Activation::sigmoid: return sigmoid(z);
    case Activation::identity: return z;
  }
  return z;
}

/// y[i] = f(z[i]) for i < n (y may alias z). One loop per activation, so each vectorises.
void activate(Activation a, const float* z, float* y, std::size_t n);
/// out[i] = g[i] f'(z[i]), with y = f(z) at hand for the derivatives written in terms of it.
void activate_backward(Activation a, const float* g, const float* z, const float* y, float* out,
                       std::size_t n);

/// y[i] = f(z[i]), then z[i] replaced by what activate_backward_kept needs: sigmoid(z) for silu
/// (its derivative is s + y (1 - s), no exp needed), z itself for the others.
void activate_keep(Activation a, float* z, float* y, std::size_t n);
/// activate_backward from what activate_keep left in `kept`; the same numbers, bit for bit.
void activate_backward_kept(Activation a, const float* g, const float* kept, const float* y,
                            float* out, std::size_t n);

}  // namespace diffusion::fast
