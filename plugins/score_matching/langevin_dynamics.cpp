// Langevin dynamics' shared pieces (langevin_dynamics.hpp).
#include "langevin_dynamics.hpp"

#include <cmath>

#include <diffusion/io/text.hpp>

namespace diffusion::score_matching {

LangevinInit LangevinInit::read(const ConfigNode& c, const char* sampler) {
  LangevinInit init;
  init.uniform = c.get_choice("init", "prior", {"prior", "uniform"}) == "uniform";
  if (!init.uniform) {
    for (const char* key : {"low", "high"})
      if (c.has(key)) c.at(key).error(std::string(sampler) + ": " + key + " is the range of init: uniform");
    return init;
  }
  init.low = c.get_double("low");
  init.high = c.get_double("high");
  if (!(init.high > init.low))
    c.at("high").error("expected high > low (" + format_number(init.low) + "), got " + format_number(init.high));
  return init;
}

Tensor LangevinInit::draw(const Path& path, const Source& source, const Shape& shape, Rng& rng) const {
  if (!uniform) return source.start(path, shape, rng);
  return rng.uniform(shape, static_cast<float>(low), static_cast<float>(high));
}

void langevin_step(Tensor& x, const Tensor& eps_hat, double sigma, double step, Tensor& noise, Rng& rng) {
  if (shape_of(noise) != shape_of(x)) noise = Tensor::from_shape(shape_of(x));
  rng.fill_normal(noise);
  const double drift = -0.5 * step / sigma, spread = std::sqrt(step);  // (step / 2) score = drift eps_hat
  float* px = x.data();
  const float* pe = eps_hat.data();
  const float* pz = noise.data();
  for (std::size_t j = 0; j < x.size(); ++j) px[j] = static_cast<float>(px[j] + drift * pe[j] + spread * pz[j]);
}

void require_positive_sigma(const Path& path, double t, const std::string& sampler) {
  if (!(path.sigma(t) > 0.0))
    throw Error(sampler + ": the path's sigma at t = " + format_number(t) +
                " is 0, where the score -eps_hat / sigma is undefined");
}

void require_gaussian_source(const Source& source, const std::string& sampler) {
  if (!source.standard_normal())
    throw Error(sampler + ": the score -eps_hat / sigma needs the standard Gaussian source, not " + source.name());
}

}  // namespace diffusion::score_matching
