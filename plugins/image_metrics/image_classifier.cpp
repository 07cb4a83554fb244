#include "image_classifier.hpp"

#include <algorithm>
#include <string>

namespace diffusion::image_metrics {

ImageClassifier::ImageClassifier(const ConfigNode& c, const BuildContext& ctx) {
  if (ctx.data_shape.size() != 3)
    c.error("image_classifier takes images (C, H, W); the data set gives samples of shape " +
            shape_str(ctx.data_shape) + " (drop the data set's flatten: true)");
  if (ctx.num_classes <= 0) c.error("image_classifier: the data set has no labels to classify");
  image_shape_ = ctx.data_shape;
  classes_ = static_cast<std::size_t>(ctx.num_classes);
  const std::vector<std::int64_t> widths = c.get_int_list("channels", {32, 64, 128}, 1, 4096);
  if (widths.empty()) c.at("channels").error("at least one block (a list of channel counts, e.g. [32, 64, 128])");
  groups_ = static_cast<std::size_t>(c.get_int("groups", 8, 1, 4096));
  for (const auto w : widths)
    if (w % static_cast<std::int64_t>(groups_) != 0)
      c.at("groups").error("groups " + std::to_string(groups_) + " must divide every channel count (" +
                           std::to_string(w) + " is not a multiple)");
  features_ = static_cast<std::size_t>(c.get_int("features", 128, 1, 65536));
  Rng& rng = *ctx.rng;

  auto convs = register_module("convs", std::make_shared<ModuleList>());
  auto norms = register_module("norms", std::make_shared<ModuleList>());
  std::size_t in = image_shape_[0], side = std::min(image_shape_[1], image_shape_[2]);
  for (std::size_t b = 0; b < widths.size(); ++b) {
    const auto out = static_cast<std::size_t>(widths[b]);
    const std::size_t stride = b == 0 ? 1 : 2;
    if (side < 2 && stride == 2)
      c.at("channels").error(std::to_string(widths.size()) + " blocks halve the " + std::to_string(image_shape_[1]) +
                             "x" + std::to_string(image_shape_[2]) + " images below one pixel; use fewer");
    side = (side - 1) / stride + 1;
    // No bias: the group norm right after removes any per-channel constant.
    convs_.push_back(convs->push_back(std::make_shared<Conv2d>(in, out, 3, rng, Conv2dOptions{stride, 1, 1}, false)));
    norms_.push_back(norms->push_back(std::make_shared<GroupNorm>(groups_, out)));
    in = out;
  }
  feature_ = register_module("feature", std::make_shared<Linear>(in, features_, true, rng));
  head_ = register_module("head", std::make_shared<Linear>(features_, classes_, true, rng));
}

void ImageClassifier::check_input(const Shape& s) const {
  if (s.size() != 4 || s[1] != image_shape_[0] || s[2] != image_shape_[1] || s[3] != image_shape_[2])
    throw Error("image_classifier: input " + shape_str(s) + ", expected (N, " +
                std::to_string(image_shape_[0]) + ", " + std::to_string(image_shape_[1]) + ", " +
                std::to_string(image_shape_[2]) + ")");
}

Var ImageClassifier::trunk(const Var& x) const {
  check_input(x.shape());
  Var h = x;
  for (std::size_t b = 0; b < convs_.size(); ++b) h = silu(norms_[b]->forward(convs_[b]->forward(h)));
  return feature_->forward(mean(h, {2, 3}), Activation::silu);  // global average pooling, then the features
}

Var ImageClassifier::forward(const Var& x, const Tensor& /*t*/, const Condition& /*c*/) {
  return head_->forward(trunk(x));
}

namespace {

/// f applied to x in batches of at most 512 rows (bounded memory for 10^4 images), rows stacked.
template <class F>
Tensor in_batches(const Tensor& x, std::size_t width, F f) {
  const std::size_t n = x.shape()[0], per = n ? x.size() / n : 0, batch = 512;
  Tensor out = Tensor::from_shape({n, width});
  const NoGradScope no_grad;
  for (std::size_t start = 0; start < n; start += batch) {
    const std::size_t rows = std::min(batch, n - start);
    Shape s = shape_of(x);
    s[0] = rows;
    Tensor part = Tensor::from_shape(s);
    std::copy(x.data() + start * per, x.data() + (start + rows) * per, part.data());
    const Tensor y = f(Var(std::move(part))).value();
    std::copy(y.data(), y.data() + rows * width, out.data() + start * width);
  }
  return out;
}

}  // namespace

Tensor ImageClassifier::features(const Tensor& x) {
  return in_batches(x, features_, [&](const Var& v) { return trunk(v); });
}

Tensor ImageClassifier::logits(const Tensor& x) {
  return in_batches(x, classes_, [&](const Var& v) { return head_->forward(trunk(v)); });
}

DIFFUSION_REGISTER(networks, "image_classifier", [](const ConfigNode& c, const BuildContext& ctx) {
  return std::make_shared<ImageClassifier>(c, ctx);
});

}  // namespace diffusion::image_metrics
