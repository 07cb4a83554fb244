// Time grids (time_grid.hpp, time_grids.cpp): every built-in grid on the DDPM path (whole
// steps) and on a continuous test path (no rounding), against its formula; the rules every
// grid obeys; and a grid registered once, in this file, serving both DDPM samplers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>
#include <diffusion/model/predictions.hpp>

#include "core/analytic_paths.hpp"

using namespace diffusion;
using namespace diffusion::testing;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

std::shared_ptr<Path> ddpm() {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so");
  return registries().paths.create(Config::load_string("{type: ddpm, timesteps: 1000}").root(), BuildContext{});
}

std::shared_ptr<TimeGrid> grid(const std::string& yaml) {
  return registries().time_grids.create(Config::load_string(yaml).root(), BuildContext{});
}

const std::string kPiecewise = "{type: piecewise, times: [999, 500, 0], shares: [1, 3]}";

/// u_i = i / (steps - 1), 0 for one step.
double fraction(std::size_t i, std::size_t steps) { return steps == 1 ? 0.0 : double(i) / double(steps - 1); }

/// The rule of TimeGrid::times for a discrete path, written out: where rounding repeats a time,
/// the earlier one moves up to one step above the later. (For a raw grid with t_i <= t_max - i,
/// as the quadratic one, keeping room for the later steps first changes nothing.)
std::vector<double> nudged(std::vector<double> g) {
  for (std::size_t i = g.size() - 1; i-- > 0;) g[i] = std::max(g[i], g[i + 1] + 1);
  return g;
}

void require_whole_decreasing_in_range(const Path& p, const std::vector<double>& g, std::size_t steps) {
  REQUIRE(g.size() == steps);
  for (std::size_t i = 0; i < steps; ++i) {
    CAPTURE(i, g[i]);
    if (p.num_steps()) REQUIRE(g[i] == std::round(g[i]));
    REQUIRE(g[i] >= p.t_min());
    REQUIRE(g[i] <= p.t_max());
    if (i > 0) REQUIRE(g[i] < g[i - 1]);
  }
}

}  // namespace

TEST_CASE("every built-in grid on the DDPM path: whole steps, strictly decreasing, from t_max", "[time_grid][ddpm]") {
  const auto p = ddpm();
  const std::string type =
      GENERATE(as<std::string>{}, "type: linear", "type: quadratic", "type: log_snr", "type: karras", kPiecewise);
  const std::size_t steps = GENERATE(as<std::size_t>{}, 1, 2, 3, 10, 50, 100, 250, 500, 999, 1000);
  CAPTURE(type, steps);
  const std::vector<double> g = grid(type)->times(*p, steps);
  require_whole_decreasing_in_range(*p, g, steps);
  REQUIRE(g.front() == 999);
  if (steps > 1) REQUIRE(g.back() == 0);
  // 1000 strictly decreasing whole steps in [0, 999] are every step.
  if (steps == 1000)
    for (std::size_t i = 0; i < steps; ++i) REQUIRE(g[i] == double(999 - i));
}

TEST_CASE("linear grid on the DDPM path is floor(linspace(999, 0, steps))", "[time_grid][ddpm]") {
  // linspace(999, 0, S)[i] = 999 (S - 1 - i) / (S - 1); its floor in exact integer arithmetic.
  // Where that quotient is a whole number (e.g. S = 38, i = 3: 999 - 3 * 27 = 918) the grid must
  // have that step, not the one below it, which a floor of a rounded product can give.
  const auto p = ddpm();
  const auto lin = grid("type: linear");
  std::size_t checked = 0;
  std::vector<std::string> wrong;
  for (std::size_t steps = 1; steps <= 1000; ++steps) {
    const std::vector<double> g = lin->times(*p, steps);
    REQUIRE(g.size() == steps);
    for (std::size_t i = 0; i < steps; ++i, ++checked) {
      const std::size_t exact = steps == 1 ? 999 : 999 * (steps - 1 - i) / (steps - 1);
      if (g[i] != double(exact))
        wrong.push_back("steps " + std::to_string(steps) + ", i " + std::to_string(i) + ": " +
                        std::to_string(int(g[i])) + " for " + std::to_string(exact));
    }
  }
  std::string first;
  for (std::size_t k = 0; k < std::min<std::size_t>(wrong.size(), 8); ++k) first += wrong[k] + "\n";
  INFO(wrong.size() << " of " << checked << " times differ from floor(linspace), e.g.\n" << first);
  CHECK(wrong.empty());
}

