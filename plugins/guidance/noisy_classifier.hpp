#pragma once
// A noise-conditional classifier p(y | x_t, t) (Dhariwal & Nichol 2021, sec. 4.1: a classifier
// trained on noisy images x_t at every noise level): any network whose output is one logit per
// class, (N, K), e.g. `mlp` with `output: classes`. What it sees of x_t is fixed here, once, so
// the loss that trains it and the guidance that reads it cannot disagree:
//   input c_in x_t, c_in = 1 / sqrt(alpha_t^2 + sigma_t^2)   (1 on variance-preserving paths; unit
//                                                             scale for standardised data on any path)
//   time  the path's network time c_noise(t)                  (DDPM: the step index; else t)
#include <memory>
#include <vector>

#include <diffusion/plugin.hpp>

namespace diffusion::guidance {

/// log p(y_i | x_i, t_i) of each row's label (N), on the graph (differentiable in x and in the
/// network's weights). x_t (N, ...), one time per row.
Var classifier_log_prob(Network& net, const Var& x_t, const Times& t, const std::vector<int>& labels,
                        const Path& path);

/// A trained classifier network as classifier guidance reads it: the gradient in x_t of the log
/// probability of each row's label, by backpropagation (the weights held constant).
class NetworkClassifier : public NoisyClassifier {
 public:
  NetworkClassifier(std::shared_ptr<Network> network, const Path& path) : net_(std::move(network)), path_(path) {}
  Tensor grad_log_prob(const Tensor& x, const Times& t, const Condition& c) const override;

 private:
  std::shared_ptr<Network> net_;
  const Path& path_;
};

}  // namespace diffusion::guidance
