// The Diffusion Transformer, DiT (Peebles & Xie 2023, sec. 3.2, Figure 3): a Vision Transformer
// over the image's patches, conditioned on the time (and the class) through adaLN-Zero.
//   tokens = Linear(patchify(x, p)) + pos            (N, T, hidden), T = (H / p) (W / p)
//   c      = TimestepEmbedder(t) [+ class_embed[y]]   (N, hidden)
//   tokens = DiTBlock(tokens, SiLU(c))               depth times
//   out    = unpatchify(FinalLayer(tokens, SiLU(c)))  (N, C, H, W)
// patchify's features are (c, a, b), channel-major, the order in which a Conv2d with
// kernel = stride = p flattens its weight, so "patch_embed.weight" (hidden, C p p) is DiT's
// x_embedder.proj.weight reshaped. The class embedding has num_classes + 1 rows: the last is the
// null label, used for rows whose condition is dropped (the condition's null mask), which is
// classifier-free guidance's unconditional model (Ho & Salimans 2022). Learned variances (DiT's
// 2C outputs) are left out: the output has C channels.
//
// YAML (network: {type: dit, ...}):
//   hidden:            width of every token, a multiple of 4 and of heads   (default 128)
//   depth:             number of DiT blocks                                 (default 4)
//   heads:             attention heads                                      (default 4)
//   patch:             patch side p, dividing the image's height and width (default 2)
//   mlp_ratio:         the MLP's hidden width over `hidden`                 (default 4)
//   frequency_dim:     width of the sinusoidal time features                (default 256)
//   class_conditional: read class labels (needs a labelled data set)       (default false)
//
// Parameter names: patch_embed, pos_embed (a buffer: fixed, saved), time_embed.fc1/fc2,
// class_embed, blocks.<i>.attn.q/k/v/out, blocks.<i>.fc1/fc2, blocks.<i>.adaLN, final.adaLN,
// final.linear (tools/baselines/dit_reference.py builds the same network in PyTorch).
//
// Departures from the paper's code: the MLP's GELU is the exact (erf) one, not the tanh
// approximation; the time features are [sin, cos] (the core's), not [cos, sin]; the attention
// has separate q, k, v projections initialised as torch.nn.Linear (DiT: one qkv, Xavier).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <diffusion/nn/image_layers.hpp>
#include <diffusion/plugin.hpp>

#include "dit_block.hpp"
#include "final_layer.hpp"
#include "position_embedding.hpp"
#include "timestep_embedder.hpp"

namespace diffusion::dit {
namespace {

class DiT : public Network {
 public:
  DiT(const ConfigNode& c, const BuildContext& ctx) {
    if (ctx.data_shape.size() != 3)
      c.error("dit takes images (C, H, W); the data set gives samples of shape " + shape_str(ctx.data_shape));
    Rng& rng = *ctx.rng;
    channels_ = ctx.data_shape[0];
    height_ = ctx.data_shape[1];
    width_ = ctx.data_shape[2];
    hidden_ = std::size_t(c.get_int("hidden", 128, 4, 1 << 16));
    const auto depth = std::size_t(c.get_int("depth", 4, 1, 1024));
    const auto heads = std::size_t(c.get_int("heads", 4, 1, 1 << 16));
    patch_ = std::size_t(c.get_int("patch", 2, 1, 1 << 16));
    const double mlp_ratio = c.get_double("mlp_ratio", 4.0, Interval::greater_than(0));
    const auto frequency_dim = std::size_t(c.get_int("frequency_dim", 256, 2, 1 << 16));

    const std::string image = "the images are " + shape_str(ctx.data_shape) + " (C, H, W)";
    if (height_ % patch_ != 0 || width_ % patch_ != 0) {
      const std::string msg = "patch " + std::to_string(patch_) + " must divide the image height " +
                              std::to_string(height_) + " and width " + std::to_string(width_) + "; " + image;
      if (c.has("patch")) c.at("patch").error(msg);
      c.error("the default " + msg + " (set `patch`)");
    }
    if (hidden_ % 4 != 0) c.at("hidden").fail("a multiple of 4 (the 2-D position embedding has 4 parts)");
    if (hidden_ % heads != 0)
      c.at("heads").error(std::to_string(heads) + " heads must divide hidden " + std::to_string(hidden_));
    if (frequency_dim % 2 != 0) c.at("frequency_dim").fail("an even integer");
    const auto mlp_hidden = std::size_t(mlp_ratio * double(hidden_));
    if (mlp_hidden == 0) c.at("mlp_ratio").fail("a ratio giving at least one hidden unit");

    const std::size_t grid_h = height_ / patch_, grid_w = width_ / patch_;
    patch_embed_ = register_module(
        "patch_embed", std::make_shared<Linear>(channels_ * patch_ * patch_, hidden_, true, rng, Init::xavier_uniform));
    Tensor pos = sincos_position_embedding_2d(hidden_, grid_h, grid_w);
    pos.reshape({std::size_t(1), grid_h * grid_w, hidden_});  // broadcast over the batch
    pos_embed_ = register_buffer("pos_embed", std::move(pos));
    time_embed_ = register_module("time_embed", std::make_shared<TimestepEmbedder>(hidden_, frequency_dim, rng));
    if (c.get_bool("class_conditional", false)) {
      if (ctx.num_classes <= 0) c.at("class_conditional").error("the data set has no labels to condition on");
      classes_ = ctx.num_classes;
      class_embed_ = register_parameter("class_embed", Var(rng.normal({std::size_t(classes_) + 1, hidden_}, 0.0f, 0.02f)));
    }
    auto blocks = register_module("blocks", std::make_shared<ModuleList>());
    for (std::size_t i = 0; i < depth; ++i)
      blocks_.push_back(blocks->push_back(std::make_shared<DiTBlock>(hidden_, heads, mlp_hidden, rng)));
    final_ = register_module("final", std::make_shared<FinalLayer>(hidden_, patch_ * patch_ * channels_, rng));
  }

