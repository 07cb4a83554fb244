#include "unet_config.hpp"

#include <algorithm>
#include <string>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::unet {
namespace {

std::string list_str(const std::vector<std::size_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::vector<std::size_t> to_sizes(const std::vector<std::int64_t>& v) { return {v.begin(), v.end()}; }

/// Where an error about `key` is reported: the key itself when the file sets it, else the
/// network node (the message then names the key and says its value is the default).
ConfigNode node_of(const ConfigNode& c, const std::string& key) {
  const auto n = c.find(key);
  return n ? *n : c;
}

/// Every channel count a GroupNorm sees, following the construction in unet.cpp: the down
/// path's inputs and outputs, the middle, the up path's concatenated inputs, the output norm.
std::vector<std::size_t> normalised_channels(const UNetConfig& k) {
  std::vector<std::size_t> seen, skips{k.channels};
  std::size_t cur = k.channels;
  const std::size_t levels = k.channel_mult.size();
  for (std::size_t l = 0; l < levels; ++l)
    for (std::size_t b = 0; b < k.num_res_blocks; ++b) {
      seen.push_back(cur);
      cur = k.channels * k.channel_mult[l];
      seen.push_back(cur);
      skips.push_back(cur);
      if (b + 1 == k.num_res_blocks && l + 1 < levels) skips.push_back(cur);
    }
  for (std::size_t l = levels; l-- > 0;)
    for (std::size_t b = 0; b <= k.num_res_blocks; ++b) {
      seen.push_back(cur + skips.back());
      skips.pop_back();
      cur = k.channels * k.channel_mult[l];
      seen.push_back(cur);
    }
  return seen;
}

}  // namespace

bool UNetConfig::attention_at(std::size_t level) const {
  return std::find(attention_resolutions.begin(), attention_resolutions.end(), resolution(level)) !=
         attention_resolutions.end();
}

UNetConfig read_unet_config(const ConfigNode& c, const BuildContext& ctx) {
  UNetConfig k;
  if (ctx.data_shape.size() != 3)
    c.error("unet takes images (C, H, W); the data set gives samples of shape " + shape_str(ctx.data_shape) +
            " (an image data set with flatten: true gives points: drop it)");
  k.in_channels = ctx.data_shape[0], k.height = ctx.data_shape[1], k.width = ctx.data_shape[2];

  k.channels = static_cast<std::size_t>(c.get_int("channels", 64, 1, 1 << 16));
  k.channel_mult = to_sizes(c.get_int_list("channel_mult", {1, 2, 2}, 1, 64));
  if (k.channel_mult.empty()) c.at("channel_mult").fail("a non-empty list of channel multipliers");
  k.num_res_blocks = static_cast<std::size_t>(c.get_int("num_res_blocks", 2, 1, 64));
  k.attention_resolutions = to_sizes(c.get_int_list("attention_resolutions", {}, 1, 1 << 16));
  k.heads = static_cast<std::size_t>(c.get_int("heads", 1, 1, 1024));
  k.dropout = static_cast<float>(c.get_double("dropout", 0.1, Interval::half_open(0, 1)));
  k.groups = static_cast<std::size_t>(c.get_int("groups", 32, 1, 1 << 16));
  if (c.get_bool("class_conditional", false)) {
    if (ctx.num_classes <= 0) c.at("class_conditional").error("the data set has no labels to condition on");
    k.classes = ctx.num_classes;
  }

  // Each of the levels below the first halves H and W; the up path doubles them back, so they
  // must divide exactly (7 -> 4 -> 8 would not meet its skip connection).
  const std::size_t levels = k.channel_mult.size(), factor = std::size_t(1) << (levels - 1);
  if (k.height % factor != 0 || k.width % factor != 0)
    node_of(c, "channel_mult")
        .error("channel_mult " + list_str(k.channel_mult) + (c.has("channel_mult") ? "" : " (the default)") +
               " has " + std::to_string(levels) + " resolutions, so the image size must be divisible by 2^" +
               std::to_string(levels - 1) + " = " + std::to_string(factor) + "; the data shape is " +
               shape_str(ctx.data_shape) + " (use fewer levels or pad the images)");

  std::vector<std::size_t> reached;
  for (std::size_t l = 0; l < levels; ++l) reached.push_back(k.resolution(l));
  for (std::size_t i = 0; i < k.attention_resolutions.size(); ++i)
    if (std::find(reached.begin(), reached.end(), k.attention_resolutions[i]) == reached.end())
      c.at("attention_resolutions")
          .item(i)
          .error("resolution " + std::to_string(k.attention_resolutions[i]) +
                 " is never reached: the feature maps have heights " + list_str(reached) + " (data shape " +
                 shape_str(ctx.data_shape) + ", channel_mult " + list_str(k.channel_mult) + ")");

  for (std::size_t ch : normalised_channels(k))
    if (ch % k.groups != 0)
      node_of(c, "groups")
          .error("groups " + std::to_string(k.groups) + (c.has("groups") ? "" : " (the default)") +
                 " must divide every channel count the group norms see; " + std::to_string(ch) +
                 " is not divisible (channels " + std::to_string(k.channels) + ", channel_mult " +
                 list_str(k.channel_mult) + ")");

  // Attention runs at the chosen levels and in the middle (the lowest resolution).
  for (std::size_t l = 0; l < levels; ++l) {
    const std::size_t ch = k.channels * k.channel_mult[l];
    if ((k.attention_at(l) || l + 1 == levels) && ch % k.heads != 0)
      node_of(c, "heads")
          .error("heads " + std::to_string(k.heads) + " must divide the " + std::to_string(ch) +
                 " channels of the attention at resolution " + std::to_string(k.resolution(l)));
  }
  return k;
}

}  // namespace diffusion::unet
