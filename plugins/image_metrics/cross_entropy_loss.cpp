// The loss of a classifier of clean data: the cross-entropy of each sample's label,
//
//   loss_i = -log softmax(f_phi(x0_i))_(y_i),
//
// on x0 itself (not on a noised x_t, as the guidance plugin's noisy_classifier): the classifier
// the image metrics read (image_classifier) sees clean images, as Inception does for FID. One
// value per sample, so runexp's training loop shards and averages it as any other loss. The
// labels come from the batch's condition (the run passes them: the network says
// class_conditional()).
//
//   loss: {type: cross_entropy}
#include <string>

#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::image_metrics {
namespace {

class CrossEntropyLoss : public Loss {
 public:
  explicit CrossEntropyLoss(std::size_t classes) : classes_(classes) {}
  /// Never read: a classifier is not a denoiser (its experiment has no sampler).
  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx, Rng&) const override {
    const std::size_t n = x0.shape()[0];
    c.check_rows(n, "loss");
    if (!c.has_labels())
      throw Error("cross_entropy: the batch has no labels (train a classifier network, e.g. image_classifier, whose "
                  "class_conditional() makes the run pass them, on a labelled data set)");
    for (std::size_t i = 0; i < n; ++i)
      if (c.is_null(i)) throw Error("cross_entropy: the labels are the classifier's targets; drop none (train.label_dropout 0)");
    // The time input is not read; each sample is logged at the path's data end, t_min.
    const double t_data = ctx.path ? ctx.path->t_min() : 0.0;
    Tensor times = Tensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) times(i) = static_cast<float>(t_data);
    const Var logits = net.forward(Var(x0), times, Condition());
    if (logits.dim() != 2 || logits.shape()[0] != n || logits.shape()[1] != classes_)
      throw Error("cross_entropy: the network gives " + shape_str(logits.shape()) + ", expected one logit per class (" +
                  std::to_string(n) + ", " + std::to_string(classes_) +
                  "): set network: to a classifier (image_classifier, or mlp with output: classes)");
    const std::size_t k = classes_;
    // Row i's entry of log_softmax is element i K + y_i of the flattened (N K).
    std::vector<std::size_t> picked(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (c.labels()[i] < 0 || static_cast<std::size_t>(c.labels()[i]) >= k)
        throw Error("cross_entropy: label " + std::to_string(c.labels()[i]) + " outside the network's classes 0.." +
                    std::to_string(k - 1));
      picked[i] = i * k + static_cast<std::size_t>(c.labels()[i]);
    }
    return {neg(index_select(reshape(log_softmax(logits, 1), {static_cast<long>(n * k)}), 0, picked)), times};
  }

 private:
  std::size_t classes_;  ///< the data set's
  std::shared_ptr<const Preconditioning> pre_ = make_prediction("eps");
};

}  // namespace

DIFFUSION_REGISTER(losses, "cross_entropy", [](const ConfigNode& c, const BuildContext& ctx) {
  if (ctx.num_classes <= 0)
    c.error("cross_entropy trains a classifier on the data set's labels, but the data set has none (use a labelled "
            "data set: digits, mnist, fashion_mnist)");
  return std::make_shared<CrossEntropyLoss>(static_cast<std::size_t>(ctx.num_classes));
});

}  // namespace diffusion::image_metrics
