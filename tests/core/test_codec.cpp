// Codecs (codec.hpp): `standardize` per coordinate, per channel and over all values, fitted on
// Gaussian data sets with known means and standard deviations; `identity`.
#include <catch2/catch.hpp>

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/nn_test_helpers.hpp"
#include "diffusion/io/config.hpp"
#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/model/codec.hpp"
#include "diffusion/plugin/registries.hpp"

using namespace diffusion;
using diffusion::testing::bitwise_equal;
using diffusion::testing::error_of;
using diffusion::testing::TempH5;
using Catch::Matchers::WithinAbs;

namespace {

/// Independent Gaussian values: value j of a sample is mean[g(j)] + std[g(j)] z, where g maps
/// a value to its group (a coordinate, a channel, or everything).
class GaussianData : public Dataset {
 public:
  GaussianData(Shape shape, std::vector<double> mean, std::vector<double> sd, std::size_t per_group)
      : shape_(std::move(shape)), mean_(std::move(mean)), sd_(std::move(sd)), per_group_(per_group) {}
  Shape sample_shape() const override { return shape_; }
  Tensor sample(std::size_t n, Rng& rng, Condition* = nullptr) const override {
    Shape s = shape_;
    s.insert(s.begin(), n);
    Tensor x = rng.normal(s);
    const std::size_t d = numel(shape_);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < d; ++j) {
        float& v = x.data()[i * d + j];
        v = float(mean_[j / per_group_] + sd_[j / per_group_] * v);
      }
    return x;
  }
  double mean(std::size_t g) const { return mean_[g]; }
  double sd(std::size_t g) const { return sd_[g]; }
  std::size_t groups() const { return mean_.size(); }
  std::size_t per_group() const { return per_group_; }

 private:
  Shape shape_;
  std::vector<double> mean_, sd_;
  std::size_t per_group_;  ///< consecutive values sharing a group
};

/// Points (3): one group per coordinate.
GaussianData points() { return GaussianData({3}, {1.0, -2.0, 5.0}, {0.5, 2.0, 3.0}, 1); }
/// Images (3, 4, 4): one group per channel (16 values each).
GaussianData images() { return GaussianData({3, 4, 4}, {0.3, -1.0, 4.0}, {1.0, 0.2, 2.5}, 16); }
/// Points (2, 3), every value alike: one group.
GaussianData alike() { return GaussianData({2, 3}, {2.0}, {3.0}, 6); }

struct Case {
  std::string per;
  GaussianData data;
};

std::shared_ptr<Codec> make_codec(const std::string& yaml) {
  return registries().codecs.create(Config::load_string(yaml).root(), BuildContext{});
}

constexpr std::size_t kSamples = 20000;

std::shared_ptr<Codec> standardize(const std::string& per) {
  return make_codec("{type: standardize, per: " + per + ", samples: " + std::to_string(kSamples) + "}");
}

/// Per-group sample mean and standard deviation of a batch (N, shape...) of `data`'s layout.
void group_moments(const Tensor& x, const GaussianData& data, std::vector<double>& m, std::vector<double>& sd) {
  const std::size_t d = numel(data.sample_shape()), n = x.shape()[0];
  m.assign(data.groups(), 0.0);
  sd.assign(data.groups(), 0.0);
  const double count = double(n * data.per_group());
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) m[j / data.per_group()] += x.data()[i * d + j] / count;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < d; ++j) {
      const double e = x.data()[i * d + j] - m[j / data.per_group()];
      sd[j / data.per_group()] += e * e / count;
    }
  for (double& v : sd) v = std::sqrt(v);
}

std::vector<Case> cases() { return {{"coordinate", points()}, {"channel", images()}, {"all", alike()}}; }

Shape batch_shape(std::size_t n, const Shape& sample) {
  Shape s = sample;
  s.insert(s.begin(), n);
  return s;
}

}  // namespace

