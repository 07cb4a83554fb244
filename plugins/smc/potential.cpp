// Reading a sampler's potential (one, or a product of several) and the helpers potentials share.
#include "potential.hpp"

#include <diffusion/plugin.hpp>

namespace diffusion::smc {
namespace {

/// prod_k G_k: log values add up. Differentiable when every factor is.
class PotentialProduct : public Potential {
 public:
  explicit PotentialProduct(std::vector<std::shared_ptr<Potential>> factors) : factors_(std::move(factors)) {}
  Var log_value(const PotentialPoint& at, const PotentialContext& ctx) const override {
    Var total = factors_.front()->log_value(at, ctx);
    for (std::size_t k = 1; k < factors_.size(); ++k) total = total + factors_[k]->log_value(at, ctx);
    return total;
  }
  bool differentiable() const override {
    for (const auto& f : factors_)
      if (!f->differentiable()) return false;
    return true;
  }
  std::vector<std::string> required_models() const override {
    std::vector<std::string> out;
    for (const auto& f : factors_)
      for (auto& m : f->required_models()) out.push_back(std::move(m));
    return out;
  }

 private:
  std::vector<std::shared_ptr<Potential>> factors_;
};

}  // namespace

std::shared_ptr<const Potential> read_potential(const ConfigNode& node, const BuildContext& ctx) {
  if (!node.is_sequence()) return registries().potentials.create(node, ctx);
  if (node.size() == 0) node.fail("a potential ({type: ...}) or a non-empty list of them");
  std::vector<std::shared_ptr<Potential>> factors;
  for (const ConfigNode& item : node.items()) factors.push_back(registries().potentials.create(item, ctx));
  if (factors.size() == 1) return factors.front();
  return std::make_shared<PotentialProduct>(std::move(factors));
}

std::vector<double> row_values(const Var& log_g) {
  const Tensor& v = log_g.value();
  return std::vector<double>(v.begin(), v.end());
}

Var flatten_rows(const Var& x) {
  if (x.dim() == 2) return x;
  return reshape(x, {static_cast<long>(x.shape()[0]), -1});
}

Var constant(const std::vector<double>& values, const Shape& shape) {
  Tensor t = Tensor::from_shape(shape);
  std::copy(values.begin(), values.end(), t.data());
  return Var(std::move(t));
}

void check_row_size(const Var& x, std::size_t d, const char* potential) {
  const std::size_t n = x.shape()[0], got = n == 0 ? 0 : x.size() / n;
  if (got != d)
    throw Error(std::string(potential) + ": its settings describe samples of " + std::to_string(d) +
                " values, but the sampler's samples have " + std::to_string(got) + " (shape " + shape_str(x.shape()) + ")");
}

}  // namespace diffusion::smc
