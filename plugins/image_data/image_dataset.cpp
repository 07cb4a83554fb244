#include "image_dataset.hpp"

#include <algorithm>

namespace diffusion::image_data {

ImageDataset::ImageDataset(std::shared_ptr<const ImageSet> train, std::shared_ptr<const ImageSet> test, Options options)
    : train_(std::move(train)),
      test_(std::move(test)),
      train_order_(train_->size()),
      test_order_(test_->size()),
      options_(options) {
  if (train_->pixels() != test_->pixels() || train_->channels != test_->channels || train_->height != test_->height)
    throw Error("image data: the training and test images differ in shape");
  if (train_->labelled() != test_->labelled()) throw Error("image data: only one of the splits has labels");
  classes_ = std::max(train_->classes(), test_->classes());
}

Shape ImageDataset::sample_shape() const {
  if (options_.flatten) return {train_->pixels()};
  return {train_->channels, train_->height, train_->width};
}

Tensor ImageDataset::draw(const ImageSet& set, const EpochOrder& order, bool flip, std::size_t n, Rng& rng,
                          Condition* condition) const {
  std::uint64_t value = 0;
  const std::vector<std::size_t> rows = order.draw(n, rng, &value);
  Shape shape = sample_shape();
  shape.insert(shape.begin(), n);
  Tensor x = Tensor::from_shape(shape);
  // Flips from the value the draw took: a function of the stream's state, as the rows are.
  Rng flips(value);
  const std::size_t p = set.pixels();
  std::vector<int> labels;
  if (condition && set.labelled()) labels.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const bool mirror = flip && (flips.next_u64() >> 63) != 0;
    set.copy_image(rows[i], x.data() + i * p, mirror);
    if (condition && set.labelled()) labels.push_back(set.labels[rows[i]]);
  }
  if (condition && set.labelled()) condition->set_labels(std::move(labels));
  return x;
}

Tensor ImageDataset::sample(std::size_t n, Rng& rng, Condition* condition) const {
  return draw(*train_, train_order_, options_.flip, n, rng, condition);
}

Tensor ImageDataset::sample_independent(std::size_t n, Rng& rng, Condition* condition) const {
  return draw(*test_, test_order_, false, n, rng, condition);
}

}  // namespace diffusion::image_data
