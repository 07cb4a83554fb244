// A residual MLP for points (the 2-D networks of the flow-matching and optimal-transport toy
// experiments): an input projection to width d, `blocks` residual blocks
//
//   h <- h + W_2 act(W_1 h + b_1) + b_2,   W_1: d -> expansion d,  W_2: expansion d -> d,
//
// and an output projection of act(h) to the data's dimension. The skip keeps every block's
// Jacobian near the identity at initialisation, so a deep stack trains as readily as a shallow
// one (He et al. 2016), and the wide inner layer (4d by default, as a Transformer's MLP) holds
// most of the parameters.
//
//   network: {type: residual_mlp, width: 128, blocks: 3, expansion: 4, activation: silu,
//             time_embedding: {type: sinusoidal, dim: 32}, class_conditional: false}
//
// The time input enters once, concatenated to x before the input projection, as in the mlp
// network: `time_embedding` sinusoidal (default, dim 32, max_period), fourier (dim, scale), or
// raw (the noise input itself as one feature, through the input projection's linear map). With
// `class_conditional: true` a learned class embedding of the time embedding's width (one row
// more than there are classes: the null label of rows whose condition is dropped, as the mlp
// network) is concatenated too.
#include <diffusion/nn/layers.hpp>
#include <diffusion/plugin.hpp>

#include "time_embedding.hpp"

namespace diffusion::mlp {
namespace {

/// h + W_2 act(W_1 h): children "expand" (W_1) and "project" (W_2).
class ResidualBlock : public Module {
 public:
  ResidualBlock(std::size_t width, std::size_t inner, Activation act, Rng& rng) : act_(act) {
    expand_ = register_module("expand", std::make_shared<Linear>(width, inner, true, rng));
    project_ = register_module("project", std::make_shared<Linear>(inner, width, true, rng));
  }
  Var forward(const Var& h) const { return h + project_->forward(expand_->forward(h, act_)); }

 private:
  Activation act_;
  std::shared_ptr<Linear> expand_, project_;
};

class ResidualMlp : public Network {
 public:
  ResidualMlp(const ConfigNode& c, const BuildContext& ctx) {
    if (ctx.data_shape.size() != 1)
      c.error("residual_mlp takes points (N, D); the data set gives samples of shape " + shape_str(ctx.data_shape));
    Rng& rng = *ctx.rng;
    const std::size_t dim = ctx.data_shape[0];
    const auto width = static_cast<std::size_t>(c.get_int("width", 128, 1, 1 << 20));
    const auto blocks = static_cast<std::size_t>(c.get_int("blocks", 3, 0, 1 << 10));
    const auto expansion = static_cast<std::size_t>(c.get_int("expansion", 4, 1, 1 << 10));
    act_ = parse_activation(c.get_choice("activation", "silu", {"relu", "silu", "gelu", "tanh", "sigmoid"}));

    time_ = read_time_embedding(*this, c.find("time_embedding"), rng, /*allow_raw=*/true);
    const std::size_t te_dim = time_.width;
    std::size_t cond_dim = te_dim;
    if (c.get_bool("class_conditional", false)) {
      if (ctx.num_classes <= 0) c.at("class_conditional").error("the data set has no labels to condition on");
      classes_ = ctx.num_classes;
      // Of the embedding's width; with a raw time, of the width the sinusoidal default would have.
      const std::size_t class_dim = time_.raw() ? 32 : te_dim;
      class_embedding_ = register_parameter("class_embedding", Var(rng.normal({std::size_t(classes_) + 1, class_dim})));
      cond_dim += class_dim;
    }
    input_ = register_module("input", std::make_shared<Linear>(dim + cond_dim, width, true, rng));
    auto list = register_module("blocks", std::make_shared<ModuleList>());
    for (std::size_t b = 0; b < blocks; ++b)
      blocks_.push_back(list->push_back(std::make_shared<ResidualBlock>(width, expansion * width, act_, rng)));
    output_ = register_module("output", std::make_shared<Linear>(width, dim, true, rng));
  }

  bool class_conditional() const override { return classes_ > 0; }

  Var forward(const Var& x, const Tensor& t, const Condition& c) override {
    Var time = time_.forward(t);
    Var in;
    if (classes_) {
      if (!c.has_labels()) throw Error("residual_mlp: class-conditional network called without labels");
      const std::vector<int>& labels = c.labels();
      std::vector<std::size_t> rows(labels.size());
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (labels[i] < 0 || labels[i] >= classes_)
          throw Error("residual_mlp: label " + std::to_string(labels[i]) + " outside 0.." + std::to_string(classes_ - 1));
        rows[i] = c.is_null(i) ? std::size_t(classes_) : std::size_t(labels[i]);
      }
      in = concat({x, time, index_select(class_embedding_, 0, rows)}, 1);
    } else {
      in = concat({x, time}, 1);
    }
    Var h = input_->forward(in);
    for (const auto& block : blocks_) h = block->forward(h);
    return output_->forward(apply(act_, h));
  }

 private:
  Activation act_ = Activation::silu;
  int classes_ = 0;
  TimeEmbedding time_;
  std::shared_ptr<Linear> input_, output_;
  std::vector<std::shared_ptr<ResidualBlock>> blocks_;
  Var class_embedding_;
};

}  // namespace

DIFFUSION_REGISTER(networks, "residual_mlp", [](const ConfigNode& c, const BuildContext& ctx) {
  return std::make_shared<ResidualMlp>(c, ctx);
});

}  // namespace diffusion::mlp
