#include "diffusion/model/source.hpp"

#include <cmath>

#include "diffusion/model/codec.hpp"
#include "diffusion/tensor/quasi_random.hpp"

namespace diffusion {

PriorDraw parse_prior_draw(const std::string& name) {
  if (name == "iid") return PriorDraw::iid;
  if (name == "rqmc") return PriorDraw::rqmc;
  throw Error("unknown prior draw '" + name + "' (expected iid or rqmc)");
}

Tensor Source::start(const Path& path, const Shape& shape, Rng& rng, PriorDraw draw) const {
  const double t = path.t_max(), a = path.alpha(t), s = path.sigma(t);
  if (standard_normal()) {
    // Drawn at this scale directly, as DDPM's and the score SDE's priors are.
    const auto scale = static_cast<float>(std::sqrt(a * a + s * s));
    return draw == PriorDraw::rqmc ? rqmc_normal(shape, rng, 0.0f, scale) : rng.normal(shape, 0.0f, scale);
  }
  Tensor z = sample(shape, rng, draw);
  const auto scale = static_cast<float>(s);
  for (float& v : z) v *= scale;
  return z;
}

Tensor Source::start_log_density(const Path& path, const Tensor& x) const {
  if (!standard_normal())
    throw Error("the source " + name() + " has no closed-form density: a likelihood needs the standard Gaussian source");
  const double t = path.t_max(), a = path.alpha(t), s = path.sigma(t), var = a * a + s * s;
  const std::size_t n = x.dimension() ? x.shape()[0] : 0, d = n ? x.size() / n : 0;
  Tensor out = Tensor::from_shape({n});
  const double log_norm = -0.5 * double(d) * std::log(2.0 * M_PI * var);
  for (std::size_t i = 0; i < n; ++i) {
    double sq = 0;
    for (std::size_t j = 0; j < d; ++j) sq += double(x.data()[i * d + j]) * x.data()[i * d + j];
    out.data()[i] = static_cast<float>(log_norm - 0.5 * sq / var);
  }
  return out;
}

Tensor StandardNormalSource::sample(const Shape& shape, Rng& rng, PriorDraw draw) const {
  return draw == PriorDraw::rqmc ? rqmc_normal(shape, rng) : rng.normal(shape);
}

DatasetSource::DatasetSource(std::shared_ptr<const Dataset> dataset, std::shared_ptr<const Codec> codec,
                             std::string type)
    : dataset_(std::move(dataset)), codec_(std::move(codec)), type_(std::move(type)) {
  if (!dataset_) throw Error("DatasetSource: no data set");
}

Tensor DatasetSource::sample(const Shape& shape, Rng& rng, PriorDraw draw) const {
  if (draw == PriorDraw::rqmc)
    throw Error("source " + type_ + ": rqmc draws need the standard Gaussian source (use prior: iid)");
  const Tensor x = dataset_->sample(shape.empty() ? 0 : shape[0], rng);
  Tensor z = codec_ ? codec_->encode(x) : x;
  if (shape_of(z) != shape)
    throw Error("source " + type_ + ": draws of shape " + shape_str(z) + " where the model works on " +
                shape_str(shape));
  return z;
}

const Source& standard_normal_source() {
  static const StandardNormalSource source;
  return source;
}

}  // namespace diffusion
