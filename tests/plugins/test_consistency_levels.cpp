// The noise levels of consistency models against the papers' formulas, written out again here:
//
// 1. Karras discretisation (CM paper, section 5): sigma_i = (smin^(1/rho) + i/(N-1)(smax^(1/rho) -
//    smin^(1/rho)))^rho, exactly smin and smax at the ends.
// 2. iCT curriculum (Song & Dhariwal 2023, eq. 10): N(k) = min(s0 2^floor(k/K'), s1) + 1,
//    K' = floor(K / (log2 floor(s1/s0) + 1)), for every k of two runs (one where s1/s0 is a
//    power of two, one where it is not).
// 3. iCT noise-level distribution: the consistency_training loss (loaded from the plugin) draws
//    the pair (sigma_i, sigma_{i+1}) with the log-normal mass Phi((ln sigma_{i+1} - P_mean)/P_std) -
//    Phi((ln sigma_i - P_mean)/P_std), normalised; the times it reports are the pair's upper
//    levels, and their counts over 100000 draws are each within 4.5 binomial standard errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <string>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "consistency/noise_levels.hpp"
#include "core/analytic_paths.hpp"

using namespace diffusion;
using namespace diffusion::consistency;

TEST_CASE("consistency: the Karras discretisation follows its formula with exact ends", "[consistency]") {
  const double smin = 0.002, smax = 80.0, rho = 7.0;
  for (const std::size_t n : {2u, 11u, 18u, 1281u}) {
    const std::vector<double> s = karras_levels(n, smin, smax, rho);
    REQUIRE(s.size() == n);
    REQUIRE(s.front() == smin);
    REQUIRE(s.back() == smax);
    for (std::size_t i = 1; i + 1 < n; ++i) {
      const double expected =
          std::pow(std::pow(smin, 1 / rho) + double(i) / double(n - 1) * (std::pow(smax, 1 / rho) - std::pow(smin, 1 / rho)), rho);
      REQUIRE(s[i] == Approx(expected).epsilon(1e-14));
      REQUIRE(s[i] > s[i - 1]);
    }
  }
  // N = 18 (CM's CIFAR-10 setting): level 9 is (0.002^(1/7) + (80^(1/7) - 0.002^(1/7)) 9/17)^7.
  REQUIRE(karras_level(9, 18, smin, smax, rho) == Approx(3.25682).epsilon(1e-5));
}

TEST_CASE("consistency: the iCT curriculum N(k) follows min(s0 2^floor(k/K') s1) + 1", "[consistency]") {
  // The paper's setting: s0 = 10, s1 = 1280, K = 400000: K' = 50000 and N doubles 7 times.
  REQUIRE(curriculum_stage_length(400000, 10, 1280) == 50000);
  REQUIRE(curriculum_levels(0, 400000, 10, 1280) == 11);
  REQUIRE(curriculum_levels(49999, 400000, 10, 1280) == 11);
  REQUIRE(curriculum_levels(50000, 400000, 10, 1280) == 21);
  REQUIRE(curriculum_levels(349999, 400000, 10, 1280) == 641);
  REQUIRE(curriculum_levels(350000, 400000, 10, 1280) == 1281);
  REQUIRE(curriculum_levels(399999, 400000, 10, 1280) == 1281);
  struct Case {
    std::int64_t total, s0, s1;
  };
  for (const Case& c : {Case{8000, 10, 1280}, Case{1000, 10, 1000}, Case{3000, 20, 150}}) {
    CAPTURE(c.total, c.s0, c.s1);
    const auto k_prime = static_cast<std::int64_t>(
        std::floor(double(c.total) / (std::log2(std::floor(double(c.s1) / double(c.s0))) + 1)));
    REQUIRE(curriculum_stage_length(c.total, c.s0, c.s1) == k_prime);
    for (std::int64_t k = 0; k < c.total; ++k) {
      const double formula = std::min(double(c.s0) * std::pow(2.0, std::floor(double(k) / double(k_prime))), double(c.s1)) + 1;
      REQUIRE(double(curriculum_levels(k, c.total, c.s0, c.s1)) == formula);
    }
  }
}

namespace {

/// F = 0: the loss's draws are what is checked, not its value.
struct ZeroNet : Network {
  Var forward(const Var& x, const Tensor&, const Condition&) override { return Var(zeros(shape_of(x.value()))); }
};

}  // namespace

TEST_CASE("consistency: iCT draws noise-level pairs with their log-normal mass", "[consistency]") {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_consistency.so");
  BuildContext bctx;
  bctx.data_shape = {2};
  const auto loss = registries().losses.create(
      Config::load_string("{type: consistency_training, s0: 10, s1: 40, p_mean: -1.1, p_std: 2.0}").root(), bctx);
  const testing::VeLinear path;
  ZeroNet net;
  TrainContext ctx;
  ctx.path = &path;
  ctx.total_steps = 3000;  // K' = floor(3000 / 3) = 1000
  for (const std::int64_t step : {0, 1500, 2999}) {
    ctx.step = step;
    const std::size_t n = step < 1000 ? 11 : step < 2000 ? 21 : 41;
    const std::vector<double> sigma = karras_levels(n, 0.002, 80.0, 7.0);
    // The log-normal mass of each pair, from the normal CDF.
    std::vector<double> p(n - 1);
    double total = 0;
    for (std::size_t i = 0; i + 1 < n; ++i) {
      const auto cdf = [](double s) { return 0.5 * std::erfc(-(std::log(s) + 1.1) / (2.0 * std::sqrt(2.0))); };
      total += p[i] = cdf(sigma[i + 1]) - cdf(sigma[i]);
    }
    std::map<float, std::size_t> level_of;
    for (std::size_t i = 1; i < n; ++i) level_of[static_cast<float>(sigma[i])] = i - 1;
    std::vector<std::size_t> counts(n - 1, 0);
    Rng rng(11 + step);
    const std::size_t batches = 10, batch = 10000;
    for (std::size_t b = 0; b < batches; ++b) {
      const LossValues v = loss->loss(net, zeros({batch, 2}), Condition(), ctx, rng);
      for (std::size_t r = 0; r < batch; ++r) {
        const auto it = level_of.find(v.times(r));
        REQUIRE(it != level_of.end());  // every time is the upper level of a pair of this N
        ++counts[it->second];
      }
    }
    const double draws = double(batches * batch);
    for (std::size_t i = 0; i + 1 < n; ++i) {
      const double q = p[i] / total, se = std::sqrt(draws * q * (1 - q)) + 1e-9;
      CAPTURE(step, i, counts[i], draws * q);
      REQUIRE(std::abs(double(counts[i]) - draws * q) <= 4.5 * se + 0.5);
    }
  }
}
