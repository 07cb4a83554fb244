#pragma once
// The classic 2-D toy distributions of diffusion and flow papers (sklearn's make_moons /
// make_circles / make_swiss_roll, and the FFJORD toy set: Grathwohl et al. 2019). Each call
// draws a fresh i.i.d. batch from the given Rng, returns it as (n, 2) float32 in the data set's
// raw coordinates (no standardisation), and optionally fills per-point labels
// (labels->size() == n afterwards; pass nullptr to skip). Throws Error on invalid parameters.
#include <cstddef>
#include <vector>

#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion::toy {

/// Two interleaving half circles, as sklearn's make_moons, e ~ N(0, noise^2 I):
///   label 0 (n/2 points):      (cos(pi s), sin(pi s)) + e              (unit circle around (0, 0))
///   label 1 (the other half):  (1 - cos(pi s), 1/2 - sin(pi s)) + e    (unit circle around (1, 1/2))
/// with s evenly spread over [0, 1] (jittered strata: s_j = (j + u_j) / count), rows shuffled.
/// Two 2000-point draws at noise 0.05 are about 0.03 apart in exact W2, as sklearn's.
/// With `even` false every point is drawn on its own instead: its moon with probability 1/2
/// and s ~ U[0, 1] (what truly independent data look like: a binomial split between the moons).
/// Mean (1/2, 1/4). Typical noise: 0.05-0.1.
Tensor moons(std::size_t n, double noise, Rng& rng, std::vector<int>* labels = nullptr, bool even = true);

/// Two concentric circles (sklearn make_circles geometry), a ~ U[0, 2 pi), e ~ N(0, noise^2 I):
///   label 0 (prob 1/2): (cos a, sin a) + e;   label 1 (prob 1/2): factor (cos a, sin a) + e.
/// 0 < factor < 1 (sklearn's default 0.8; 0.5 separates the circles more). Typical noise: 0.05.
Tensor circles(std::size_t n, double noise, double factor, Rng& rng,
               std::vector<int>* labels = nullptr);

/// 2-D Swiss roll: sklearn make_swiss_roll's (x, z) plane scaled by 1/5 as in FFJORD's toy data:
///   t = 1.5 pi (1 + 2 u), u ~ U[0, 1];   point = (t cos t, t sin t) / 5 + e,  e ~ N(0, noise^2 I),
/// so radii run from 0.94 to 2.83. `noise` is in these output units (FFJORD's noise 1.0 before
/// the division is 0.2 here). `position`, if given, receives u in [0, 1] (for colouring plots).
Tensor swiss_roll(std::size_t n, double noise, Rng& rng, std::vector<float>* position = nullptr);

/// Mixture of 8 equally weighted Gaussians on a circle (FFJORD / torchcfm "8gaussians"):
///   k ~ U{0..7} (the label);  point = radius (cos(k pi/4), sin(k pi/4)) + stddev e,  e ~ N(0, I).
/// FFJORD's setting is radius 2 sqrt(2) ~ 2.83 with stddev 0.5 / sqrt(2) ~ 0.35; radius 2,
/// stddev 0.1 gives well separated modes.
Tensor eight_gaussians(std::size_t n, double stddev, double radius, Rng& rng,
                       std::vector<int>* labels = nullptr);
/// log density of that mixture at (x, y): log (1/8) sum_k N((x, y); radius (cos(k pi/4),
/// sin(k pi/4)), stddev^2 I), summed stably. stddev must be positive.
double eight_gaussians_log_density(double x, double y, double stddev, double radius);

/// FFJORD's checkerboard: uniform on the 8 "black" cells of a 4 x 4 board of 2 x 2 cells over
/// [-4, 4)^2, black meaning floor(x/2) + floor(y/2) is even (so the cell [0, 2) x [0, 2) is
/// black). Label: the black cell's index 0..7, row-major from the bottom-left cell.
Tensor checkerboard(std::size_t n, Rng& rng, std::vector<int>* labels = nullptr);

/// Pinwheel (Johnson et al. 2016, SVAE; FFJORD's toy set uses radial_std 0.3, tangential_std
/// 0.1, arms 5, rate 0.25): arm k ~ U{0..arms-1} (the label), r = 1 + radial_std e1,
/// w = tangential_std e2, angle = 2 pi k / arms + rate exp(r);
///   point = 2 R(angle) (r, w),  R the counter-clockwise rotation
/// (the overall scale 2 as in FFJORD; the SVAE paper used 10).
Tensor pinwheel(std::size_t n, double radial_std, double tangential_std, std::size_t arms,
                double rate, Rng& rng, std::vector<int>* labels = nullptr);

}  // namespace diffusion::toy
