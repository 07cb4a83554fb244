// A time-conditioned MLP: the time embedding (sinusoidal, as the Transformer's positional
// encoding used by DDPM, or Gaussian Fourier features, as in Song et al. 2021) is concatenated
// to the input, or projected and added to the first hidden layer. An optional learned class
// embedding enters the same way; it has one row more than there are classes, the null label,
// which rows whose condition is dropped (the condition's null mask) use: classifier-free
// guidance's unconditional model (Ho & Salimans 2022). With `output: classes` it is a
// noise-conditional classifier instead (classifier guidance, Dhariwal & Nichol 2021): one logit
// per class, (N, K), not a tensor shaped like x, so it is read by the guidance plugin's
// classifier loss and guidance, never through a preconditioning.
#include <diffusion/nn/layers.hpp>
#include <diffusion/plugin.hpp>

#include "time_embedding.hpp"

namespace diffusion::mlp {
namespace {

class TimeMlp : public Network {
 public:
  TimeMlp(const ConfigNode& c, const BuildContext& ctx) {
    if (ctx.data_shape.size() != 1) c.error("mlp takes points (N, D); the data set gives samples of shape " + shape_str(ctx.data_shape));
    Rng& rng = *ctx.rng;
    dim_ = ctx.data_shape[0];
    const auto hidden = c.get_int_list("hidden", {128, 128, 128}, 1, 1 << 20);
    const Activation act = parse_activation(c.get_choice("activation", "silu", {"relu", "silu", "gelu", "tanh", "sigmoid"}));
    add_ = c.get_choice("conditioning", "concat", {"concat", "add"}) == "add";

    time_ = read_time_embedding(*this, c.find("time_embedding"), rng, /*allow_raw=*/false);
    const std::size_t te_dim = time_.width;

    std::size_t cond_dim = te_dim;
    const bool classifier = c.get_choice("output", "data", {"data", "classes"}) == "classes";
    if (classifier) {
      if (ctx.num_classes <= 0) c.at("output").error("the data set has no labels to classify");
      out_dim_ = static_cast<std::size_t>(ctx.num_classes);
    }
    if (c.get_bool("class_conditional", false)) {
      if (classifier) c.at("class_conditional").error("a classifier (output: classes) cannot be given its own label");
      if (ctx.num_classes <= 0) c.at("class_conditional").error("the data set has no labels to condition on");
      classes_ = ctx.num_classes;
      class_embedding_ =
          register_parameter("class_embedding", Var(rng.normal({std::size_t(classes_) + 1, te_dim})));
    }
    std::vector<std::size_t> widths;
    if (add_) {
      // First layer split into x and conditioning projections whose outputs are summed.
      first_x_ = register_module("input", std::make_shared<Linear>(dim_, hidden[0], true, rng));
      first_c_ = register_module("cond", std::make_shared<Linear>(cond_dim, hidden[0], false, rng));
      act_ = act;
      for (auto h : hidden) widths.push_back(h);
    } else {
      widths.push_back(dim_ + cond_dim + (classes_ ? te_dim : 0));
      for (auto h : hidden) widths.push_back(h);
    }
    widths.push_back(out_dim_ ? out_dim_ : dim_);
    net_ = register_module("net", std::make_shared<MLP>(widths, act, rng));
  }

  // A classifier reads no label, but its training needs them (its targets): the run passes them.
  bool class_conditional() const override { return classes_ > 0 || out_dim_ > 0; }

  Var forward(const Var& x, const Tensor& t, const Condition& c) override {
    Var emb = time_.forward(t);
    Var cls;
    if (classes_) {
      if (!c.has_labels()) throw Error("mlp: class-conditional network called without labels");
      const std::vector<int>& labels = c.labels();
      std::vector<std::size_t> rows(labels.size());
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (labels[i] < 0 || labels[i] >= classes_)
          throw Error("mlp: label " + std::to_string(labels[i]) + " outside 0.." + std::to_string(classes_ - 1));
        rows[i] = c.is_null(i) ? std::size_t(classes_) : std::size_t(labels[i]);
      }
      cls = index_select(class_embedding_, 0, rows);
    }
    if (add_) {
      Var cond = classes_ ? emb + cls : emb;
      return net_->forward(apply(act_, first_x_->forward(x) + first_c_->forward(cond)));
    }
    return net_->forward(classes_ ? concat({x, emb, cls}, 1) : concat({x, emb}, 1));
  }

 private:
  std::size_t dim_ = 0;
  std::size_t out_dim_ = 0;  ///< classes of a classifier (output: classes); 0: shaped like x
  bool add_ = false;
  int classes_ = 0;
  Activation act_ = Activation::silu;
  TimeEmbedding time_;
  std::shared_ptr<Linear> first_x_, first_c_;
  std::shared_ptr<MLP> net_;
  Var class_embedding_;
};

}  // namespace

DIFFUSION_REGISTER(networks, "mlp", [](const ConfigNode& c, const BuildContext& ctx) {
  return std::make_shared<TimeMlp>(c, ctx);
});

}  // namespace diffusion::mlp