TEST_CASE("standardize fits the data's mean and std per group", "[codec][stat]") {
  for (const Case& c : cases()) {
    CAPTURE(c.per);
    const auto codec = standardize(c.per);
    codec->fit(c.data, Rng(5));
    REQUIRE(codec->encoded_shape(c.data.sample_shape()) == c.data.sample_shape());
    // The fitted statistics, read through decode: decode(0) = mean, decode(1) - decode(0) = std.
    const Shape one = batch_shape(1, c.data.sample_shape());
    const Tensor m = codec->decode(zeros(one)), m1 = codec->decode(ones(one));
    const std::size_t d = numel(c.data.sample_shape());
    for (std::size_t j = 0; j < d; ++j) {
      const std::size_t g = j / c.data.per_group();
      // kSamples draws of per_group values each: standard errors sd / sqrt(n) of the mean and
      // sd / sqrt(2 n) of the standard deviation.
      const double n = double(kSamples * c.data.per_group());
      CAPTURE(j, g, m.data()[j], m1.data()[j] - m.data()[j]);
      REQUIRE_THAT(m.data()[j], WithinAbs(c.data.mean(g), 4 * c.data.sd(g) / std::sqrt(n)));
      REQUIRE_THAT(m1.data()[j] - m.data()[j], WithinAbs(c.data.sd(g), 4 * c.data.sd(g) / std::sqrt(2 * n) + 1e-5));
      // Every value of a group shares the group's numbers.
      REQUIRE(m.data()[j] == m.data()[g * c.data.per_group()]);
    }
  }
}

TEST_CASE("standardize: encoded data have mean 0 and std 1 per group, and decode inverts encode", "[codec][stat]") {
  for (const Case& c : cases()) {
    CAPTURE(c.per);
    const auto codec = standardize(c.per);
    Rng rng(7);
    codec->fit(c.data, rng);  // fit draws from its own copy of the stream ...
    const Tensor fitted = c.data.sample(kSamples, rng);  // ... so these are the draws it saw
    std::vector<double> m, sd;
    group_moments(codec->encode(fitted), c.data, m, sd);
    for (std::size_t g = 0; g < c.data.groups(); ++g) {
      CAPTURE(g, m[g], sd[g]);
      REQUIRE_THAT(m[g], WithinAbs(0.0, 1e-5));  // exactly, up to float rounding
      REQUIRE_THAT(sd[g], WithinAbs(1.0, 1e-5));
    }
    // Fresh data: 0 and 1 within 4 standard errors (of both the data and the fit).
    Rng fresh(8);
    const Tensor x = c.data.sample(5000, fresh);
    const Tensor z = codec->encode(x);
    REQUIRE(shape_of(z) == shape_of(x));
    group_moments(z, c.data, m, sd);
    const double n = 5000.0 * c.data.per_group(), n_fit = double(kSamples * c.data.per_group());
    for (std::size_t g = 0; g < c.data.groups(); ++g) {
      CAPTURE(g, m[g], sd[g]);
      REQUIRE_THAT(m[g], WithinAbs(0.0, 4 * std::sqrt(1 / n + 1 / n_fit)));
      REQUIRE_THAT(sd[g], WithinAbs(1.0, 4 * std::sqrt(1 / (2 * n) + 1 / (2 * n_fit))));
    }
    const Tensor back = codec->decode(z);
    REQUIRE(shape_of(back) == shape_of(x));
    // Float rounding of (x - m) / s * s + m: a few ulps of |x| and |m|.
    double worst = 0;
    for (std::size_t k = 0; k < x.size(); ++k)
      worst = std::max(worst, double(std::abs(back.data()[k] - x.data()[k]) / (1 + std::abs(x.data()[k]))));
    CAPTURE(worst);
    REQUIRE(worst < 2e-6);
  }
}

TEST_CASE("standardize: per channel standardises each channel of (N, C, H, W) on its own", "[codec]") {
  // Channel c of the data is N(mean_c, sd_c), the sds 0.2 to 2.5: a value at mean_c +- sd_c
  // encodes to +-1 in every channel, whatever its pixel.
  const GaussianData d = images();
  const auto codec = standardize("channel");
  codec->fit(d, Rng(9));
  Tensor x = Tensor::from_shape({1, 3, 4, 4});
  for (std::size_t c = 0; c < 3; ++c)
    for (std::size_t k = 0; k < 16; ++k) x.data()[c * 16 + k] = float(d.mean(c) + d.sd(c) * (k % 2 ? 1 : -1));
  const Tensor z = codec->encode(x);
  for (std::size_t c = 0; c < 3; ++c)
    for (std::size_t k = 0; k < 16; ++k) {
      CAPTURE(c, k);
      // Within the fit's error (~1% of a std) of +-1.
      REQUIRE_THAT(z.data()[c * 16 + k], WithinAbs(k % 2 ? 1.0 : -1.0, 0.02));
    }
}

