#include "timestep_embedder.hpp"

namespace diffusion::dit {

namespace {
/// A Linear layer with weights from N(0, std^2) and zero bias.
std::shared_ptr<Linear> normal_linear(std::size_t in, std::size_t out, float std, Rng& rng) {
  auto layer = std::make_shared<Linear>(in, out, true, rng, Init::zeros);
  Var w = layer->weight();
  w.value() = rng.normal({out, in}, 0.0f, std);
  return layer;
}
}  // namespace

TimestepEmbedder::TimestepEmbedder(std::size_t hidden, std::size_t frequency_dim, Rng& rng) {
  // The core's embedding is [sin, cos]; DiT's code concatenates [cos, sin]. The two differ by a
  // permutation of fc1's input columns only.
  frequencies_ = std::make_shared<SinusoidalEmbedding>(frequency_dim);
  fc1_ = register_module("fc1", normal_linear(frequency_dim, hidden, 0.02f, rng));
  fc2_ = register_module("fc2", normal_linear(hidden, hidden, 0.02f, rng));
}

Var TimestepEmbedder::forward(const Tensor& t) const {
  return fc2_->forward(fc1_->forward(frequencies_->forward(t), Activation::silu));
}

}  // namespace diffusion::dit
