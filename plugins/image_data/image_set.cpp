#include "image_set.hpp"

#include <algorithm>
#include <cmath>

#include <diffusion/tensor/random.hpp>
#include <diffusion/tensor/tensor.hpp>

namespace diffusion::image_data {

std::size_t ImageSet::size() const {
  const std::size_t p = pixels();
  if (p == 0) return 0;
  return (bytes.empty() ? values.size() : bytes.size()) / p;
}

int ImageSet::classes() const {
  int k = 0;
  for (const int l : labels) k = std::max(k, l + 1);
  return k;
}

void ImageSet::copy_image(std::size_t i, float* out, bool flip) const {
  const std::size_t p = pixels(), w = width;
  // In double, so that 0 and byte_max give exactly -1 and +1 (in float 255 * (2 / 255) is not 2).
  const double scale = 2.0 / double(byte_max);
  for (std::size_t row = 0; row < channels * height; ++row) {
    const std::size_t from = i * p + row * w;
    float* to = out + row * w;
    for (std::size_t x = 0; x < w; ++x) {
      const std::size_t src = from + (flip ? w - 1 - x : x);
      to[x] = bytes.empty() ? values[src] : float(double(bytes[src]) * scale - 1.0);
    }
  }
}

ImageSet ImageSet::subset(const std::vector<std::size_t>& rows) const {
  ImageSet out;
  out.channels = channels, out.height = height, out.width = width, out.byte_max = byte_max;
  const std::size_t p = pixels();
  if (!bytes.empty()) out.bytes.reserve(rows.size() * p);
  if (!values.empty()) out.values.reserve(rows.size() * p);
  for (const std::size_t r : rows) {
    if (!bytes.empty()) out.bytes.insert(out.bytes.end(), bytes.begin() + r * p, bytes.begin() + (r + 1) * p);
    if (!values.empty()) out.values.insert(out.values.end(), values.begin() + r * p, values.begin() + (r + 1) * p);
    if (!labels.empty()) out.labels.push_back(labels[r]);
  }
  return out;
}

void ImageSet::check(const std::string& what) const {
  if (pixels() == 0) throw Error(what + ": images of no pixels");
  if (bytes.empty() == values.empty()) throw Error(what + ": an image set holds either bytes or floats");
  const std::size_t total = bytes.empty() ? values.size() : bytes.size();
  if (total % pixels() != 0 || total == 0)
    throw Error(what + ": " + std::to_string(total) + " pixel values are no whole number of " + std::to_string(channels) +
                "x" + std::to_string(height) + "x" + std::to_string(width) + " images");
  if (!labels.empty() && labels.size() != size())
    throw Error(what + ": " + std::to_string(labels.size()) + " labels for " + std::to_string(size()) + " images");
  for (const int l : labels)
    if (l < 0) throw Error(what + ": a negative label (" + std::to_string(l) + "); labels are classes 0, 1, ...");
}

Split split_rows(std::size_t n, double test_fraction, std::uint64_t seed) {
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  Rng rng = Rng(seed).split("test split");
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.integer(i)]);  // Fisher-Yates
  const auto test_n = static_cast<std::size_t>(std::llround(test_fraction * double(n)));
  Split s;
  s.train.assign(order.begin(), order.end() - static_cast<std::ptrdiff_t>(test_n));
  s.test.assign(order.end() - static_cast<std::ptrdiff_t>(test_n), order.end());
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.test.begin(), s.test.end());
  return s;
}

}  // namespace diffusion::image_data
