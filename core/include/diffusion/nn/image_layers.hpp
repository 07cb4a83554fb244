#pragma once
// Layers of image and transformer networks (U-Net, DiT), on the ops of
// diffusion/autodiff/ops_image.hpp. Parameter names and shapes follow torch.nn (Conv2d.weight
// is (out, in / groups, kh, kw); GroupNorm has weight and bias), so weights map one-to-one onto
// a PyTorch state_dict. Kept out of layers.hpp so that only image networks include it.
#include <cstddef>
#include <memory>

#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/nn/layers.hpp"
#include "diffusion/nn/module.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

/// 2-D convolution layer, as torch.nn.Conv2d(in, out, kernel, stride, padding, groups=groups,
/// bias=bias): a square kernel, the same stride and zero padding on both axes.
class Conv2d : public Module {
 public:
  /// torch_default init draws W and b from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
  /// fan_in = in / groups * kernel^2, as PyTorch; Init::zeros gives a zero-initialised layer
  /// (a U-Net's last convolution, Ho et al. 2020).
  Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel, Rng& rng,
         const Conv2dOptions& options = {}, bool bias = true, Init init = Init::torch_default);
  /// x (N, in, H, W) -> (N, out, Ho, Wo).
  Var forward(const Var& x) const;

  std::size_t in_channels() const { return in_; }
  std::size_t out_channels() const { return out_; }
  std::size_t kernel() const { return kernel_; }
  const Conv2dOptions& options() const { return options_; }
  const Var& weight() const { return weight_; }
  /// Undefined when built without bias.
  const Var& bias() const { return bias_; }

 private:
  std::size_t in_, out_, kernel_;
  Conv2dOptions options_;
  Var weight_, bias_;
};

/// Group normalisation, as torch.nn.GroupNorm(groups, channels, eps, affine): per-channel
/// "weight" (initialised to 1) and "bias" (to 0) when affine.
class GroupNorm : public Module {
 public:
  GroupNorm(std::size_t groups, std::size_t channels, float eps = 1e-5f, bool affine = true);
  /// x (N, channels, ...) -> same shape.
  Var forward(const Var& x) const;

  std::size_t groups() const { return groups_; }
  std::size_t channels() const { return channels_; }

 private:
  std::size_t groups_, channels_;
  float eps_;
  Var weight_, bias_;
};

/// Multi-head attention with its projections (Vaswani et al. 2017, sec. 3.2.2):
/// out(attention(q(x), k(c), v(c), heads)), with Linear children "q", "k", "v", "out" of
/// dim -> dim each.
class MultiHeadAttention : public Module {
 public:
  /// heads must divide dim. out_init Init::zeros makes the block start as the identity around
  /// a residual connection (as the U-Net's zero-initialised projections).
  MultiHeadAttention(std::size_t dim, std::size_t heads, Rng& rng, bool bias = true,
                     Init out_init = Init::torch_default);
  /// Self-attention over tokens x (N, T, dim) -> (N, T, dim).
  Var forward(const Var& x) const;
  /// Cross-attention: queries from x (N, T, dim), keys and values from context (N, S, dim).
  Var forward(const Var& x, const Var& context) const;
  /// Self-attention over the pixels of an image (N, dim, H, W) -> (N, dim, H, W): the H W
  /// pixels are the tokens, the channels their features.
  Var forward_image(const Var& x) const;

  std::size_t dim() const { return dim_; }
  std::size_t heads() const { return heads_; }

 private:
  std::size_t dim_, heads_;
  std::shared_ptr<Linear> q_, k_, v_, out_;
};

/// Inverted dropout as a layer: active in training mode (Module::train), the identity in
/// evaluation mode; the caller passes the random stream so runs stay reproducible.
class Dropout : public Module {
 public:
  /// p in [0, 1).
  explicit Dropout(float p);
  Var forward(const Var& x, Rng& rng) const;

  float p() const { return p_; }

 private:
  float p_;
};

}  // namespace diffusion
