#pragma once
// Samplers draw samples from a trained model through its Denoiser. A sampler returns the
// samples and named extras (particle weights, effective sample size over time, log normalising
// constant, acceptance rates, ...), all written under /samples/<sampler>/.
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/model/condition.hpp"
#include "diffusion/model/denoiser.hpp"
#include "diffusion/model/models.hpp"
#include "diffusion/model/path.hpp"
#include "diffusion/model/source.hpp"
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// Frames recorded while sampling, for plots and animations.
struct Trajectory {
  std::size_t max_frames = 0;   ///< 0: record nothing
  std::vector<Tensor> frames;   ///< states along the way, first = the starting draw
  std::vector<double> times;
  /// Offer the state after `step` of `total` steps (step 0 = the starting draw, step total = the
  /// result); keeps max_frames of them, evenly spaced, always the first and the last.
  void record(const Tensor& x, double t, std::size_t step, std::size_t total);
};

/// What the run asks of a sampler.
struct SampleRequest {
  Shape shape;                       ///< (n, sample shape...) in the model's space
  Condition condition;               ///< empty, or n rows
  const Source* source = nullptr;    ///< null: the standard Gaussian
  const Models* models = nullptr;    ///< the experiment's named models (null: none)
  Trajectory* trajectory = nullptr;  ///< frames to keep (null: none)

  const Source& source_or_default() const;
  /// The named model; Error naming the sampler's need when there is none.
  Network& model(const std::string& slot) const;
};

/// The samples and what else the sampler reports.
struct SampleOutput {
  Tensor x;  ///< (n, sample shape...) in the model's space
  /// Named extras, written as /samples/<sampler>/<name> as they are (not decoded).
  std::vector<std::pair<std::string, Tensor>> extras;
  /// Network evaluations of models other than the sampled one, by slot (the run adds the
  /// sampled model's own count as `nfe`).
  std::map<std::string, std::size_t> nfe;

  void add_extra(const std::string& name, Tensor value);
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  /// Reject settings this path cannot honour (e.g. more steps than a discrete path has), so an
  /// experiment fails before training rather than after.
  virtual void check(const Path& /*path*/, const Source& /*source*/) const {}
  /// The named models (slots other than the sampled one) the sampler uses; an experiment
  /// without one of them is refused before training, naming the slot.
  virtual std::vector<std::string> required_models() const { return {}; }
  /// Samples of request.shape from `model`.
  virtual SampleOutput sample(const Denoiser& model, const SampleRequest& request, Rng& rng) const = 0;
};

}  // namespace diffusion
