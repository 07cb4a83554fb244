#pragma once
// Randomised quasi-Monte Carlo (RQMC) normal draws: rows that are each exactly N(0, I) but
// together cover the space more evenly than independent draws, so a statistic of n samples
// (a mean, a mass split between modes, a Wasserstein distance to evenly spread data) varies far
// less between seeds. Through a deterministic sampler (DDIM with eta = 0, a probability-flow
// ODE) the evenness carries over to the generated samples.
//
// The points are the Halton sequence (bases 2, 3, 5, ... one per dimension) randomised by an
// independent random permutation of the digits at each digit position of each dimension
// (Owen 1997; Mathe 1999), then mapped through the standard normal quantile function. Each
// point is uniform on the unit cube, and points stay in distinct elementary intervals.
#include <cstddef>

#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// Halton-based RQMC is no more even than independent draws in many dimensions; beyond this
/// many values per sample rqmc_normal refuses.
constexpr std::size_t kMaxRqmcDimension = 32;

/// The standard normal quantile function Phi^{-1}(p) for p in (0, 1), to about 1e-15 relative;
/// -inf at 0 and +inf at 1, NaN outside [0, 1].
double normal_quantile(double p);

/// A tensor of `shape` = (n, ...) whose n rows are n points of a randomised Halton sequence in
/// d = (product of the trailing dims) dimensions, mapped to N(mean, std^2) per value. Every row
/// is marginally N(mean, std^2 I); the rows are not independent. Throws if d > kMaxRqmcDimension.
Tensor rqmc_normal(const Shape& shape, Rng& rng, float mean = 0.0f, float std = 1.0f);

}  // namespace diffusion
