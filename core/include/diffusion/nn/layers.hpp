#pragma once
// Building blocks for networks: linear layers, activations, MLPs, time embeddings, layer norm.
// Parameter names and shapes follow torch.nn (Linear.weight is (out, in)), so weights map
// one-to-one onto PyTorch state_dict keys.
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/nn/module.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

// ---- Initialisation ----

/// How a Linear layer's weight is drawn.
enum class Init {
  torch_default,   ///< W, b ~ U(-1/sqrt(in), 1/sqrt(in)): PyTorch's kaiming_uniform(a=sqrt(5))
  xavier_uniform,  ///< W ~ U(-a, a), a = sqrt(6 / (in + out)) (Glorot & Bengio 2010); b = 0
  kaiming_normal,  ///< W ~ N(0, 2 / in), fan-in, ReLU gain (He et al. 2015); b = 0
  zeros,           ///< W = 0, b = 0 (e.g. a zero-initialised output layer)
};
/// "torch_default" (alias "default"), "xavier_uniform", "kaiming_normal", "zeros"; an unknown
/// name throws an Error listing the choices.
Init parse_init(const std::string& name);
/// The canonical name of an Init (parse_init's first spelling).
std::string to_string(Init init);
/// A layer's initial weight (shape ws) and bias (shape bs; zeros unless `bias`) as PyTorch draws
/// them for `init`, with the layer's fans (Linear: features; Conv2d: channels times kernel taps).
/// The weight is drawn first, then the bias.
std::pair<Tensor, Tensor> initial_parameters(Init init, const Shape& ws, const Shape& bs, double fan_in,
                                             double fan_out, bool bias, Rng& rng);

// ---- Linear ----

/// Affine layer y = x W^T + b with W of shape (out, in) and b of shape (out), as torch.nn.Linear.
class Linear : public Module {
 public:
  Linear(std::size_t in_features, std::size_t out_features, bool bias, Rng& rng,
         Init init = Init::torch_default);
  /// x of shape (..., in) -> act(x W^T + b) of shape (..., out), via the fused `linear` op.
  Var forward(const Var& x, Activation act = Activation::identity) const;

  std::size_t in_features() const { return in_; }
  std::size_t out_features() const { return out_; }
  const Var& weight() const { return weight_; }
  /// Undefined when built without bias.
  const Var& bias() const { return bias_; }

 private:
  std::size_t in_, out_;
  Var weight_, bias_;
};

// ---- Activations ----

/// "relu", "silu" (alias "swish"), "gelu", "tanh", "sigmoid", "identity" (alias "none");
/// an unknown name throws an Error listing the choices.
Activation parse_activation(const std::string& name);
/// The canonical name of an Activation.
std::string to_string(Activation a);
/// The activation applied to x (identity returns x itself).
Var apply(Activation a, const Var& x);

// ---- MLP ----

/// A multilayer perceptron: Linear layers of widths {in, hidden..., out} with the activation
/// between layers and none after the last. Layers are the children "layers.0", "layers.1", ...
class MLP : public Module {
 public:
  /// widths needs at least {in, out}.
  MLP(const std::vector<std::size_t>& widths, Activation activation, Rng& rng, bool bias = true,
      Init init = Init::torch_default);
  /// x of shape (N, widths.front()) -> (N, widths.back()).
  Var forward(const Var& x) const;

  const std::vector<std::shared_ptr<Linear>>& layers() const { return layers_; }
  Activation activation() const { return activation_; }

 private:
  std::vector<std::shared_ptr<Linear>> layers_;
  Activation activation_;
};

// ---- Time embeddings ----

/// Transformer sinusoidal embedding of a time or noise level (Vaswani et al. 2017, sec. 3.5;
/// DDPM's timestep embedding): [sin(t f_k), cos(t f_k)], f_k = exp(-ln(max_period) k / half),
/// k = 0..half-1, half = dim / 2. No parameters.
class SinusoidalEmbedding : public Module {
 public:
  /// dim must be even and positive.
  explicit SinusoidalEmbedding(std::size_t dim, double max_period = 10000.0);
  /// t of shape (N) or (N, 1) -> (N, dim). Differentiable in t.
  Var forward(const Var& t) const;
  Var forward(const Tensor& t) const { return forward(Var(t)); }

  std::size_t dim() const { return dim_; }
  /// The frequencies f_k, shape (1, dim / 2).
  const Var& frequencies() const { return freqs_; }

 private:
  std::size_t dim_;
  Var freqs_;
};

/// Random Fourier features of a time or noise level (Tancik et al. 2020; Song et al. 2021,
/// score SDE's GaussianFourierProjection): W ~ N(0, scale^2) of shape (dim / 2), fixed (a
/// buffer named "W", saved but not trained); output [sin(2 pi t W), cos(2 pi t W)].
class GaussianFourierEmbedding : public Module {
 public:
  /// dim must be even and positive.
  GaussianFourierEmbedding(std::size_t dim, double scale, Rng& rng);
  /// Song et al.'s default scale 16.
  GaussianFourierEmbedding(std::size_t dim, Rng& rng) : GaussianFourierEmbedding(dim, 16.0, rng) {}
  /// t of shape (N) or (N, 1) -> (N, dim). Differentiable in t.
  Var forward(const Var& t) const;
  Var forward(const Tensor& t) const { return forward(Var(t)); }

  std::size_t dim() const { return dim_; }
  const Var& W() const { return W_; }

 private:
  std::size_t dim_;
  Var W_;
};

// ---- Normalisation ----

/// Layer normalisation over the last dimension (Ba et al. 2016) with learnable elementwise
/// "weight" (initialised to 1) and "bias" (to 0), as torch.nn.LayerNorm(dim).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::size_t dim, float eps = 1e-5f, bool affine = true);
  /// x of shape (..., dim) -> same shape.
  Var forward(const Var& x) const;

  std::size_t dim() const { return dim_; }

 private:
  std::size_t dim_;
  float eps_;
  Var weight_, bias_;
};

}  // namespace diffusion
