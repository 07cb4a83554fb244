#pragma once
// The source: the distribution at the far end of the path (t_max), which samplers start from
// and losses pair data with. A standard Gaussian by default; any registered data set for
// transport between two data sets (`source: {type: eight_gaussians}`). How source draws are
// paired with data (independently, by minibatch optimal transport) is the loss's business.
#include <memory>
#include <string>

#include "diffusion/model/dataset.hpp"
#include "diffusion/model/path.hpp"
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Codec;

/// How a sampler draws its starting points.
enum class PriorDraw {
  iid,   ///< independent draws
  rqmc,  ///< randomised quasi-Monte Carlo (quasi_random.hpp; standard Gaussian source only):
         ///< each row exactly as iid, the set spread evenly
};
PriorDraw parse_prior_draw(const std::string& name);

class Source {
 public:
  virtual ~Source() = default;
  /// A batch of the given full shape (n, sample...) in the model's space.
  virtual Tensor sample(const Shape& shape, Rng& rng, PriorDraw draw = PriorDraw::iid) const = 0;
  /// True for the standard Gaussian (closed-form prior density, rqmc draws).
  virtual bool standard_normal() const { return false; }
  /// For messages: "standard_normal" or the data set's type.
  virtual std::string name() const = 0;

  /// Where a sampler starts on `path`: x at t_max. A standard Gaussian source gives
  /// N(0, (alpha^2 + sigma^2)(t_max) I), the marginal of unit-variance data (DDPM's and the
  /// score SDE's prior); a data-set source gives sigma(t_max) z, exact where alpha(t_max) = 0
  /// (the flow-matching paths).
  Tensor start(const Path& path, const Shape& shape, Rng& rng, PriorDraw draw = PriorDraw::iid) const;
  /// log density of start()'s distribution at each row of x (N, ...), as (N): the prior term of
  /// a likelihood. Only the standard Gaussian source has one; Error naming the source otherwise.
  Tensor start_log_density(const Path& path, const Tensor& x) const;
};

/// N(0, I): the default source.
class StandardNormalSource : public Source {
 public:
  Tensor sample(const Shape& shape, Rng& rng, PriorDraw draw = PriorDraw::iid) const override;
  bool standard_normal() const override { return true; }
  std::string name() const override { return "standard_normal"; }
};

/// A registered data set, mapped into the model's space by the experiment's codec (the same
/// map as the data, so both ends of the path live in one coordinate system).
class DatasetSource : public Source {
 public:
  DatasetSource(std::shared_ptr<const Dataset> dataset, std::shared_ptr<const Codec> codec,
                std::string type);
  Tensor sample(const Shape& shape, Rng& rng, PriorDraw draw = PriorDraw::iid) const override;
  std::string name() const override { return type_; }
  const Dataset& dataset() const { return *dataset_; }

 private:
  std::shared_ptr<const Dataset> dataset_;
  std::shared_ptr<const Codec> codec_;
  std::string type_;
};

/// A shared standard Gaussian, for callers that have no experiment (tests, tools).
const Source& standard_normal_source();

}  // namespace diffusion
