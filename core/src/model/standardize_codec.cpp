// The core's codecs: `standardize` (per coordinate, per channel or one scalar) and `identity`.
#include <algorithm>
#include <cmath>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/model/codec.hpp"

namespace diffusion {
namespace {

/// Refuse statistics written by another kind of codec (a file without the attribute predates
/// codecs and was standardised per coordinate).
void require_codec(const H5::Group& g, const std::string& mine) {
  const std::string theirs = has_attribute(g, "codec") ? read_string_attribute(g, "codec") : "standardize";
  if (theirs != mine)
    throw Error(h5_location(g) + ": the data were encoded with codec " + theirs + ", this experiment's codec is " +
                mine + " (set codec: to the trained run's)");
}

/// x -> (x - mean) / std, with one (mean, std) per group of values. A group is a coordinate of
/// a sample (`coordinate`: each of the D values of a point, each pixel of an image), a channel
/// of an image (N, C, ...) (`channel`), or everything (`all`). Statistics come from `samples`
/// draws of the data set, in double; the map itself runs in float.
class StandardizeCodec : public Codec {
 public:
  using Per = StandardizePer;
  StandardizeCodec(Per per, std::size_t samples) : per_(per), samples_(samples) {}

  Shape encoded_shape(const Shape& data_shape) const override {
    if (per_ == Per::channel && data_shape.size() < 2)
      throw Error("per: channel needs samples with channels (C, H, W); this data set's have shape " +
                  shape_str(data_shape) + " (use per: coordinate or per: all)");
    return data_shape;
  }

  void fit(const Dataset& data, Rng rng) override {
    const Shape shape = encoded_shape(data.sample_shape());
    const Tensor x = data.sample(samples_, rng);
    const std::size_t d = numel(shape), groups = group_count(shape);
    std::vector<double> s(groups, 0.0), s2(groups, 0.0), count(groups, 0.0);
    for (std::size_t i = 0; i < samples_; ++i)
      for (std::size_t j = 0; j < d; ++j) s[group(j, shape)] += x.data()[i * d + j], count[group(j, shape)] += 1;
    std::vector<double> m(groups);
    for (std::size_t g = 0; g < groups; ++g) m[g] = s[g] / count[g];
    for (std::size_t i = 0; i < samples_; ++i)
      for (std::size_t j = 0; j < d; ++j) s2[group(j, shape)] += std::pow(x.data()[i * d + j] - m[group(j, shape)], 2);
    mean_ = Tensor::from_shape(stat_shape(shape));
    std_ = Tensor::from_shape(stat_shape(shape));
    for (std::size_t g = 0; g < groups; ++g) {
      mean_.data()[g] = float(m[g]);
      std_.data()[g] = float(std::max(std::sqrt(s2[g] / count[g]), 1e-8));
    }
    ready_ = true;
  }

  Tensor encode(const Tensor& x) const override { return apply(x, false); }
  Tensor decode(const Tensor& z) const override { return apply(z, true); }
  /// encode divides each value by its group's std: log |det| = -sum over values of log std.
  double log_det_encode(const Shape& data_shape) const override {
    if (!ready_) throw Error("codec standardize: used before fit() or load()");
    double sum = 0;
    for (std::size_t j = 0; j < numel(data_shape); ++j) sum -= std::log(double(std_.data()[group(j, data_shape)]));
    return sum;
  }

  void save(const H5::Group& g) const override {
    write_attribute(g, "codec", std::string("standardize"));
    write_attribute(g, "per", std::string(per_name()));
    write_tensor(g, "mean", mean_);
    write_tensor(g, "std", std_);
  }

  void load(const H5::Group& g, const Shape& data_shape) override {
    require_codec(g, "standardize");
    const Shape s = stat_shape(data_shape);
    if (has_attribute(g, "per") && read_string_attribute(g, "per") != per_name())
      throw Error(h5_location(g, "") + ": the data were standardised per " + read_string_attribute(g, "per") +
                  ", this experiment's codec standardises per " + per_name());
    mean_ = read_tensor(g, "mean", s);
    std_ = read_tensor(g, "std", s);
    ready_ = true;
  }

 private:
  const char* per_name() const { return per_ == Per::coordinate ? "coordinate" : per_ == Per::channel ? "channel" : "all"; }
  std::size_t group_count(const Shape& shape) const {
    return per_ == Per::coordinate ? numel(shape) : per_ == Per::channel ? shape[0] : 1;
  }
  /// The group of value j of a sample.
  std::size_t group(std::size_t j, const Shape& shape) const {
    return per_ == Per::coordinate ? j : per_ == Per::channel ? j / (numel(shape) / shape[0]) : 0;
  }
  Shape stat_shape(const Shape& shape) const {
    return per_ == Per::coordinate ? shape : per_ == Per::channel ? Shape{shape[0]} : Shape{1};
  }

  Tensor apply(const Tensor& x, bool inverse) const {
    if (!ready_) throw Error("codec standardize: used before fit() or load()");
    const std::size_t n = x.dimension() ? x.shape()[0] : 0, d = n ? x.size() / n : 0;
    Shape sample(x.shape().begin() + (n ? 1 : 0), x.shape().end());
    if (numel(stat_shape(sample)) != mean_.size())
      throw Error("codec standardize: a batch of shape " + shape_str(x) + " does not match statistics of shape " +
                  shape_str(mean_));
    Tensor out = Tensor::from_shape(shape_of(x));
    const float* p = x.data();
    float* o = out.data();
    const float* mu = mean_.data();
    const float* sd = std_.data();
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < d; ++j) {
        const std::size_t g = group(j, sample);
        const float v = p[i * d + j];
        o[i * d + j] = inverse ? v * sd[g] + mu[g] : (v - mu[g]) / sd[g];
      }
    return out;
  }

  Per per_;
  std::size_t samples_;
  Tensor mean_, std_;
  bool ready_ = false;  // fitted or loaded
};

/// The data as they are.
class IdentityCodec : public Codec {
 public:
  void fit(const Dataset&, Rng) override {}
  Tensor encode(const Tensor& x) const override { return x; }
  Tensor decode(const Tensor& z) const override { return z; }
  double log_det_encode(const Shape&) const override { return 0.0; }
  void save(const H5::Group& g) const override { write_attribute(g, "codec", std::string("identity")); }
  void load(const H5::Group& g, const Shape&) override { require_codec(g, "identity"); }
};

}  // namespace

std::shared_ptr<Codec> make_standardize_codec(StandardizePer per, std::size_t samples) {
  if (samples < 2) throw Error("codec standardize: at least 2 samples are needed for the statistics");
  return std::make_shared<StandardizeCodec>(per, samples);
}

std::shared_ptr<Codec> make_identity_codec() { return std::make_shared<IdentityCodec>(); }

}  // namespace diffusion
