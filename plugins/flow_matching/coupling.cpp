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

std::vector<std::size_t> ot_permutation(const Tensor& x0, const Tensor& z, std::size_t begin, std::size_t m) {
  const std::size_t n = x0.shape()[0], per = n ? x0.size() / n : 0;
  std::vector<double> a(m * per), b(m * per);
  std::copy(x0.data() + begin * per, x0.data() + (begin + m) * per, a.begin());
  std::copy(z.data() + begin * per, z.data() + (begin + m) * per, b.begin());
  return solve_assignment_sqeuclidean(a.data(), b.data(), m, per).col_of_row;
}

void couple(const Tensor& x0, Tensor& z, const Coupling& coupling) {
  if (shape_of(x0) != shape_of(z))
    throw Error("coupling: data " + shape_str(x0) + " and source draws " + shape_str(z) + " differ in shape");
  if (coupling.type == CouplingType::independent) return;
  const std::size_t n = x0.shape()[0], per = n ? x0.size() / n : 0;
  const std::size_t block = coupling.ot_batch == 0 ? n : std::min(coupling.ot_batch, n);
  const Tensor source = z;
  for (std::size_t begin = 0; begin < n; begin += block) {
    const std::size_t m = std::min(block, n - begin);
    const std::vector<std::size_t> p = ot_permutation(x0, source, begin, m);
    for (std::size_t i = 0; i < m; ++i)
      std::copy(source.data() + (begin + p[i]) * per, source.data() + (begin + p[i] + 1) * per,
                z.data() + (begin + i) * per);
  }
}

}  // namespace diffusion::flow_matching
