#pragma once
// The time input of this plugin's networks, read from their `time_embedding:` key: the
// sinusoidal embedding of DDPM (the default, 32 dimensions), Gaussian Fourier features (Song et
// al. 2021), or, where a network allows it, the raw time as one input column.
#include <memory>
#include <optional>

#include <diffusion/nn/layers.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::mlp {

struct TimeEmbedding {
  std::shared_ptr<SinusoidalEmbedding> sinusoidal;
  std::shared_ptr<GaussianFourierEmbedding> fourier;
  std::size_t width = 1;  ///< columns forward() gives

  bool raw() const { return !sinusoidal && !fourier; }
  /// (N) times -> (N, width).
  Var forward(const Tensor& t) const;
};

/// Reads `node` (absent: the default) and registers the embedding on `owner` as
/// "time_embedding"; `raw` is accepted only when allow_raw.
TimeEmbedding read_time_embedding(Module& owner, const std::optional<ConfigNode>& node, Rng& rng, bool allow_raw);

}  // namespace diffusion::mlp
