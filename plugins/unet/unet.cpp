// The image U-Net of Ho et al. 2020 (appendix B), with the changes of Nichol & Dhariwal 2021
// ("Improved DDPM", sec. 3 and appendix A: time embedding as the scale and shift of the second
// group norm of each residual block, multi-head attention) and a learnt class embedding with a
// null label row for classifier-free guidance (Ho & Salimans 2022).
//
// YAML (network: {type: unet, ...}); the data set must give images (C, H, W):
//   channels: 64                 base width
//   channel_mult: [1, 2, 2]      width multiplier of each resolution, top down; each level below
//                                the first halves H and W, so they must be divisible by
//                                2^(len - 1) (checked before training)
//   num_res_blocks: 2            residual blocks per level on the way down (one more on the way up)
//   attention_resolutions: []    feature-map heights with self-attention after each residual
//                                block (e.g. [14] or [7] for 28x28); the middle always has one
//   heads: 1                     attention heads (must divide the channels where attention runs)
//   dropout: 0.1                 in each residual block, only in a training forward (below)
//   groups: 32                   group norm groups; must divide every channel count
//   class_conditional: false     learnt class embedding (num_classes + 1 rows, the last one the
//                                null label), added to the time embedding
// The time embedding has 4 * channels features: sinusoidal(channels) -> Linear -> SiLU -> Linear.
//
// Layout, as improved-diffusion's UNetModel:
//   input_conv (3x3, C -> channels)
//   down.i: per level l, num_res_blocks x [res (+ attn)], then (but at the last level) down
//           (3x3 convolution of stride 2); each saves its output for one skip connection
//   mid: res1, attn, res2
//   up.i: per level from the bottom, num_res_blocks + 1 x [concat(h, skip) -> res (+ attn)],
//         the last of each level but the top followed by up (nearest x2, 3x3 convolution)
//   out: out_norm, SiLU, out_conv (3x3 -> C, zero-initialised: a fresh network outputs 0)
//
// Dropout: the network is never told whether it is being trained (the run leaves every module
// in training mode), so dropout acts only in a forward that records gradients in training
// mode; sampling (NetworkDenoiser::predict runs under NoGradScope) sees the whole network. Its
// random stream is split from the build's stream by a hash of the batch (x and t), so a forward
// is reproducible and thread-safe (shards run concurrently) without a mutable generator.
#include <cstdint>
#include <cstring>

#include <diffusion/plugin.hpp>
#include <diffusion/tensor/memory_pool.hpp>

#include "unet_config.hpp"
#include "unet_layer.hpp"

