// A data set N(mean, std^2 I) in `dim` dimensions, as a plugin built outside the toolkit.
//
//   dataset: {type: isotropic_gaussian, dim: 3, mean: [1, -1, 0.5], std: 0.5}
//
// `mean` is a list of `dim` numbers or one number for every coordinate (default 0); `std` > 0
// (default 1). Its score is exact, -(x - mean) / std^2, which makes it a handy sanity check for
// a new loss or sampler: after the forward process, x_t ~ N(alpha mean, (alpha^2 std^2 + sigma^2) I).
#include <memory>
#include <vector>

#include <diffusion/plugin.hpp>

namespace {

class IsotropicGaussian : public diffusion::Dataset {
 public:
  explicit IsotropicGaussian(const diffusion::ConfigNode& c)
      : dim_(static_cast<std::size_t>(c.get_int("dim", 2, 1, 1 << 20))),
        std_(c.get_double("std", 1.0, diffusion::Interval::greater_than(0))),
        mean_(dim_, 0.0) {
    // Read `mean` as one number or as a list; unknown keys and bad values are reported by the
    // toolkit with file:line:col.
    if (const auto mean = c.find("mean")) {
      if (mean->is_scalar()) {
        mean_.assign(dim_, mean->as_double());
      } else {
        mean_ = c.get_double_list("mean");
        if (mean_.size() != dim_)
          mean->fail("one number or a list of " + std::to_string(dim_) + " numbers (dim)");
      }
    }
  }

  diffusion::Shape sample_shape() const override { return {dim_}; }

  // Unlabelled: nothing to put into the condition.
  diffusion::Tensor sample(std::size_t n, diffusion::Rng& rng, diffusion::Condition*) const override {
    diffusion::Tensor x = rng.normal({n, dim_});
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < dim_; ++j) x(i, j) = static_cast<float>(mean_[j] + std_ * x(i, j));
    return x;
  }

 private:
  std::size_t dim_;
  double std_;
  std::vector<double> mean_;
};

}  // namespace

// The YAML type name; names are global across loaded plugins, so pick one nobody else uses.
DIFFUSION_REGISTER(datasets, "isotropic_gaussian",
                   [](const diffusion::ConfigNode& c, const diffusion::BuildContext&) {
                     return std::make_shared<IsotropicGaussian>(c);
                   });

// Exactly once per plugin: the entry points runexp looks for.
DIFFUSION_PLUGIN("my_plugin")
