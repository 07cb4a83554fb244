#pragma once
// The regression every conditional flow matching loss ends with (Lipman et al. 2023, eq. 9;
// Tong et al. 2024, eq. 9; Liu et al. 2023, eq. 1): for pairs (x0, z) at times t,
//
//   x_t = alpha(t) x0 + sigma(t) z,   u_t = alpha'(t) x0 + sigma'(t) z,
//   per-sample value || v_theta(x_t, t) - u_t ||^2 (summed over the sample's values),
//
// where v_theta is the network read through the `velocity` preconditioning (c_in = 1, F = v),
// so the ode sampler's field alpha' x0_hat + sigma' eps_hat is v_theta itself. On the linear path
// u_t = (1 - sigma_min) z - x0: the straight line's velocity in the toolkit's time (data at 0).
#include <diffusion/components.hpp>

namespace diffusion::flow_matching {

/// The velocity preconditioning every flow matching loss reads its network through.
std::shared_ptr<const Preconditioning> velocity_preconditioning();

/// Per-sample || F(x_t, c_noise(t)) - u_t ||^2 for x0, z (N, ...) paired row by row at times t (N).
LossValues cfm_regression(Network& net, const Path& path, const Tensor& x0, const Tensor& z, Tensor t,
                          const Condition& c);

/// How training times are drawn: the path's distribution (uniform on [0, 1]) iid, or VDM's
/// low-discrepancy batch of it (`t_sampling: iid | low_discrepancy`).
Tensor draw_times(const Path& path, std::size_t n, bool low_discrepancy, Rng& rng);

}  // namespace diffusion::flow_matching
