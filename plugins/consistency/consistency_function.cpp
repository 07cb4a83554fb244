#include "consistency_function.hpp"

#include <algorithm>
#include <cmath>

namespace diffusion::consistency {
namespace {

/// A per-row column (N, 1, ...) of rank `rank`, to broadcast against a batch.
Tensor column(const std::vector<double>& v, std::size_t rank) {
  Shape s(rank, 1);
  s[0] = v.size();
  Tensor c = Tensor::from_shape(s);
  for (std::size_t i = 0; i < v.size(); ++i) c.data()[i] = static_cast<float>(v[i]);
  return c;
}

}  // namespace

Var consistency_function(Network& net, const Preconditioning& pre, const Path& path, const Tensor& x,
                         const std::vector<double>& t, const Condition& c) {
  const std::size_t n = x.shape()[0], per = x.size() / std::max<std::size_t>(n, 1), rank = x.dimension();
  if (t.size() != n) throw Error("consistency function: " + std::to_string(t.size()) + " times for " + std::to_string(n) + " rows");
  std::vector<double> out(n);
  Tensor input = x, skipped = x, c_noise = Tensor::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) {
    const Scalings k = pre.scalings(path, t[i]);
    out[i] = k.c_out;
    c_noise(i) = static_cast<float>(k.c_noise);
    for (std::size_t j = i * per; j < (i + 1) * per; ++j) {
      input.data()[j] = static_cast<float>(k.c_in * x.data()[j]);
      skipped.data()[j] = static_cast<float>(k.c_skip * x.data()[j]);
    }
  }
  const Var f = net.forward(Var(std::move(input)), c_noise, c);
  if (f.size() != x.size())
    throw Error("consistency function: network output " + shape_str(f.value()) + " does not match its input " + shape_str(x));
  return Var(std::move(skipped)) + f * Var(column(out, rank));
}

Distance parse_distance(const std::string& name) {
  if (name == "l2") return Distance::l2;
  if (name == "pseudo_huber") return Distance::pseudo_huber;
  throw Error("unknown distance '" + name + "' (expected l2 or pseudo_huber)");
}

Var distance_per_sample(const Var& x, const Var& y, Distance d, double huber_c) {
  const long n = static_cast<long>(x.value().shape()[0]);
  const Var sq = sum(reshape(square(x - y), {n, -1}), {1});
  if (d == Distance::l2) return sq;
  const float c = static_cast<float>(huber_c);
  return sqrt(sq + Var(full({1}, c * c))) - Var(full({1}, c));
}

}  // namespace diffusion::consistency