  bool class_conditional() const override { return classes_ > 0; }

  Var forward(const Var& x, const Tensor& t, const Condition& cond) override {
    const Shape s = x.shape();
    if (s.size() != 4 || s[1] != channels_ || s[2] != height_ || s[3] != width_)
      throw Error("dit: input " + shape_str(s) + " is not a batch of (" + std::to_string(channels_) + ", " +
                  std::to_string(height_) + ", " + std::to_string(width_) + ") images");
    if (t.size() != s[0])
      throw Error("dit: " + std::to_string(t.size()) + " times for a batch of " + std::to_string(s[0]));
    Var c = time_embed_->forward(t);
    if (classes_) c = c + class_embedding(cond, s[0]);
    const Var silu_c = silu(c);  // DiT's adaLN_modulation = Sequential(SiLU, Linear): one SiLU for all

    Var tokens = patch_embed_->forward(patchify(x, patch_)) + pos_embed_;
    for (const auto& block : blocks_) tokens = block->forward(tokens, silu_c);
    return unpatchify(final_->forward(tokens, silu_c), patch_, height_, width_);
  }

 private:
  /// class_embed rows of the labels, the null row (num_classes) where the condition is dropped.
  Var class_embedding(const Condition& cond, std::size_t n) const {
    if (!cond.has_labels()) throw Error("dit: class-conditional network called without labels");
    cond.check_rows(n, "dit");
    const std::vector<int>& labels = cond.labels();
    std::vector<std::size_t> rows(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (labels[i] < 0 || labels[i] >= classes_)
        throw Error("dit: label " + std::to_string(labels[i]) + " outside 0.." + std::to_string(classes_ - 1));
      rows[i] = cond.is_null(i) ? std::size_t(classes_) : std::size_t(labels[i]);
    }
    return index_select(class_embed_, 0, rows);
  }

  std::size_t channels_ = 0, height_ = 0, width_ = 0, hidden_ = 0, patch_ = 0;
  int classes_ = 0;
  std::shared_ptr<Linear> patch_embed_;
  Var pos_embed_, class_embed_;
  std::shared_ptr<TimestepEmbedder> time_embed_;
  std::vector<std::shared_ptr<DiTBlock>> blocks_;
  std::shared_ptr<FinalLayer> final_;
};

}  // namespace

DIFFUSION_REGISTER(networks, "dit", [](const ConfigNode& c, const BuildContext& ctx) {
  return std::make_shared<DiT>(c, ctx);
});

}  // namespace diffusion::dit
