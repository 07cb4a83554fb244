#pragma once
// The U-Net's YAML options, read and checked against the data shape before anything is built
// (so an image the network cannot take is a configuration error naming the key, not a shape
// error in the middle of training).
#include <cstddef>
#include <vector>

#include <diffusion/io/config.hpp>
#include <diffusion/model/build_context.hpp>

namespace diffusion::unet {

struct UNetConfig {
  std::size_t in_channels = 1, height = 0, width = 0;  ///< the data shape (C, H, W)
  std::size_t channels = 64;                           ///< base width
  std::vector<std::size_t> channel_mult{1, 2, 2};      ///< width per resolution, top down
  std::size_t num_res_blocks = 2;
  std::vector<std::size_t> attention_resolutions;      ///< heights where attention runs
  std::size_t heads = 1;
  float dropout = 0.1f;
  std::size_t groups = 32;
  int classes = 0;                                     ///< > 0: class-conditional
  std::size_t time_dim() const { return 4 * channels; }
  /// Height of the feature maps at level `level` (level 0: the image).
  std::size_t resolution(std::size_t level) const { return height >> level; }
  bool attention_at(std::size_t level) const;
};

/// Reads `c` (the network node) for data of shape ctx.data_shape; every violation is a
/// ConfigError at the offending key.
UNetConfig read_unet_config(const ConfigNode& c, const BuildContext& ctx);

}  // namespace diffusion::unet
