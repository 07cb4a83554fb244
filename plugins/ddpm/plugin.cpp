// DDPM (Ho et al. 2020) and DDIM (Song et al. 2021): the discrete VP SDE with linear and
// cosine schedules, eps/x0/v regression losses, ancestral and DDIM samplers.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("ddpm")
