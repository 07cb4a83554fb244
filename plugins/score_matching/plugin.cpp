// Denoising score matching (Vincent 2011) and noise-conditional score networks (Song & Ermon
// 2019, 2020): DSM at one noise level with Langevin dynamics, DSM over geometric noise levels
// with annealed Langevin dynamics.
//
//   path     noise_levels       x~ = x + sigma_i z, geometric sigma_1 > ... > sigma_L as the
//                               whole steps L-1..0 (noise_levels_path.hpp); `sigma:` alone is
//                               one level
//   loss     dsm                1/2 lambda(sigma) ||s_theta(x~, sigma) + (x~ - x) / sigma^2||^2,
//                               lambda = sigma^2, s_theta read through a preconditioning (eps:
//                               NCSNv2's F / sigma; score: NCSNv1) (dsm_loss.cpp)
//   sampler  langevin           unadjusted Langevin at the smallest noise level (langevin_sampler.cpp)
//   sampler  annealed_langevin  Algorithm 1 of NCSN on any path's levels, with NCSNv2's final
//                               denoising step (annealed_langevin_sampler.cpp)
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("score_matching")
