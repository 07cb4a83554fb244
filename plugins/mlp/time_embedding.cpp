#include "time_embedding.hpp"

#include <string>

namespace diffusion::mlp {

Var TimeEmbedding::forward(const Tensor& t) const {
  if (sinusoidal) return sinusoidal->forward(t);
  if (fourier) return fourier->forward(t);
  return reshape(Var(t), {static_cast<long>(t.size()), 1});
}

TimeEmbedding read_time_embedding(Module& owner, const std::optional<ConfigNode>& te, Rng& rng, bool allow_raw) {
  TimeEmbedding e;
  const std::string type = te ? te->type() : "sinusoidal";
  if (allow_raw && type == "raw") return e;
  e.width = static_cast<std::size_t>(te ? te->get_int("dim", 32, 2, 1 << 16) : 32);
  if (e.width % 2) te->at("dim").fail("an even integer");
  if (type == "sinusoidal") {
    const double period = te ? te->get_double("max_period", 10000.0, Interval::greater_than(0)) : 10000.0;
    e.sinusoidal = owner.register_module("time_embedding", std::make_shared<SinusoidalEmbedding>(e.width, period));
  } else if (type == "fourier") {
    const double scale = te->get_double("scale", 16.0, Interval::greater_than(0));
    e.fourier = owner.register_module("time_embedding", std::make_shared<GaussianFourierEmbedding>(e.width, scale, rng));
  } else {
    te->error("unknown time_embedding type '" + type + "' (expected " +
              (allow_raw ? "sinusoidal, fourier or raw)" : "sinusoidal or fourier)"));
  }
  return e;
}

}  // namespace diffusion::mlp
