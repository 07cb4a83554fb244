#pragma once
// The exact denoiser of a Gaussian mixture, for oracle tests of samplers and likelihoods: no
// training, so a sampler that is wrong cannot hide behind a network's error.
//
// Data x0 ~ sum_k w_k N(mu_k, diag(s_k^2)). On a path x_t = alpha x0 + sigma z the marginal is
// the mixture of N(alpha mu_k, diag(v_k)), v_k = alpha^2 s_k^2 + sigma^2, so its score is
//   score(x) = sum_k r_k(x) m_k(x),   m_k = -(x - alpha mu_k) / v_k,
// with r_k the posterior responsibilities; eps_hat = -sigma score and (Tweedie)
// x0_hat = (x + sigma^2 score) / alpha. predict_var records the exact Jacobian-vector product
// (the score's Jacobian is the symmetric sum_k r_k (diag(-1/v_k) + m_k m_k^T) - score score^T),
// so likelihood tests see exact divergences.
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/model/denoiser.hpp>
#include <diffusion/tensor/random.hpp>

namespace diffusion::testing {

struct MixtureComponent {
  double weight;
  std::vector<double> mean;  ///< D values
  std::vector<double> std;   ///< D values (diagonal covariance)
};

class GaussianMixture {
 public:
  explicit GaussianMixture(std::vector<MixtureComponent> components) : comps_(std::move(components)) {
    double total = 0;
    for (const auto& c : comps_) total += c.weight;
    for (auto& c : comps_) c.weight /= total;
  }
  std::size_t dim() const { return comps_.front().mean.size(); }
  const std::vector<MixtureComponent>& components() const { return comps_; }

  /// n draws of x0 (N, D), and each draw's component in `labels` when given.
  Tensor sample(std::size_t n, Rng& rng, std::vector<std::size_t>* labels = nullptr) const {
    const std::size_t d = dim();
    Tensor x = Tensor::from_shape({n, d});
    if (labels) labels->assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double u = rng.uniform_double();
      std::size_t k = 0;
      for (double acc = comps_[0].weight; k + 1 < comps_.size() && u >= acc; acc += comps_[++k].weight) {}
      if (labels) (*labels)[i] = k;
      for (std::size_t j = 0; j < d; ++j)
        x.data()[i * d + j] = float(comps_[k].mean[j] + comps_[k].std[j] * rng.normal());
    }
    return x;
  }

  /// log density of the noised marginal at scale (alpha, sigma) at the point x (D values).
  double log_density(const float* x, double alpha, double sigma) const {
    std::vector<double> lp(comps_.size());
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < comps_.size(); ++k) {
      lp[k] = std::log(comps_[k].weight);
      for (std::size_t j = 0; j < dim(); ++j) {
        const double v = variance(k, j, alpha, sigma), r = x[j] - alpha * comps_[k].mean[j];
        lp[k] += -0.5 * std::log(2 * M_PI * v) - 0.5 * r * r / v;
      }
      top = std::max(top, lp[k]);
    }
    double s = 0;
    for (const double l : lp) s += std::exp(l - top);
    return top + std::log(s);
  }
  /// log density of the data (alpha = 1, sigma = 0).
  double log_density(const float* x) const { return log_density(x, 1.0, 0.0); }

  /// Per point: the responsibilities r_k and the per-component scores m_k (K x D), for the score.
  void responsibilities(const float* x, double alpha, double sigma, std::vector<double>& r,
                        std::vector<double>& m) const {
    const std::size_t kk = comps_.size(), d = dim();
    r.assign(kk, 0.0), m.assign(kk * d, 0.0);
    double top = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < kk; ++k) {
      r[k] = std::log(comps_[k].weight);
      for (std::size_t j = 0; j < d; ++j) {
        const double v = variance(k, j, alpha, sigma), res = x[j] - alpha * comps_[k].mean[j];
        r[k] += -0.5 * std::log(v) - 0.5 * res * res / v;
        m[k * d + j] = -res / v;
      }
      top = std::max(top, r[k]);
    }
    double s = 0;
    for (double& l : r) s += (l = std::exp(l - top));
    for (double& l : r) l /= s;
  }

  double variance(std::size_t k, std::size_t j, double alpha, double sigma) const {
    const double sd = comps_[k].std[j];
    return alpha * alpha * sd * sd + sigma * sigma;
  }

 private:
  std::vector<MixtureComponent> comps_;
};

/// The mixture's exact denoiser on a path.
class MixtureOracleDenoiser : public Denoiser {
 public:
  MixtureOracleDenoiser(GaussianMixture mixture, std::shared_ptr<const Path> path)
      : mix_(std::move(mixture)), path_(std::move(path)) {}
  const Path& path() const override { return *path_; }
  const GaussianMixture& mixture() const { return mix_; }