TEST_CASE("linear and quadratic grids on a continuous path end exactly at t_min and t_max", "[time_grid]") {
  // On [0.002, 80] with 200 steps, t_max - 1 * span rounds to 0.0019999999999953, below t_min.
  const VeLinear path;
  for (const std::size_t steps : {2, 3, 7, 200, 1000}) {
    CAPTURE(steps);
    const std::vector<double> g = make_linear_grid()->times(path, steps);
    REQUIRE(g.size() == steps);
    CHECK(g.front() == path.t_max());
    CHECK(g.back() == path.t_min());
    const std::vector<double> q = make_quadratic_grid()->times(path, steps);
    CHECK(q.front() == path.t_max());
    CHECK(q.back() == path.t_min());
    for (std::size_t i = 1; i < steps; ++i)
      CHECK_THAT(g[i - 1] - g[i], WithinRel((path.t_max() - path.t_min()) / double(steps - 1), 1e-9));
  }
}

TEST_CASE("quadratic grid: t_min + (t_max - t_min)(1 - u)^2, rounded on DDPM", "[time_grid][ddpm]") {
  const auto p = ddpm();
  const auto q = grid("type: quadratic");
  for (const std::size_t steps : {2, 5, 10, 30, 45, 50, 100, 200, 500}) {
    CAPTURE(steps);
    std::vector<double> raw(steps);
    for (std::size_t i = 0; i < steps; ++i) raw[i] = std::round(999 * std::pow(1 - fraction(i, steps), 2));
    const std::vector<double> g = q->times(*p, steps);
    REQUIRE(g == nudged(raw));
    // Up to 45 steps no two times round alike (999 / 44^2 > 1/2): the formula itself.
    if (steps <= 45) REQUIRE(g == raw);
  }
  // Continuous: the formula exactly, no rounding.
  const CosineVp c;
  const double span = c.t_max() - c.t_min();
  const std::vector<double> g = q->times(c, 7);
  for (std::size_t i = 0; i < 7; ++i)
    REQUIRE_THAT(g[i], WithinAbs(c.t_min() + span * std::pow(1 - fraction(i, 7), 2), 1e-15));
}

TEST_CASE("log_snr grid: evenly spaced in log SNR", "[time_grid][ddpm]") {
  const auto lsnr = grid("type: log_snr");
  SECTION("continuous path: exactly") {
    const CosineVp c;
    const double hi = c.log_snr(c.t_max()), lo = c.log_snr(c.t_min());
    for (const std::size_t steps : {1, 2, 6, 25}) {
      const std::vector<double> g = lsnr->times(c, steps);
      require_whole_decreasing_in_range(c, g, steps);
      for (std::size_t i = 0; i < steps; ++i) {
        CAPTURE(steps, i, g[i]);
        REQUIRE_THAT(c.log_snr(g[i]), WithinAbs(hi + fraction(i, steps) * (lo - hi), 1e-9));
      }
      // Some times are not whole numbers of anything: no rounding on a continuous path.
      if (steps > 2) REQUIRE(g[1] != std::round(g[1]));
    }
  }
  SECTION("DDPM path: to within the rounding to whole steps") {
    // The rounded time t_i is within half a step of the exact one, i.e. its target log SNR lies
    // between the log SNRs half a step either side (log SNR decreases in t).
    const auto p = ddpm();
    const double hi = p->log_snr(p->t_max()), lo = p->log_snr(p->t_min());
    for (const std::size_t steps : {2, 5, 10, 20, 25}) {
      const std::vector<double> g = lsnr->times(*p, steps);
      require_whole_decreasing_in_range(*p, g, steps);
      for (std::size_t i = 0; i < steps; ++i) {
        const double target = hi + fraction(i, steps) * (lo - hi);
        const double above = p->log_snr(std::max(p->t_min(), g[i] - 0.5)), below = p->log_snr(std::min(p->t_max(), g[i] + 0.5));
        CAPTURE(steps, i, g[i], target, above, below);
        REQUIRE(target <= above + 1e-12);
        REQUIRE(target >= below - 1e-12);
      }
    }
  }
}

namespace {

/// Karras et al. 2022, eq. 5: (s_max^(1/rho) + u (s_min^(1/rho) - s_max^(1/rho)))^rho.
double karras_sigma(double s_min, double s_max, double rho, double u) {
  return std::pow(std::pow(s_max, 1 / rho) + u * (std::pow(s_min, 1 / rho) - std::pow(s_max, 1 / rho)), rho);
}

}  // namespace

