#pragma once
// The consistency function of a network on the autodiff graph (what the losses differentiate),
// and the distances d(x, y) of the consistency losses.
#include <memory>
#include <string>
#include <vector>

#include <diffusion/autodiff/autodiff.hpp>
#include <diffusion/model/condition.hpp>
#include <diffusion/model/network.hpp>
#include <diffusion/model/path.hpp>
#include <diffusion/model/preconditioning.hpp>

namespace diffusion::consistency {

/// f_theta(x, t) = c_skip x + c_out F(c_in x, c_noise), row i at time t[i], differentiable in the
/// network's weights (x is data, not a variable).
Var consistency_function(Network& net, const Preconditioning& pre, const Path& path, const Tensor& x,
                         const std::vector<double>& t, const Condition& c);

/// A shared_ptr that does not own `object`: the losses build NetworkDenoisers (which hold
/// shared_ptrs) over the network and path the training loop lends them for one call.
template <class T>
std::shared_ptr<T> borrowed(T& object) {
  return std::shared_ptr<T>(&object, [](T*) {});
}

/// d(x, y) per sample (CM paper, section 3; iCT section 3.3): the squared L2 distance
/// |x - y|^2, or the pseudo-Huber distance sqrt(|x - y|^2 + c^2) - c, |.| over the whole sample.
enum class Distance { l2, pseudo_huber };
Distance parse_distance(const std::string& name);
Var distance_per_sample(const Var& x, const Var& y, Distance d, double huber_c);

}  // namespace diffusion::consistency
