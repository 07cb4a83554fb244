// Dataset's defaults.
#include "diffusion/model/dataset.hpp"

namespace diffusion {

Tensor Dataset::log_density(const Tensor&) const {
  throw Error("this data set has no closed-form density (has_log_density() is false)");
}

}  // namespace diffusion