TEST_CASE("karras grid: sigma / alpha follows eq. 5 of Karras et al. 2022", "[time_grid][ddpm]") {
  SECTION("continuous path: exactly, rho = 7 by default, the path's own ends") {
    const CosineVp c;
    const auto ratio = [&](double t) { return c.sigma(t) / c.alpha(t); };
    const double s_min = ratio(c.t_min()), s_max = ratio(c.t_max());
    for (const std::size_t steps : {2, 5, 18, 40}) {
      const std::vector<double> g = grid("type: karras")->times(c, steps);
      require_whole_decreasing_in_range(c, g, steps);
      for (std::size_t i = 0; i < steps; ++i) {
        CAPTURE(steps, i, g[i]);
        REQUIRE_THAT(ratio(g[i]), WithinRel(karras_sigma(s_min, s_max, 7.0, fraction(i, steps)), 1e-9));
      }
    }
    // Explicit sigma_min, sigma_max and rho.
    const std::vector<double> g = grid("{type: karras, sigma_min: 0.05, sigma_max: 20, rho: 3}")->times(c, 6);
    for (std::size_t i = 0; i < 6; ++i) {
      CAPTURE(i, g[i]);
      REQUIRE_THAT(ratio(g[i]), WithinRel(karras_sigma(0.05, 20.0, 3.0, fraction(i, 6)), 1e-9));
    }
    REQUIRE_THAT(g.front(), WithinAbs(2 / kPi * std::atan(20.0), 1e-12));
  }
  SECTION("DDPM path: up to the rounding to whole steps") {
    // sigma / alpha increases in t: each eq. 5 value lies between the ratios half a step either
    // side of its whole step.
    const auto p = ddpm();
    const auto ratio = [&](double t) { return p->sigma(t) / p->alpha(t); };
    const double s_min = ratio(p->t_min()), s_max = ratio(p->t_max());
    for (const std::size_t steps : {2, 5, 10, 18}) {
      const std::vector<double> g = grid("type: karras")->times(*p, steps);
      require_whole_decreasing_in_range(*p, g, steps);
      for (std::size_t i = 0; i < steps; ++i) {
        const double target = karras_sigma(s_min, s_max, 7.0, fraction(i, steps));
        CAPTURE(steps, i, g[i], target);
        REQUIRE(target >= ratio(std::max(p->t_min(), g[i] - 0.5)) * (1 - 1e-12));
        REQUIRE(target <= ratio(std::min(p->t_max(), g[i] + 0.5)) * (1 + 1e-12));
      }
    }
  }
  REQUIRE_THROWS_WITH(grid("{type: karras, sigma_min: 5, sigma_max: 1}"), Catch::Contains("sigma_min < sigma_max"));
  REQUIRE_THROWS_WITH(grid("{type: karras, rho: 0}"), Catch::Contains("rho"));
}

TEST_CASE("piecewise grid: each share of the steps evenly over its interval", "[time_grid][ddpm]") {
  SECTION("continuous path: exact") {
    // Shares 1 : 2 : 1 of 8 intervals: the knots at steps 0, 2, 6 and 8.
    const CosineVp c;
    const std::vector<double> g =
        grid("{type: piecewise, times: [0.9, 0.5, 0.1, 0.01], shares: [1, 2, 1]}")->times(c, 9);
    const std::vector<double> expected = {0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.055, 0.01};
    for (std::size_t i = 0; i < 9; ++i) {
      CAPTURE(i);
      REQUIRE_THAT(g[i], WithinAbs(expected[i], 1e-14));
    }
  }
  SECTION("DDPM path: rounded to whole steps") {
    // Shares 1 : 3 of 8 intervals: steps 0..2 from 999 to 500, then 2..8 from 500 to 0.
    const auto p = ddpm();
    const std::vector<double> g = grid(kPiecewise)->times(*p, 9);
    std::vector<double> expected(9);
    for (std::size_t i = 0; i < 9; ++i) {
      const double u = i / 8.0;
      expected[i] = std::round(u <= 0.25 ? 999 - u / 0.25 * 499 : 500 - (u - 0.25) / 0.75 * 500);
    }
    REQUIRE(g == expected);
    REQUIRE(g[2] == 500);
  }
}

TEST_CASE("list grid: exactly its times, which must lie on the path", "[time_grid][ddpm]") {
  const auto p = ddpm();
  const auto l = grid("{type: list, times: [999, 640, 17, 3]}");
  REQUIRE(l->fixed_steps() == 4);
  REQUIRE(l->times(*p, 4) == std::vector<double>{999, 640, 17, 3});
  REQUIRE_THROWS_WITH(l->times(*p, 5), Catch::Contains("lists 4 times but 5 steps"));
  // Outside the path's times: the error names the time.
  REQUIRE_THROWS_WITH(make_list_grid({1200, 5})->times(*p, 2),
                      Catch::Contains("time 1200 lies outside the path's times [0, 999]"));
  REQUIRE_THROWS_WITH(make_list_grid({500, -2})->times(*p, 2), Catch::Contains("time -2 lies outside"));
  const CosineVp c;
  REQUIRE(make_list_grid({0.9, 0.25, 0.0625})->times(c, 3) == std::vector<double>{0.9, 0.25, 0.0625});
  REQUIRE_THROWS_WITH(make_list_grid({1.5, 0.5})->times(c, 2), Catch::Contains("time 1.5 lies outside"));
  // Not decreasing: refused when read, naming the entry.
  REQUIRE_THROWS_WITH(grid("{type: list, times: [5, 9]}"), Catch::Contains("entry 2 (9) follows 5"));
  REQUIRE_THROWS_WITH(make_list_grid({0.5, 0.5})->times(c, 2), Catch::Contains("entry 2 (0.5) follows 0.5"));
}

