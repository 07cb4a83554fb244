#pragma once
// The reflection maximal coupling of two Gaussians with one isotropic variance (Bou-Rabee,
// Eberle & Zimmer 2020; De Bortoli et al. 2025, section 3.1 and its Algorithm 2, the rejection
// step of speculative sampling). Given the draft's proposal y ~ q = N(m_q, sd^2 I), return a
// point x with x ~ p = N(m_p, sd^2 I) exactly, equal to y as often as any coupling can make it:
//
//   z = (y - m_q) / sd,   Delta = (m_p - m_q) / sd,   e = Delta / |Delta|
//   accept y with probability min(1, p(y) / q(y)) = min(1, exp(<z, Delta> - |Delta|^2 / 2))
//   otherwise x = m_p + sd (I - 2 e e^T) z          (z reflected in the hyperplane orthogonal to e)
//
// Why the output is exactly p (with eta = (x - m_p) / sd and phi the N(0, I) density): the
// accepted part has density min(q, p); the rejected z has density max(0, phi(z) - phi(z - Delta)),
// and z = R eta with R = I - 2 e e^T (R Delta = -Delta, |R v| = |v|) turns it into
// max(0, phi(eta) - phi(eta + Delta)), which is max(0, p - q) at x; the two add up to p. The
// acceptance probability is 1 - TV(p, q) = 2 Phi(-|Delta| / 2), the largest possible.
//
// sd = 0 (a deterministic last step) is the maximal coupling of two point masses: y is kept
// only if m_q = m_p, and x = m_p otherwise. Header-only: the tests call it directly.
#include <cmath>
#include <cstddef>

namespace diffusion::speculative {

/// Couples the proposal y (d values, drawn as m_q + sd z) with p = N(m_p, sd^2 I) using the
/// uniform u in [0, 1). Writes the output to x (which may alias y) and returns whether y was
/// accepted (then x = y).
template <class MeanQ, class MeanP>
bool reflection_coupling(const float* y, const MeanQ& m_q, const MeanP& m_p, double sd, double u, float* x,
                         std::size_t d) {
  if (sd <= 0) {
    bool same = true;
    for (std::size_t j = 0; j < d; ++j) same = same && double(y[j]) == double(m_p[j]);
    if (!same)
      for (std::size_t j = 0; j < d; ++j) x[j] = float(m_p[j]);
    else if (x != y)
      for (std::size_t j = 0; j < d; ++j) x[j] = y[j];
    return same;
  }
  double z_delta = 0, delta2 = 0;
  for (std::size_t j = 0; j < d; ++j) {
    const double z = (double(y[j]) - double(m_q[j])) / sd, delta = (double(m_p[j]) - double(m_q[j])) / sd;
    z_delta += z * delta, delta2 += delta * delta;
  }
  // log p(y) / q(y) = -|z - Delta|^2 / 2 + |z|^2 / 2.
  const double log_ratio = z_delta - 0.5 * delta2;
  if (log_ratio >= 0 || std::log(u) < log_ratio) {
    if (x != y)
      for (std::size_t j = 0; j < d; ++j) x[j] = y[j];
    return true;
  }
  // <e, z> = <Delta, z> / |Delta|, so (I - 2 e e^T) z = z - 2 (<Delta, z> / |Delta|^2) Delta.
  const double c = 2.0 * z_delta / delta2;
  for (std::size_t j = 0; j < d; ++j) {
    const double z = (double(y[j]) - double(m_q[j])) / sd, delta = (double(m_p[j]) - double(m_q[j])) / sd;
    x[j] = float(double(m_p[j]) + sd * (z - c * delta));
  }
  return false;
}

}  // namespace diffusion::speculative