namespace diffusion::unet {
namespace {

/// FNV-1a over the bits of the batch: the dropout stream's index.
std::uint64_t batch_hash(const Tensor& x, const Tensor& t) {
  std::uint64_t h = 1469598103934665603ull;
  for (const Tensor* a : {&x, &t})
    for (std::size_t i = 0; i < a->size(); ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, a->data() + i, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
  return h;
}

class UNet : public Network {
 public:
  UNet(const ConfigNode& c, const BuildContext& ctx)
      : k_(read_unet_config(c, ctx)), sinusoidal_(k_.channels), dropout_stream_(ctx.rng->split("dropout")) {
    Rng& rng = *ctx.rng;
    const std::size_t ch = k_.channels, levels = k_.channel_mult.size(), temb = k_.time_dim();
    time_mlp_ = register_module("time_mlp", std::make_shared<MLP>(std::vector<std::size_t>{ch, temb, temb},
                                                                  Activation::silu, rng));
    if (k_.classes > 0)  // nn.Embedding's N(0, 1) rows; row `classes` is the null label
      class_embedding_ = register_parameter("class_embedding", Var(rng.normal({std::size_t(k_.classes) + 1, temb})));
    input_conv_ = register_module("input_conv", std::make_shared<Conv2d>(k_.in_channels, ch, 3, rng, Conv2dOptions{1, 1, 1}));

    auto down = register_module("down", std::make_shared<ModuleList>());
    std::vector<std::size_t> skips{ch};
    std::size_t cur = ch;
    for (std::size_t l = 0; l < levels; ++l) {
      const std::size_t width = ch * k_.channel_mult[l];
      for (std::size_t b = 0; b < k_.num_res_blocks; ++b) {
        auto layer = std::make_shared<UNetLayer>();
        layer->set_res(std::make_shared<ResidualBlock>(cur, width, temb, k_.groups, k_.dropout, rng));
        cur = width;
        if (k_.attention_at(l)) layer->set_attn(std::make_shared<AttentionBlock>(cur, k_.heads, k_.groups, rng));
        down_.push_back(down->push_back(layer));
        skips.push_back(cur);
      }
      if (l + 1 < levels) {
        auto layer = std::make_shared<UNetLayer>();
        layer->set_down(std::make_shared<Downsample>(cur, rng));
        down_.push_back(down->push_back(layer));
        skips.push_back(cur);
      }
    }

    mid_res1_ = register_module("mid_res1", std::make_shared<ResidualBlock>(cur, cur, temb, k_.groups, k_.dropout, rng));
    mid_attn_ = register_module("mid_attn", std::make_shared<AttentionBlock>(cur, k_.heads, k_.groups, rng));
    mid_res2_ = register_module("mid_res2", std::make_shared<ResidualBlock>(cur, cur, temb, k_.groups, k_.dropout, rng));

    auto up = register_module("up", std::make_shared<ModuleList>());
    for (std::size_t l = levels; l-- > 0;) {
      const std::size_t width = ch * k_.channel_mult[l];
      for (std::size_t b = 0; b <= k_.num_res_blocks; ++b) {
        auto layer = std::make_shared<UNetLayer>();
        layer->set_res(std::make_shared<ResidualBlock>(cur + skips.back(), width, temb, k_.groups, k_.dropout, rng));
        skips.pop_back();
        cur = width;
        if (k_.attention_at(l)) layer->set_attn(std::make_shared<AttentionBlock>(cur, k_.heads, k_.groups, rng));
        if (l > 0 && b == k_.num_res_blocks) layer->set_up(std::make_shared<Upsample>(cur, rng));
        up_.push_back(up->push_back(layer));
      }
    }

    out_norm_ = register_module("out_norm", std::make_shared<GroupNorm>(k_.groups, cur));
    out_conv_ = register_module("out_conv", std::make_shared<Conv2d>(cur, k_.in_channels, 3, rng, Conv2dOptions{1, 1, 1},
                                                                      true, Init::zeros));
  }

  bool class_conditional() const override { return k_.classes > 0; }

  Var forward(const Var& x, const Tensor& t, const Condition& c) override {
    // Time (and class) embedding, shared by every residual block (Ho et al. 2020, appendix B).
    Var emb = time_mlp_->forward(sinusoidal_.forward(Var(t)));
    if (k_.classes > 0) emb = add(emb, index_select(class_embedding_, 0, class_rows(c, x.shape()[0])));
    const Var emb_act = silu(emb);

    Rng stream;
    Rng* dropout_rng = nullptr;
    if (k_.dropout > 0 && is_training() && grad_enabled()) {
      stream = dropout_stream_.split(batch_hash(x.value(), t));
      dropout_rng = &stream;
    }

    Var h = input_conv_->forward(x);
    std::vector<Var, PoolAllocator<Var>> skips;  // pooled: a warm step makes no heap allocation
    skips.reserve(down_.size() + 1);
    skips.push_back(h);
    for (const auto& layer : down_) skips.push_back(h = layer->forward(h, emb_act, dropout_rng));
    h = mid_res2_->forward(mid_attn_->forward(mid_res1_->forward(h, emb_act, dropout_rng)), emb_act, dropout_rng);
    for (const auto& layer : up_) {
      h = layer->forward(concat({h, skips.back()}, 1), emb_act, dropout_rng);
      skips.pop_back();
    }
    return out_conv_->forward(silu(out_norm_->forward(h)));
  }

 private:
  /// Row of the class embedding per sample: its label, or the null label where the condition
  /// is dropped.
  std::vector<std::size_t> class_rows(const Condition& c, std::size_t n) const {
    if (!c.has_labels()) throw Error("unet: class-conditional network called without labels");
    const std::vector<int>& labels = c.labels();
    if (labels.size() != n)
      throw Error("unet: " + std::to_string(labels.size()) + " labels for a batch of " + std::to_string(n));
    std::vector<std::size_t> rows(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (labels[i] < 0 || labels[i] >= k_.classes)
        throw Error("unet: label " + std::to_string(labels[i]) + " outside 0.." + std::to_string(k_.classes - 1));
      rows[i] = c.is_null(i) ? std::size_t(k_.classes) : std::size_t(labels[i]);
    }
    return rows;
  }

  UNetConfig k_;
  SinusoidalEmbedding sinusoidal_;
  Rng dropout_stream_;
  std::shared_ptr<MLP> time_mlp_;
  Var class_embedding_;
  std::shared_ptr<Conv2d> input_conv_;
  std::vector<std::shared_ptr<UNetLayer>> down_, up_;
  std::shared_ptr<ResidualBlock> mid_res1_, mid_res2_;
  std::shared_ptr<AttentionBlock> mid_attn_;
  std::shared_ptr<GroupNorm> out_norm_;
  std::shared_ptr<Conv2d> out_conv_;
};

}  // namespace

DIFFUSION_REGISTER(networks, "unet", [](const ConfigNode& c, const BuildContext& ctx) {
  return std::make_shared<UNet>(c, ctx);
});

}  // namespace diffusion::unet
