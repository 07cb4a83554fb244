// Independent and minibatch-OT couplings (Tong et al. 2024, Algorithm 2); see coupling.hpp.
#include "coupling.hpp"

#include <algorithm>
#include <vector>

#include <diffusion/metrics/assignment.hpp>

namespace diffusion::flow_matching {

CouplingType parse_coupling(const std::string& name) {
  if (name == "independent") return CouplingType::independent;
  if (name == "minibatch_ot") return CouplingType::minibatch_ot;
  throw Error("unknown coupling '" + name + "' (expected independent or minibatch_ot)");
}

void pair_by_optimal_transport(const Tensor& x0, Tensor& z) {
  if (shape_of(x0) != shape_of(z))
    throw Error("coupling: data " + shape_str(x0) + " and source draws " + shape_str(z) + " differ in shape");
  const std::size_t n = x0.shape()[0], per = n ? x0.size() / n : 0;
  const std::vector<double> a(x0.begin(), x0.end()), b(z.begin(), z.end());
  const std::vector<std::size_t> p = solve_assignment_sqeuclidean(a.data(), b.data(), n, per).col_of_row;
  const Tensor source = z;
  for (std::size_t i = 0; i < n; ++i)
    std::copy(source.data() + p[i] * per, source.data() + (p[i] + 1) * per, z.data() + i * per);
}

}  // namespace diffusion::flow_matching
