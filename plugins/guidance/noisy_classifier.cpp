#include "noisy_classifier.hpp"

#include <cmath>
#include <string>

namespace diffusion::guidance {

Var classifier_log_prob(Network& net, const Var& x_t, const Times& t, const std::vector<int>& labels,
                        const Path& path) {
  const Shape shape = x_t.shape();
  const std::size_t n = shape[0], rank = shape.size();
  if (t.size() != n || labels.size() != n)
    throw Error("noisy classifier: " + std::to_string(t.size()) + " times and " + std::to_string(labels.size()) +
                " labels for a batch of " + std::to_string(n));
  Shape col(rank, 1);
  col[0] = n;
  Tensor c_in = Tensor::from_shape(col), c_noise = Tensor::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) {
    const double a = path.alpha(t[i]), s = path.sigma(t[i]);
    c_in.data()[i] = static_cast<float>(1.0 / std::sqrt(a * a + s * s));
    c_noise(i) = path.network_time(t[i]);
  }
  const Var logits = net.forward(x_t * Var(std::move(c_in)), c_noise, Condition());
  if (logits.dim() != 2 || logits.shape()[0] != n)
    throw Error("noisy classifier: the network gives " + shape_str(logits.value()) + ", expected one logit per class (" +
                std::to_string(n) + ", K): a classifier network (mlp with output: classes)");
  const std::size_t k = logits.shape()[1];
  // Row i's entry of log_softmax: element i K + y_i of the flattened (N K).
  std::vector<std::size_t> picked(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= k)
      throw Error("noisy classifier: label " + std::to_string(labels[i]) + " outside the classifier's classes 0.." +
                  std::to_string(k - 1));
    picked[i] = i * k + static_cast<std::size_t>(labels[i]);
  }
  return index_select(reshape(log_softmax(logits, 1), {static_cast<long>(n * k)}), 0, picked);
}

Tensor NetworkClassifier::grad_log_prob(const Tensor& x, const Times& t, const Condition& c) const {
  if (!grad_enabled()) throw Error("classifier guidance: its gradient needs the autodiff graph (called under NoGradScope)");
  // Rows are independent, so the gradient of the sum is each row's own gradient.
  const ConstantScope weights(net_->parameters());
  const Var xv(x, true);
  sum(classifier_log_prob(*net_, xv, t, c.labels(), path_)).backward();
  return xv.grad();
}

}  // namespace diffusion::guidance