  void predict(const Tensor& x, const Times& t, const Condition&, Prediction& out) const override {
    const std::size_t n = x.shape()[0], d = mix_.dim();
    out.x0 = Tensor::from_shape(shape_of(x));
    out.eps = Tensor::from_shape(shape_of(x));
    std::vector<double> r, m;
    for (std::size_t i = 0; i < n; ++i) {
      const double a = path_->alpha(t[i]), s = path_->sigma(t[i]);
      mix_.responsibilities(x.data() + i * d, a, s, r, m);
      for (std::size_t j = 0; j < d; ++j) {
        double score = 0;
        for (std::size_t k = 0; k < r.size(); ++k) score += r[k] * m[k * d + j];
        out.eps.data()[i * d + j] = float(-s * score);
        out.x0.data()[i * d + j] = float((x.data()[i * d + j] + s * s * score) / a);
      }
    }
  }

  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override {
    Prediction p;
    predict(x.value(), t, c, p);
    const Tensor xv = x.value();
    const Times times = t;
    // J^T g for eps = -sigma score and x0 = (x + sigma^2 score) / alpha, J_score symmetric.
    auto jvp = [this, xv, times](Node& self, double (*coef_x)(double, double), double (*coef_s)(double, double)) {
      Node* nx = grad_input(self, 0);
      if (!nx) return;
      const std::size_t n = xv.shape()[0], d = mix_.dim();
      Tensor g = Tensor::from_shape(shape_of(xv));
      std::vector<double> r, m, score(d), jg(d);
      for (std::size_t i = 0; i < n; ++i) {
        const double a = path_->alpha(times[i]), s = path_->sigma(times[i]);
        mix_.responsibilities(xv.data() + i * d, a, s, r, m);
        const float* gi = self.grad.data() + i * d;
        std::fill(score.begin(), score.end(), 0.0);
        for (std::size_t k = 0; k < r.size(); ++k)
          for (std::size_t j = 0; j < d; ++j) score[j] += r[k] * m[k * d + j];
        double sg = 0;
        for (std::size_t j = 0; j < d; ++j) sg += score[j] * gi[j];
        for (std::size_t j = 0; j < d; ++j) jg[j] = -score[j] * sg;
        for (std::size_t k = 0; k < r.size(); ++k) {
          double mg = 0;
          for (std::size_t j = 0; j < d; ++j) mg += m[k * d + j] * gi[j];
          for (std::size_t j = 0; j < d; ++j) jg[j] += r[k] * (m[k * d + j] * mg - gi[j] / mix_.variance(k, j, a, s));
        }
        for (std::size_t j = 0; j < d; ++j) g.data()[i * d + j] = float(coef_x(a, s) * gi[j] + coef_s(a, s) * jg[j]);
      }
      give_grad(*nx, std::move(g));
    };
    Var x0 = make_result(std::move(p.x0), "oracle_x0", {x}, [jvp](Node& self) {
      jvp(self, [](double a, double) { return 1.0 / a; }, [](double a, double s) { return s * s / a; });
    });
    Var eps = make_result(std::move(p.eps), "oracle_eps", {x}, [jvp](Node& self) {
      jvp(self, [](double, double) { return 0.0; }, [](double, double s) { return -s; });
    });
    return {x0, eps};
  }
  using Denoiser::predict;

 private:
  GaussianMixture mix_;
  std::shared_ptr<const Path> path_;
};

/// Each sample of x (N, 2) assigned to its nearest component mean: each group's fraction, count,
/// mean and (unbiased) variance per coordinate.
struct NearestGroups {
  std::vector<double> fraction, mean, var;  ///< K; K x 2; K x 2
  std::vector<std::size_t> count;

  NearestGroups(const Tensor& x, const GaussianMixture& mix) {
    const auto& comps = mix.components();
    const std::size_t n = x.shape()[0], kk = comps.size();
    fraction.assign(kk, 0.0), mean.assign(kk * 2, 0.0), var.assign(kk * 2, 0.0), count.assign(kk, 0);
    std::vector<std::size_t> group(n);
    for (std::size_t i = 0; i < n; ++i) {
      double best_d = std::numeric_limits<double>::infinity();
      for (std::size_t k = 0; k < kk; ++k) {
        const double dx = x(i, 0) - comps[k].mean[0], dy = x(i, 1) - comps[k].mean[1], d = dx * dx + dy * dy;
        if (d < best_d) best_d = d, group[i] = k;
      }
      ++count[group[i]];
      for (std::size_t j = 0; j < 2; ++j) mean[group[i] * 2 + j] += x(i, j);
    }
    for (std::size_t k = 0; k < kk; ++k) {
      fraction[k] = double(count[k]) / double(n);
      for (std::size_t j = 0; j < 2; ++j) mean[k * 2 + j] /= double(count[k]);
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < 2; ++j) {
        const double r = x(i, j) - mean[group[i] * 2 + j];
        var[group[i] * 2 + j] += r * r / double(count[group[i]] - 1);
      }
  }
};

/// Samples x (N, 2) of a well-separated mixture: the nearest-mean groups' fractions match the
/// weights (binomial SE sqrt(w (1 - w) / n)) and their means the components' means (SE
/// std_k / sqrt(n_k)), within 4 standard errors; with `variances`, each group's variance too
/// (SE std_k^2 sqrt(2 / (n_k - 1))).
inline void require_mixture_recovered(const Tensor& x, const GaussianMixture& mix, bool variances = false) {
  const auto& comps = mix.components();
  const std::size_t n = x.shape()[0];
  const NearestGroups g(x, mix);
  for (std::size_t k = 0; k < comps.size(); ++k) {
    const double w = comps[k].weight;
    CAPTURE(k, g.fraction[k], w);
    REQUIRE(std::abs(g.fraction[k] - w) <= 4 * std::sqrt(w * (1 - w) / double(n)));
    const double nk = double(g.count[k]);
    for (std::size_t j = 0; j < 2; ++j) {
      const double sd = comps[k].std[j];
      CAPTURE(j, g.mean[k * 2 + j], comps[k].mean[j], g.var[k * 2 + j]);
      REQUIRE(std::abs(g.mean[k * 2 + j] - comps[k].mean[j]) <= 4 * sd / std::sqrt(nk));
      if (variances) REQUIRE(std::abs(g.var[k * 2 + j] - sd * sd) <= 4 * sd * sd * std::sqrt(2.0 / (nk - 1)));
    }
  }
}

}  // namespace diffusion::testing
