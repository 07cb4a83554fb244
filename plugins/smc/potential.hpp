#pragma once
// What the smc plugin's potentials share: reading a sampler's `potential:` and row helpers. The
// Potential interface is the core's (diffusion/model/potential.hpp), so other plugins can
// register potentials too.
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion {

namespace smc {

/// The potential under `key` of a sampler's node: one registered potential (`{type: ...}`), or
/// a list of them, whose log values add up (a product of potentials).
std::shared_ptr<const Potential> read_potential(const ConfigNode& node, const BuildContext& ctx);

/// Values per row of a (N) log-potential Var, as doubles.
std::vector<double> row_values(const Var& log_g);

/// The rows of x (N, sample...) as a matrix (N, D), D the values of one sample.
Var flatten_rows(const Var& x);

/// A constant (no gradient) Var of the given values and shape.
Var constant(const std::vector<double>& values, const Shape& shape);

/// Throws Error "<potential>: ... expects samples of D values, got ..." unless x has d values per row.
void check_row_size(const Var& x, std::size_t d, const char* potential);

}  // namespace smc
}  // namespace diffusion
