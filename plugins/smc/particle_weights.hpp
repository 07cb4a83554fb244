#pragma once
// Log-weights of a particle system: normalising them, their effective sample size and the
// log-mean that enters the normalising-constant estimate. Kept in double: a weight of 1e-40 is
// still a weight.
#include <vector>

namespace diffusion::smc {

/// log sum_i exp(l_i); -inf when every l_i is -inf.
double log_sum_exp(const std::vector<double>& log_w);
/// log (1/N) sum_i exp(l_i): one factor of the normalising-constant estimate.
double log_mean_exp(const std::vector<double>& log_w);
/// W_i = exp(l_i) / sum_j exp(l_j); Error naming `where` when every weight is 0 (or one is NaN).
std::vector<double> normalized_weights(const std::vector<double>& log_w, const char* where);
/// ESS = (sum w)^2 / sum w^2 (Kong, Liu & Wong 1994), in [1, N]; 0 when every weight is 0.
double effective_sample_size(const std::vector<double>& log_w);

}  // namespace diffusion::smc
