// The loss of a noise-conditional classifier (Dhariwal & Nichol 2021, sec. 4.1): the
// cross-entropy of the label of x0 given the noisy point x_t = alpha_t x0 + sigma_t z on the
// diffusion's own path, at times drawn as the path trains its denoisers,
//
//   E_t E_(x0, y) E_z [ -log p_phi(y | x_t, t) ],
//
// so that grad_x log p_phi(y | x_t, t) at every t is what classifier guidance adds to the score.
// The classifier is trained by an experiment of its own (`network: {type: mlp, output:
// classes}`, this loss, the `sde:` of the model it will guide) and loaded by the guided
// experiment as a frozen named model. What the network sees of x_t: noisy_classifier.hpp.
//
//   loss: {type: noisy_classifier, t_sampling: iid | low_discrepancy}
#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin.hpp>

#include "noisy_classifier.hpp"

namespace diffusion::guidance {
namespace {

class NoisyClassifierLoss : public Loss {
 public:
  explicit NoisyClassifierLoss(bool low_discrepancy) : low_discrepancy_(low_discrepancy) {}
  /// Never read: a classifier is not a denoiser (the experiment that trains it has no sampler).
  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    const Path& path = *ctx.path;
    const Source& source = ctx.source_or_default();
    if (!source.standard_normal())
      throw Error("noisy_classifier: the classifier learns the labels of Gaussian-noised data; the source is " +
                  source.name() + " (use the standard Gaussian source)");
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0], per = x0.size() / n;
    c.check_rows(n, "loss");
    if (!c.has_labels())
      throw Error("noisy_classifier: the batch has no labels (train a classifier network, mlp with output: classes, "
                  "on a labelled data set)");
    for (std::size_t i = 0; i < n; ++i)
      if (c.is_null(i)) throw Error("noisy_classifier: the labels are the classifier's targets; drop none (train.label_dropout 0)");
    const Tensor t = low_discrepancy_ ? low_discrepancy_times(path, n, rng) : path.sample_times(n, rng);
    const Tensor z = source.sample(shape, rng);
    Tensor x_t = Tensor::from_shape(shape);
    Times times(n);
    for (std::size_t i = 0; i < n; ++i) {
      times[i] = t(i);
      const auto a = static_cast<float>(path.alpha(t(i))), s = static_cast<float>(path.sigma(t(i)));
      for (std::size_t j = i * per; j < (i + 1) * per; ++j) x_t.data()[j] = a * x0.data()[j] + s * z.data()[j];
    }
    return {-classifier_log_prob(net, Var(std::move(x_t)), times, c.labels(), path), t};
  }

 private:
  bool low_discrepancy_;
  std::shared_ptr<const Preconditioning> pre_ = make_prediction("eps");
};

}  // namespace

DIFFUSION_REGISTER(losses, "noisy_classifier", [](const ConfigNode& c, const BuildContext&) {
  return std::make_shared<NoisyClassifierLoss>(c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) ==
                                               "low_discrepancy");
});

}  // namespace diffusion::guidance
