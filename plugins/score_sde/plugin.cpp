// Score-based generative modelling through SDEs (Song et al. 2021): the VP, sub-VP and VE SDEs
// on continuous time, the continuous denoising score matching loss, predictor-corrector and
// probability-flow ODE samplers, and the likelihood of data through the probability-flow ODE.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("score_sde")
