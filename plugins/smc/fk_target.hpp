#pragma once
// The diffusion target of Feynman-Kac correctors (Skreta et al. 2025): the marginals
// q_t(x) ∝ prod_i p_{t,i}(x)^beta_i of one or more experts (trained models on one path).
// One expert with beta = 1 is the model itself (plain SMC: TDS, FK steering); one expert with
// beta != 1 is annealing p_t^beta (their section 3.1); several with beta = 1 are a product of
// experts (section 3.2); other betas, a geometric average.
//
// With the target's score S = sum_i beta_i s_i (s_i = grad log p_{t,i} = -eps_i / sigma_t),
// particles follow the reverse SDE of that score, in reverse time tau (dtau = -dt):
//   dx = [-f x + g^2 S] dtau + g dW,
// and by the Feynman-Kac formula (their Proposition 3.1, with the PDE of q_t = prod p_i^beta_i,
// each p_i solving its own Fokker-Planck equation) carry the log-weight increment
//   d log w = [ (sum_i beta_i - 1) f d + (g^2 / 2) (|S|^2 - sum_i beta_i |s_i|^2) ] dtau,
// d the dimension: the divergence and Laplacian terms cancel for this drift, so scores suffice.
// Annealing gives beta (beta - 1) g^2 |s|^2 / 2 (their eq. 15); a product of two experts
// g^2 <s_1, s_2> (their eq. 18). The x-independent first term does not change the particles'
// normalised weights but is the derivative of the log normalising constant, so it enters log Z.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion::smc {

/// One factor p_i^beta_i.
struct Expert {
  std::string slot;  ///< `model`: the sampled denoiser; another: a named model of the experiment
  double beta = 1.0;
  /// How the slot's network is read (null: as the sampled model is, found through its wrappers).
  std::shared_ptr<const Preconditioning> preconditioning;
};

/// The target's prediction at a batch: what the reverse kernel and the weights need.
struct TargetPrediction {
  Tensor x0;     ///< x0_hat of the target's score: (x + sigma^2 S) / alpha
  /// Per row |S|^2 - sum_i beta_i |s_i|^2 (the FKC weight rate over g^2 / 2); empty for a plain target.
  std::vector<double> score_gap;
};

/// The experts of one sampler run, resolved to denoisers.
class BoundTarget {
 public:
  BoundTarget(const Denoiser& model, const std::vector<Expert>& experts, const SampleRequest& req);
  /// Predictions at x (every row at time t).
  void predict(const Tensor& x, double t, const Condition& c, TargetPrediction& out) const;
  /// The same on the autodiff graph: returns x0_hat as a Var of x, fills `out` with its values.
  Var predict_var(const Var& x, double t, const Condition& c, TargetPrediction& out) const;
  /// Network evaluations of the named (non-`model`) experts, by slot.
  std::map<std::string, std::size_t> nfe() const;

 private:
  struct Bound {
    const Denoiser* denoiser;
    std::shared_ptr<CountingDenoiser> owned;  ///< a named model's denoiser, counted
    std::string slot;
    double beta;
  };
  std::vector<Bound> experts_;
  bool plain_;
  mutable Prediction scratch_;
};

class FkTarget {
 public:
  explicit FkTarget(std::vector<Expert> experts);
  /// `experts: [{model: slot, beta: b, preconditioning: p}, ...]`, or `beta: b` for the sampled
  /// model annealed (default: the model alone, beta 1).
  static FkTarget read(const ConfigNode& sampler, const BuildContext& ctx);

  /// The model alone with beta 1: no correction weights.
  bool plain() const;
  double total_beta() const;
  const std::vector<Expert>& experts() const { return experts_; }
  std::vector<std::string> required_models() const;
  BoundTarget bind(const Denoiser& model, const SampleRequest& req) const { return BoundTarget(model, experts_, req); }

 private:
  std::vector<Expert> experts_;
};

}  // namespace diffusion::smc