TEST_CASE("standardize: save then load into a fresh codec gives identical encodings", "[codec][hdf5]") {
  for (const Case& c : cases()) {
    CAPTURE(c.per);
    const auto codec = standardize(c.per);
    codec->fit(c.data, Rng(10));
    TempH5 file("codec_" + c.per);
    {
      H5::H5File f(file.path, H5F_ACC_TRUNC);
      codec->save(h5_require_group(f.openGroup("/"), "data"));
    }
    H5::H5File f(file.path, H5F_ACC_RDONLY);
    const H5::Group g = h5_open_group(f.openGroup("/"), "data");
    REQUIRE(read_string_attribute(g, "codec") == "standardize");
    REQUIRE(read_string_attribute(g, "per") == c.per);
    const auto loaded = standardize(c.per);
    loaded->load(g, c.data.sample_shape());
    Rng rng(11);
    const Tensor x = c.data.sample(64, rng);
    REQUIRE(bitwise_equal(loaded->encode(x), codec->encode(x)));
    REQUIRE(bitwise_equal(loaded->decode(x), codec->decode(x)));

    // A data set of another shape is refused, naming the dataset and both shapes (coordinates
    // and channels have statistics shaped by the data; `all` has one number for any shape).
    if (c.per != "all") {
      const Shape other = c.per == "coordinate" ? Shape{4} : Shape{2, 4, 4};
      const std::string e = error_of([&] { standardize(c.per)->load(g, other); });
      CAPTURE(e);
      REQUIRE_THAT(e, Catch::Contains("/data/mean") && Catch::Contains("expected shape " + shape_str(Shape{other[0]})) &&
                          Catch::Contains("found " + shape_str(Shape{3})));
    }
    // A codec that standardises per another group is refused.
    const std::string other = c.per == "all" ? "coordinate" : "all";
    const std::string e = error_of([&] { standardize(other)->load(g, c.data.sample_shape()); });
    CAPTURE(e);
    REQUIRE_THAT(e, Catch::Contains("per " + c.per) && Catch::Contains("per " + other));
  }
}

TEST_CASE("standardize refuses what it cannot do, clearly", "[codec]") {
  {
    const GaussianData pts({2}, {0.0}, {1.0}, 2);
    const std::string e = error_of([&] { standardize("channel")->fit(pts, Rng(1)); });
    CAPTURE(e);
    REQUIRE_THAT(e, Catch::Contains("channel") && Catch::Contains("(C, H, W)") && Catch::Contains(shape_str(Shape{2})));
  }
  // Used before fit() or load(): an error, not numbers from uninitialised statistics. (For
  // `all`, statistics of shape (1) would match any batch, so nothing else would catch it.)
  CHECK_THROWS_WITH(standardize("coordinate")->encode(zeros({4, 3})), Catch::Contains("before fit() or load()"));
  CHECK_THROWS_WITH(standardize("channel")->decode(zeros({4, 3, 2, 2})), Catch::Contains("before fit() or load()"));
  CHECK_THROWS_WITH(standardize("all")->encode(zeros({4, 3})), Catch::Contains("before fit() or load()"));
  // A batch of another sample shape than fitted.
  const auto codec = standardize("coordinate");
  codec->fit(points(), Rng(2));
  REQUIRE_THROWS_WITH(codec->encode(zeros({4, 5})), Catch::Contains("(4, 5)") && Catch::Contains(shape_str(Shape{3})));
  // Bad options, at their keys.
  REQUIRE_THROWS_WITH(make_codec("{type: standardize, per: pixel}"), Catch::Contains("per") && Catch::Contains("channel"));
  REQUIRE_THROWS_WITH(make_codec("{type: standardize, samples: 1}"), Catch::Contains("samples"));
}

TEST_CASE("the identity codec returns its input unchanged", "[codec]") {
  const auto codec = make_codec("type: identity");
  const GaussianData d = images();
  codec->fit(d, Rng(3));
  Rng rng(4);
  const Tensor x = d.sample(10, rng);
  REQUIRE(bitwise_equal(codec->encode(x), x));
  REQUIRE(bitwise_equal(codec->decode(x), x));
  REQUIRE(codec->encoded_shape({3, 4, 4}) == Shape{3, 4, 4});
  TempH5 file("codec_identity");
  H5::H5File f(file.path, H5F_ACC_TRUNC);
  const H5::Group g = h5_require_group(f.openGroup("/"), "data");
  codec->save(g);
  REQUIRE(read_string_attribute(g, "codec") == "identity");
  const auto fresh = make_codec("type: identity");
  REQUIRE_NOTHROW(fresh->load(g, {3, 4, 4}));
  REQUIRE(bitwise_equal(fresh->encode(x), x));
}
