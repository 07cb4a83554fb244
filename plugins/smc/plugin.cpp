// Sequential Monte Carlo for diffusion models, as one Feynman-Kac sampler (`smc`) covering
//   - the twisted diffusion sampler (TDS; Wu, Trippe, Naesseth, Blei & Cunningham 2023): twisting
//     functions p~_t(x_t) = G(x0_hat(x_t)) and, optionally, the twisted proposal that shifts the
//     reverse kernel's mean along grad log p~_t;
//   - Feynman-Kac steering (Singhal et al. 2025): potentials of a reward on x0_hat with a
//     temperature, in the difference, max or sum form, with the final weight correction;
//   - Feynman-Kac correctors (Skreta et al. 2025): annealed p^beta and products of experts
//     prod_i p_i^beta_i, moved by the SDE of the target's score and weighted by the
//     Feynman-Kac terms of that SDE;
// and the baseline that TDS corrects, plain gradient guidance (`potential_guidance`).
// Potentials come from the `potentials` registry (potential.hpp): a Gaussian observation
// y = A x + noise, a region indicator, a classifier's log-probability, a reward with a
// temperature. Resampling: multinomial, systematic or residual when the effective sample size
// falls below a threshold.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("smc")
