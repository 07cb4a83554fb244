#pragma once
// Time grids: where a sampler evaluates the model (stable-diffusion.cpp's SigmaScheduler). An
// open registry (`time_grids`), so a grid written once serves every sampler:
//
//   linear     evenly spaced in t (DDIM's uniform skip; on a discrete path floor(linspace))
//   quadratic  t_min + (t_max - t_min)(1 - u)^2: dense near the data (DDIM, appendix D.2)
//   log_snr    evenly spaced in log SNR
//   karras     Karras et al. 2022, eq. 5: sigma_i = (s_max^(1/rho) + u_i (s_min^(1/rho) -
//              s_max^(1/rho)))^rho in the noise-to-signal ratio s = sigma / alpha (rho = 7)
//   piecewise  {times: [t_0, ..., t_K], shares: [w_1, ..., w_K]}: the fraction w_k / sum(w) of
//              the steps evenly from t_(k-1) to t_k
//   list       {times: [...]}: the times themselves
//
// A grid gives `steps` strictly decreasing times from t_max towards t_min; the sampler's last
// step goes from the last of them to the clean data.
#include <cstddef>
#include <memory>
#include <vector>

#include "diffusion/model/path.hpp"

namespace diffusion {

class TimeGrid {
 public:
  virtual ~TimeGrid() = default;
  /// `steps` strictly decreasing times in [t_min, t_max]. On a discrete path they are whole
  /// steps, nudged apart where rounding would repeat one (the one place that rule lives), and
  /// steps may not exceed the path's. Throws Error naming the offending time or count.
  std::vector<double> times(const Path& path, std::size_t steps) const;
  /// A grid that fixes its own number of steps (a list), else 0.
  virtual std::size_t fixed_steps() const { return 0; }

 protected:
  /// The grid's own times (on a discrete path, already whole steps by the grid's rounding rule).
  virtual std::vector<double> make(const Path& path, std::size_t steps) const = 0;
};

// The core's grids (registered under the names above); each constructor checks its arguments.
std::shared_ptr<TimeGrid> make_linear_grid();
std::shared_ptr<TimeGrid> make_quadratic_grid();
std::shared_ptr<TimeGrid> make_log_snr_grid();
/// sigma_min, sigma_max: 0 takes the path's own sigma / alpha at t_min, t_max.
std::shared_ptr<TimeGrid> make_karras_grid(double rho = 7.0, double sigma_min = 0.0, double sigma_max = 0.0);
std::shared_ptr<TimeGrid> make_piecewise_grid(std::vector<double> times, std::vector<double> shares);
/// Exactly these times (strictly decreasing; checked against a path by times()).
std::shared_ptr<TimeGrid> make_list_grid(std::vector<double> times);

}  // namespace diffusion
