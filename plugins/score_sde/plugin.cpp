// Score-based generative modelling through SDEs (Song et al. 2021): the VP, sub-VP and VE SDEs
// on continuous time (paths `vp`, `subvp`, `ve`: sde_paths), the continuous denoising score
// matching loss (`continuous_dsm`, with Song et al. 2021b's likelihood weighting),
// predictor-corrector (`pc`: pc_sampler, predictors, correctors) and probability-flow ODE
// samplers, and the likelihood of data through the probability-flow ODE.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("score_sde")
