// Denoising score matching (Vincent 2011) and noise-conditional score networks (Song & Ermon
// 2019, 2020): DSM at one noise level with Langevin dynamics, DSM over geometric noise levels
// with annealed Langevin dynamics.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("score_matching")
