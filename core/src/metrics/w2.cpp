#include <cmath>
#include <vector>

#include "diffusion/metrics/assignment.hpp"
#include "diffusion/metrics/metrics.hpp"

namespace diffusion {

double w2_exact(const Tensor& x, const Tensor& y) {
  const std::size_t dim = detail::point_dim("w2_exact", x, y);
  const std::size_t n = x.shape()[0];
  if (y.shape()[0] != n)
    throw Error("w2_exact: needs equal sample sizes (x " + shape_str(x) + ", y " + shape_str(y) +
                "); use sliced_w2 for unequal sizes");
  const std::vector<double> xd = detail::to_double(x), yd = detail::to_double(y);
  const Assignment a = solve_assignment_sqeuclidean(xd.data(), yd.data(), n, dim);
  return std::sqrt(a.cost / static_cast<double>(n));
}

}  // namespace diffusion