TEST_CASE("grids refuse more steps than a discrete path has, and zero steps", "[time_grid][ddpm]") {
  const auto p = ddpm();
  for (const std::string type : {"linear", "quadratic", "log_snr", "karras"}) {
    CAPTURE(type);
    REQUIRE_THROWS_WITH(grid("type: " + type)->times(*p, 1001), Catch::Contains("1001 steps, but the path has only 1000"));
    REQUIRE_THROWS_WITH(grid("type: " + type)->times(*p, 0), Catch::Contains("at least one step"));
    // A continuous path has no such limit.
    REQUIRE(grid("type: " + type)->times(CosineVp(), 1001).size() == 1001);
  }
}

namespace {

/// Times 900, 800, ... (100 apart, from 900 down): a grid written in this test.
class EveryHundredth : public TimeGrid {
 protected:
  std::vector<double> make(const Path&, std::size_t steps) const override {
    std::vector<double> g(steps);
    for (std::size_t i = 0; i < steps; ++i) g[i] = 900.0 - 100.0 * double(i);
    return g;
  }
};

void register_every_hundredth() {
  // Test cases may run in any order and more than once per process: register once.
  if (!registries().time_grids.contains("every_hundredth"))
    registries().time_grids.add(
        "every_hundredth",
        [](const ConfigNode&, const BuildContext&) { return std::make_shared<EveryHundredth>(); },
        "tests/plugins/test_time_grids.cpp");
}

/// Predicts eps = 0 and records the network time of each call (DDPM's is the step index).
class TimeRecorder : public Network {
 public:
  std::vector<float> times;
  Var forward(const Var& x, const Tensor& t, const Condition&) override {
    for (std::size_t i = 1; i < t.size(); ++i) REQUIRE(t(i) == t(0));
    times.push_back(t(0));
    return Var(zeros(shape_of(x.value())));
  }
};

}  // namespace

TEST_CASE("a time grid registered once serves both samplers", "[time_grid][sampler][ddpm][ddim]") {
  const auto p = ddpm();
  register_every_hundredth();
  REQUIRE(registries().time_grids.contains("every_hundredth"));
  const std::vector<float> expected = {900, 800, 700, 600, 500, 400, 300, 200, 100, 0};
  REQUIRE(grid("type: every_hundredth")->times(*p, 10) == std::vector<double>(expected.begin(), expected.end()));
  for (const std::string type : {"ddim", "ancestral"}) {
    CAPTURE(type);
    const auto sampler = registries().samplers.create(
        Config::load_string("{type: " + type + ", steps: 10, spacing: every_hundredth}").root(), BuildContext{});
    REQUIRE_NOTHROW(sampler->check(*p, standard_normal_source()));
    const auto net = std::make_shared<TimeRecorder>();
    const CountingDenoiser model(std::make_shared<NetworkDenoiser>(net, p, make_prediction("eps")));
    SampleRequest req;
    req.shape = {4, 2};
    Rng rng(1);
    const SampleOutput out = sampler->sample(model, req, rng);
    REQUIRE(shape_of(out.x) == Shape{4, 2});
    // Exactly those times, in that order, one evaluation each.
    REQUIRE(net->times == expected);
    REQUIRE(model.nfe() == 10);
  }
  // With fewer steps the same grid gives its first ones, and a step count it cannot honour on
  // this path is refused by the sampler's check (times below 0).
  const auto ddim5 = registries().samplers.create(
      Config::load_string("{type: ddim, steps: 5, spacing: every_hundredth}").root(), BuildContext{});
  const auto net = std::make_shared<TimeRecorder>();
  const NetworkDenoiser model(net, p, make_prediction("eps"));
  SampleRequest req;
  req.shape = {2, 2};
  Rng rng(2);
  ddim5->sample(model, req, rng);
  REQUIRE(net->times == std::vector<float>{900, 800, 700, 600, 500});
  const auto ddim11 = registries().samplers.create(
      Config::load_string("{type: ddim, steps: 11, spacing: every_hundredth}").root(), BuildContext{});
  REQUIRE_THROWS_WITH(ddim11->check(*p, standard_normal_source()), Catch::Contains("time -100 lies outside"));
}
