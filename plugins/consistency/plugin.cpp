// Consistency models (Song, Dhariwal, Chen & Sutskever 2023, "Consistency Models"; Song &
// Dhariwal 2023, "Improved Techniques for Training Consistency Models"):
//
//   preconditioning `consistency`      f(x, sigma) = c_skip x + c_out F(c_in x, c_noise) with
//                                      f(x, sigma_min) = x (consistency_preconditioning)
//   loss `consistency_distillation`    CD from a frozen teacher slot, one Heun step of its
//                                      probability-flow ODE per pair, an EMA target slot
//   loss `consistency_training`        CT with the improved recipe (iCT): no teacher, no EMA
//   sampler `consistency`              one-step and multistep sampling (CM Algorithm 1)
//
// Every component works on a path with alpha = 1 (x = x0 + sigma z: the EDM path `edm`, or a VE
// path), in the path's sigma; the discretisations are Karras et al.'s (noise_levels.hpp).
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("consistency")
