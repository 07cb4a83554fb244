#pragma once
// The classic parameterisations as preconditionings (registered as eps, x0, v, score, velocity).
#include <memory>
#include <string>

#include "diffusion/model/preconditioning.hpp"

namespace diffusion {

/// "eps" (Ho et al. 2020), "x0", "v" (Salimans & Ho 2022: F = alpha eps - sigma x0), "score"
/// (Song et al. 2021: F = grad log p_t = -eps / sigma) and "velocity" (flow matching:
/// F = dx_t/dt = alpha' x0 + sigma' eps). Error for another name.
std::shared_ptr<const Preconditioning> make_prediction(const std::string& name);

}  // namespace diffusion
