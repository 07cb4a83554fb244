#pragma once
// Euler-Maruyama for SDEs dy = f(t, y) dt + g(t) dW with a scalar (isotropic) diffusion g, the
// form of every diffusion SDE and its reverse. Each step draws fresh standard normals for the
// whole batch from the given stream.
#include <functional>
#include <vector>

#include "diffusion/integrate/ode.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

/// g(t) of dW.
using Diffusion = std::function<double(double t)>;

/// One step from t to t + h (h may be negative: time running backwards, with |h| the step's
/// variance): y <- y + f(t, y) h + g(t) sqrt(|h|) z. `drift` is scratch shaped like y; `noise`
/// receives z (so a caller may reuse or record it). Either is resized to y's shape if it has
/// another (an empty tensor is fine; reusing them across steps allocates nothing).
void euler_maruyama_step(const VectorField& f, const Diffusion& g, double t, double h, Tensor& y, Tensor& drift,
                         Tensor& noise, Rng& rng);

/// y from times[0] to times.back() with one Euler-Maruyama step per interval; y is overwritten.
/// The stats count evaluations of f and the steps. Throws Error when the grid is not strictly
/// monotone (check_time_grid) or the state becomes inf or NaN.
OdeStats integrate_euler_maruyama(const VectorField& f, const Diffusion& g, const std::vector<double>& times, Tensor& y,
                                  Rng& rng, const StepObserver& observe = {});

}  // namespace diffusion
