// Embeddings of a scalar time (or noise level) per sample, the conditioning input of every
// diffusion network.
#include <cmath>

#include "diffusion/nn/layers.hpp"

namespace diffusion {
namespace {

void check_dim(std::size_t dim, const char* who) {
  // sin and cos halves must have equal size.
  if (dim == 0 || dim % 2 != 0)
    throw Error(std::string(who) + ": dim must be even and positive, got " + std::to_string(dim));
}

// (N) or (N, 1) -> (N, 1), so it broadcasts against (1, half) frequencies.
Var as_column(const Var& t, const char* who) {
  const Shape s = t.shape();
  if (s.size() == 1) return reshape(t, {static_cast<long>(s[0]), 1});
  if (s.size() == 2 && s[1] == 1) return t;
  throw Error(std::string(who) + ": t must have shape (N) or (N, 1), got " + shape_str(s));
}

}  // namespace

SinusoidalEmbedding::SinusoidalEmbedding(std::size_t dim, double max_period) : dim_(dim) {
  check_dim(dim, "SinusoidalEmbedding");
  if (!(max_period > 0.0)) throw Error("SinusoidalEmbedding: max_period must be > 0");
  const std::size_t half = dim / 2;
  Tensor f = Tensor::from_shape({1, half});
  // Computed in double, then rounded once: within an ulp of torch's float32 computation.
  for (std::size_t k = 0; k < half; ++k)
    f(0, k) = static_cast<float>(std::exp(-std::log(max_period) * static_cast<double>(k) /
                                          static_cast<double>(half)));
  // A constant, not a buffer: it is a function of (dim, max_period), and PyTorch models
  // recompute it too, so state_dict keys stay identical.
  freqs_ = Var(std::move(f), false);
}

Var SinusoidalEmbedding::forward(const Var& t) const {
  const Var angle = mul(as_column(t, "SinusoidalEmbedding"), freqs_);  // (N, half)
  return concat({sin(angle), cos(angle)}, 1);
}

GaussianFourierEmbedding::GaussianFourierEmbedding(std::size_t dim, double scale, Rng& rng)
    : dim_(dim) {
  check_dim(dim, "GaussianFourierEmbedding");
  if (!(scale > 0.0)) throw Error("GaussianFourierEmbedding: scale must be > 0");
  Tensor w = rng.normal({dim / 2}, 0.0f, static_cast<float>(scale));
  // A buffer: fixed random features, saved with the model (as Song et al.'s
  // requires_grad=False parameter "W") so a loaded model embeds times identically.
  W_ = register_buffer("W", std::move(w));
}

Var GaussianFourierEmbedding::forward(const Var& t) const {
  const double two_pi = 2.0 * std::acos(-1.0);
  // (N, 1) * (half) broadcasts to (N, half); the order t W 2 pi follows Song et al.'s code.
  const Var angle = mul(mul(as_column(t, "GaussianFourierEmbedding"), W_),
                        static_cast<float>(two_pi));
  return concat({sin(angle), cos(angle)}, 1);
}

}  // namespace diffusion
