// Elucidating the Design Space of Diffusion-Based Generative Models (Karras, Aittala, Aila &
// Laine 2022, "EDM"): the sigma path x = x0 + sigma z (`sde: {type: edm}`: edm_path), the
// preconditioning of Table 1 (`edm`: edm_preconditioning), the training loss with log-normal
// noise levels and weight lambda(sigma) (`loss: {type: edm}`: edm_loss), and the deterministic
// Heun sampler (Algorithm 1) with its stochastic variant (Algorithm 2) (`sampler: {type: edm}`:
// edm_sampler). The sampler's noise levels are the core's `karras` time grid (eq. 5, rho = 7).
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("edm")
