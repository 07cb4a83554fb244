#include "diffusion/model/sampler.hpp"

namespace diffusion {

void Trajectory::record(const Tensor& x, double t, std::size_t step, std::size_t total) {
  if (max_frames == 0) return;
  // Keep step k if it is the nearest step to one of max_frames evenly spaced targets.
  const std::size_t k = max_frames < 2 ? 1 : max_frames - 1;
  bool keep = max_frames < 2 ? step == total : false;
  for (std::size_t j = 0; j <= k && !keep && max_frames >= 2; ++j) keep = (j * total + k / 2) / k == step;
  if (keep && frames.size() < max_frames) {
    frames.push_back(x);
    times.push_back(t);
  }
}

const Source& SampleRequest::source_or_default() const { return source ? *source : standard_normal_source(); }

Network& SampleRequest::model(const std::string& slot) const {
  if (!models) throw Error("sampler: needs the named model '" + slot + "', but no models were given");
  return models->get(slot);
}

void SampleOutput::add_extra(const std::string& name, Tensor value) {
  for (const auto& e : extras)
    if (e.first == name) throw Error("sampler: extra '" + name + "' reported twice");
  if (name == "x" || name == "trajectory")
    throw Error("sampler: '" + name + "' is not a name for an extra (the run writes it)");
  extras.emplace_back(name, std::move(value));
}

}  // namespace diffusion
