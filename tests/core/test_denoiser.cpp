// Denoisers (denoiser.hpp): predict_var agrees with predict and differentiates it (checked
// against finite differences of predict), CountingDenoiser counts evaluations, and
// ClassifierFreeGuidance is (1 + w) cond - w uncond from one inner evaluation of 2N rows, and
// ChunkedDenoiser gives one pass's predictions in pieces.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/model/denoiser.hpp"
#include "diffusion/nn/layers.hpp"
#include "diffusion/model/predictions.hpp"

#include "analytic_paths.hpp"

using namespace diffusion;
using namespace diffusion::testing;
using Catch::Matchers::WithinAbs;

namespace {

/// EDM's scalings (sigma_data = 0.5) in s = sigma / alpha: c_in != 1, so the denoiser scales
/// the network's input.
class EdmLike : public Preconditioning {
 public:
  std::string name() const override { return "edm_like"; }
  Scalings scalings(const Path& p, double t) const override {
    const double s = p.sigma(t) / p.alpha(t), r = s * s + 0.25;
    return {0.25 / r, s * 0.5 / std::sqrt(r), 1 / std::sqrt(r), std::log(s) / 4};
  }
};

/// A smooth MLP F(x, c_noise, label, null): input (x, c_noise / 4, label / 4, null flag),
/// tanh hidden layers. The label and mask are features, so guidance has a smooth effect too.
class MlpNet : public Network {
 public:
  MlpNet(std::size_t dim, std::uint64_t seed) : dim_(dim) {
    Rng rng(seed);
    mlp_ = register_module("mlp", std::make_shared<MLP>(std::vector<std::size_t>{dim + 3, 32, 32, dim},
                                                        Activation::tanh, rng));
  }
  bool class_conditional() const override { return true; }
  std::size_t calls = 0;
  Var forward(const Var& x, const Tensor& t, const Condition& c) override {
    ++calls;
    const std::size_t n = x.value().shape()[0];
    Tensor extra = Tensor::from_shape({n, 3});
    for (std::size_t i = 0; i < n; ++i) {
      extra(i, 0) = t(i) / 4;
      extra(i, 1) = c.has_labels() ? float(c.labels()[i]) / 4 : 0.0f;
      extra(i, 2) = c.is_null(i) ? 1.0f : 0.0f;
    }
    return mlp_->forward(concat({x, Var(extra)}, 1));
  }

 private:
  std::size_t dim_;
  std::shared_ptr<MLP> mlp_;
};

struct Setup {
  std::string name;
  std::shared_ptr<const Path> path;
  std::shared_ptr<const Preconditioning> pre;
  std::vector<double> times;  ///< one per row
};

std::vector<Setup> setups() {
  return {{"eps on cosine VP", std::make_shared<CosineVp>(), make_prediction("eps"), {0.1, 0.3, 0.3, 0.6, 0.8}},
          {"v on cosine VP", std::make_shared<CosineVp>(), make_prediction("v"), {0.2, 0.5, 0.5, 0.5, 0.9}},
          {"velocity on cosine VP", std::make_shared<CosineVp>(), make_prediction("velocity"), {0.05, 0.4, 0.7, 0.7, 0.95}},
          {"edm_like on VE", std::make_shared<VeLinear>(), std::make_shared<EdmLike>(), {0.05, 0.5, 2.0, 2.0, 10.0}}};
}

Tensor input_for(const Setup& s, std::uint64_t seed) {
  Rng rng(seed);
  Tensor x = rng.normal({s.times.size(), 2});
  // At the scale of x_t: sqrt(alpha^2 + sigma^2) per row.
  for (std::size_t i = 0; i < s.times.size(); ++i) {
    const double a = s.path->alpha(s.times[i]), sg = s.path->sigma(s.times[i]);
    for (std::size_t j = 0; j < 2; ++j) x(i, j) *= float(std::sqrt(a * a + sg * sg));
  }
  return x;
}

Times times_of(const Setup& s) { return Times(s.times.begin(), s.times.end()); }

double max_abs(const Tensor& t) {
  double m = 0;
  for (const float v : t) m = std::max(m, double(std::abs(v)));
  return m;
}

}  // namespace

TEST_CASE("predict_var gives predict's x0 and eps", "[denoiser]") {
  for (const Setup& s : setups()) {
    CAPTURE(s.name);
    const auto net = std::make_shared<MlpNet>(2, 5);
    const NetworkDenoiser d(net, s.path, s.pre);
    const Tensor x = input_for(s, 6);
    const Condition c = Condition::from_labels({0, 1, 2, 1, 0});
    Prediction p;
    d.predict(x, times_of(s), c, p);
    const PredictionVar v = d.predict_var(Var(x), times_of(s), c);
    REQUIRE(shape_of(v.x0.value()) == shape_of(x));
    REQUIRE(shape_of(v.eps.value()) == shape_of(x));
    const double scale = std::max(1.0, std::max(max_abs(p.x0), max_abs(p.eps)));
    for (std::size_t k = 0; k < x.size(); ++k) {
      CAPTURE(k);
      REQUIRE_THAT(v.x0.value().data()[k], WithinAbs(p.x0.data()[k], 1e-5 * scale));
      REQUIRE_THAT(v.eps.value().data()[k], WithinAbs(p.eps.data()[k], 1e-5 * scale));
    }
    // And the pair is consistent on the path: x = alpha x0_hat + sigma eps_hat.
    for (std::size_t i = 0; i < x.shape()[0]; ++i)
      for (std::size_t j = 0; j < 2; ++j) {
        const double a = s.path->alpha(s.times[i]), sg = s.path->sigma(s.times[i]);
        REQUIRE_THAT(a * p.x0(i, j) + sg * p.eps(i, j), WithinAbs(x(i, j), 1e-5 * (1 + std::abs(x(i, j)))));
      }
    // `out` is reused when it already has x's shape.
    const float* before = p.x0.data();
    d.predict(x, times_of(s), c, p);
    REQUIRE(p.x0.data() == before);
  }
}

namespace {

/// d/dx of sum(out * w) through predict_var, against a fourth-order central difference of
/// predict() (float32 throughout, so h = 2^-7 relative, as tests/core/grad_check.hpp argues:
/// rounding noise ~1e-5, truncation O(h^4) ~ 1e-9 for this smooth network).
void check_gradient(const Denoiser& d, const Tensor& x, const Times& t, const Condition& c, bool of_x0,
                    std::uint64_t seed) {
  Rng rng(seed);
  const Tensor w = rng.normal(shape_of(x));
  Var xv(x, true);
  const PredictionVar pv = d.predict_var(xv, t, c);
  sum((of_x0 ? pv.x0 : pv.eps) * Var(w)).backward();
  const Tensor analytic = xv.grad();
  REQUIRE(shape_of(analytic) == shape_of(x));
  const auto projected = [&](const Tensor& at) {
    const Prediction p = [&] {
      Prediction q;
      d.predict(at, t, c, q);
      return q;
    }();
    const Tensor& y = of_x0 ? p.x0 : p.eps;
    double s = 0;
    for (std::size_t k = 0; k < y.size(); ++k) s += double(y.data()[k]) * w.data()[k];
    return s;
  };
  std::vector<double> numeric(x.size());
  Tensor xs = x;
  for (std::size_t k = 0; k < x.size(); ++k) {
    const float x0 = x.data()[k];
    const double h = std::exp2(std::round(std::log2(std::max(1.0, std::abs(double(x0))) / 128)));
    const auto at = [&](double dx) {
      xs.data()[k] = float(x0 + dx);
      const double v = projected(xs);
      xs.data()[k] = x0;
      return v;
    };
    numeric[k] = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h);
  }
  double scale = 1;
  for (const double v : numeric) scale = std::max(scale, std::abs(v));
  for (std::size_t k = 0; k < x.size(); ++k) {
    CAPTURE(k, of_x0, analytic.data()[k], numeric[k]);
    REQUIRE(std::abs(analytic.data()[k] - numeric[k]) <= 1e-3 * scale + 1e-2 * std::abs(numeric[k]));
  }
}

}  // namespace

TEST_CASE("predict_var differentiates predict with respect to x", "[denoiser][grad]") {
  // For the eps prediction the x0 readout is x / alpha - (sigma / alpha) F: the gradient has
  // the identity part and the network's Jacobian, and with EDM-like scalings c_in scales the
  // input too (a missed c_in in the chain rule is off by a factor 1 / sqrt(s^2 + 0.25)).
  for (const Setup& s : setups()) {
    CAPTURE(s.name);
    const auto net = std::make_shared<MlpNet>(2, 9);
    const NetworkDenoiser d(net, s.path, s.pre);
    const Tensor x = input_for(s, 10);
    const Condition c = Condition::from_labels({2, 0, 1, 1, 2});
    check_gradient(d, x, times_of(s), c, true, 11);
    check_gradient(d, x, times_of(s), c, false, 12);
  }
}

TEST_CASE("predict_var leaves the weights' gradients untouched", "[denoiser][grad]") {
  // The weights require gradients (they are trained), yet a backward pass through predict_var
  // gives x its gradient and adds nothing to theirs.
  const Setup s = setups()[0];
  const auto net = std::make_shared<MlpNet>(2, 9);
  const NetworkDenoiser d(net, s.path, s.pre);
  for (Var& p : net->parameters()) REQUIRE(p.requires_grad());
  Var x(input_for(s, 10), true);
  const PredictionVar pv = d.predict_var(x, times_of(s), Condition::from_labels({2, 0, 1, 1, 2}));
  sum(pv.eps * pv.eps).backward();
  CHECK(x.has_grad());
  for (const Var& p : net->parameters()) CHECK_FALSE(p.has_grad());
  // The same network's forward outside predict_var still trains its weights.
  sum(net->forward(Var(input_for(s, 10)), Tensor::from_shape({10}), Condition::from_labels({2, 0, 1, 1, 2}))).backward();
  bool any = false;
  for (const Var& p : net->parameters()) any = any || p.has_grad();
  CHECK(any);
}

TEST_CASE("ConstantScope: no gradient flows to its constants through the graph recorded meanwhile", "[autodiff][grad]") {
  Var a(Tensor::from_shape({3}), true), b(Tensor::from_shape({3}), true);
  for (float& v : a.value()) v = 2.0f;
  for (float& v : b.value()) v = 3.0f;
  Var y;
  {
    const ConstantScope constants({b});
    y = sum(a * b);
  }
  y.backward();  // after the scope: the graph still treats b as a constant
  CHECK(a.has_grad());
  CHECK(a.grad().data()[0] == 3.0f);
  CHECK_FALSE(b.has_grad());
  sum(a * b).backward();  // recorded outside the scope: both get gradients
  CHECK(b.grad().data()[0] == 2.0f);
}

TEST_CASE("CountingDenoiser counts predict and predict_var calls and forwards them", "[denoiser]") {
  const Setup s = setups()[0];
  const auto net = std::make_shared<MlpNet>(2, 1);
  const auto inner = std::make_shared<NetworkDenoiser>(net, s.path, s.pre);
  CountingDenoiser counting(inner);
  REQUIRE(counting.nfe() == 0);
  REQUIRE(&counting.path() == s.path.get());
  REQUIRE(&counting.inner() == inner.get());
  const Tensor x = input_for(s, 2);
  const Condition c = Condition::from_labels({0, 0, 1, 1, 2});
  Prediction a, b;
  counting.predict(x, times_of(s), c, a);
  REQUIRE(counting.nfe() == 1);
  counting.predict(x, 0.5, c, b);  // every row at one time
  REQUIRE(counting.nfe() == 2);
  const Prediction one = counting.predict(x, 0.5, c);
  REQUIRE(counting.nfe() == 3);
  const PredictionVar v = counting.predict_var(Var(x), times_of(s), c);
  REQUIRE(counting.nfe() == 4);
  REQUIRE(net->calls == 4);
  // The predictions are the inner denoiser's, unchanged.
  Prediction ref;
  inner->predict(x, times_of(s), c, ref);
  REQUIRE(std::equal(a.x0.begin(), a.x0.end(), ref.x0.begin(), ref.x0.end()));
  REQUIRE(std::equal(a.eps.begin(), a.eps.end(), ref.eps.begin(), ref.eps.end()));
  REQUIRE(std::equal(b.x0.begin(), b.x0.end(), one.x0.begin(), one.x0.end()));
  for (std::size_t k = 0; k < x.size(); ++k)
    REQUIRE_THAT(v.x0.value().data()[k], WithinAbs(ref.x0.data()[k], 1e-5 * (1 + std::abs(ref.x0.data()[k]))));
  counting.reset();
  REQUIRE(counting.nfe() == 0);
  // Counting wrappers nest: each counts its own calls.
  const auto counted = std::make_shared<CountingDenoiser>(inner);
  const CountingDenoiser outer(counted);
  outer.predict(x, 0.5, c);
  outer.predict_var(Var(x), times_of(s), c);
  REQUIRE(outer.nfe() == 2);
  REQUIRE(counted->nfe() == 2);
  REQUIRE_THROWS_WITH(CountingDenoiser(nullptr), Catch::Contains("no denoiser"));
}

namespace {

/// x0 predicted directly, with a known dependence on the label and the null mask:
/// F_ij = 0.5 x_ij + (j + 1)(label_i + 1) for a kept row, 0.5 x_ij - 1 - j for a dropped one.
/// Records what each call saw.
class LabelNet : public Network {
 public:
  bool class_conditional() const override { return true; }
  std::vector<std::size_t> batch_sizes;
  std::vector<int> last_labels;
  std::vector<std::uint8_t> last_mask;
  Var forward(const Var& xv, const Tensor&, const Condition& c) override {
    const Tensor& x = xv.value();
    const std::size_t n = x.shape()[0];
    batch_sizes.push_back(n);
    last_labels = c.has_labels() ? c.labels() : std::vector<int>{};
    last_mask = c.has_null_mask() ? c.null_mask() : std::vector<std::uint8_t>{};
    Tensor shift = Tensor::from_shape(shape_of(x));
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < 2; ++j)
        shift(i, j) = c.is_null(i) ? -1.0f - float(j) : float((j + 1) * (c.labels()[i] + 1));
    return xv * 0.5f + Var(shift);
  }
};

/// The closed form of LabelNet's x0 for row i, element j.
double label_x0(double x, int label, bool null, std::size_t j) {
  return 0.5 * x + (null ? -1.0 - double(j) : double((j + 1) * (label + 1)));
}

}  // namespace

TEST_CASE("classifier-free guidance is (1 + w) cond - w uncond, from one evaluation of 2N rows", "[denoiser][cfg]") {
  const auto path = std::make_shared<CosineVp>();
  const auto net = std::make_shared<LabelNet>();
  const auto counting =
      std::make_shared<CountingDenoiser>(std::make_shared<NetworkDenoiser>(net, path, make_prediction("x0")));
  const std::size_t n = 4;
  const std::vector<int> labels = {0, 3, 1, 2};
  const Condition c = Condition::from_labels(labels);
  Rng rng(21);
  const Tensor x = rng.normal({n, 2});
  const double t = 0.4, a = path->alpha(t), s = path->sigma(t);

  SECTION("w = 0 is the conditional model exactly") {
    const ClassifierFreeGuidance cfg(counting, 0.0);
    REQUIRE(cfg.w() == 0.0);
    const Prediction g = cfg.predict(x, t, c);
    REQUIRE(counting->nfe() == 1);
    const Prediction cond = counting->predict(x, t, c);
    REQUIRE(std::equal(g.x0.begin(), g.x0.end(), cond.x0.begin(), cond.x0.end()));
    REQUIRE(std::equal(g.eps.begin(), g.eps.end(), cond.eps.begin(), cond.eps.end()));
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < 2; ++j)
        REQUIRE_THAT(g.x0(i, j), WithinAbs(label_x0(x(i, j), labels[i], false, j), 1e-5));
  }

  SECTION("w = 2: x0 and eps are 3 cond - 2 uncond, from one inner call of 2N rows") {
    const double w = 2.0;
    const ClassifierFreeGuidance cfg(counting, w);
    REQUIRE(&cfg.path() == path.get());
    net->batch_sizes.clear();
    const Prediction g = cfg.predict(x, t, c);
    REQUIRE(counting->nfe() == 1);
    REQUIRE(net->batch_sizes == std::vector<std::size_t>{2 * n});
    // The inner batch: the labels twice, kept then dropped.
    REQUIRE(net->last_labels == std::vector<int>{0, 3, 1, 2, 0, 3, 1, 2});
    REQUIRE(net->last_mask == std::vector<std::uint8_t>{0, 0, 0, 0, 1, 1, 1, 1});
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < 2; ++j) {
        CAPTURE(i, j);
        const double xc = label_x0(x(i, j), labels[i], false, j), xu = label_x0(x(i, j), labels[i], true, j);
        const double ec = (x(i, j) - a * xc) / s, eu = (x(i, j) - a * xu) / s;
        REQUIRE_THAT(g.x0(i, j), WithinAbs((1 + w) * xc - w * xu, 1e-4));
        REQUIRE_THAT(g.eps(i, j), WithinAbs((1 + w) * ec - w * eu, 1e-4));
        // Guiding eps and reading x0 off it on the path gives the same x0.
        REQUIRE_THAT(g.x0(i, j), WithinAbs((x(i, j) - s * g.eps(i, j)) / a, 1e-4));
      }
    // The same through predict_var: one more inner call of 2N rows.
    const PredictionVar v = cfg.predict_var(Var(x), same_time(n, t), c);
    REQUIRE(counting->nfe() == 2);
    REQUIRE(net->batch_sizes == std::vector<std::size_t>{2 * n, 2 * n});
    REQUIRE(shape_of(v.x0.value()) == shape_of(x));
    for (std::size_t k = 0; k < x.size(); ++k) {
      REQUIRE_THAT(v.x0.value().data()[k], WithinAbs(g.x0.data()[k], 1e-5));
      REQUIRE_THAT(v.eps.value().data()[k], WithinAbs(g.eps.data()[k], 1e-5));
    }
  }

  SECTION("rows already dropped by the caller's mask stay unconditional") {
    const double w = 1.5;
    const ClassifierFreeGuidance cfg(counting, w);
    Condition masked = c;
    masked.set_null_mask({0, 1, 0, 0});
    const Prediction g = cfg.predict(x, t, masked);
    REQUIRE(net->last_mask == std::vector<std::uint8_t>{0, 1, 0, 0, 1, 1, 1, 1});
    for (std::size_t j = 0; j < 2; ++j) {
      // (1 + w) u - w u = u for the dropped row 1; row 0 guided as usual.
      REQUIRE_THAT(g.x0(1, j), WithinAbs(label_x0(x(1, j), labels[1], true, j), 1e-4));
      const double xc = label_x0(x(0, j), labels[0], false, j), xu = label_x0(x(0, j), labels[0], true, j);
      REQUIRE_THAT(g.x0(0, j), WithinAbs((1 + w) * xc - w * xu, 1e-4));
    }
  }

  SECTION("an unconditional batch: both halves see only the mask") {
    // LabelNet needs labels for kept rows, so the MLP network here.
    const auto mlp = std::make_shared<MlpNet>(2, 3);
    const ClassifierFreeGuidance g2(std::make_shared<NetworkDenoiser>(mlp, path, make_prediction("eps")), 1.0);
    const Prediction g = g2.predict(x, t);
    REQUIRE(mlp->calls == 1);
    REQUIRE(shape_of(g.x0) == shape_of(x));
  }
}

TEST_CASE("classifier-free guidance's predict_var differentiates its predict", "[denoiser][cfg][grad]") {
  const Setup s = setups()[0];
  const auto net = std::make_shared<MlpNet>(2, 17);
  const auto cfg = std::make_shared<ClassifierFreeGuidance>(std::make_shared<NetworkDenoiser>(net, s.path, s.pre), 2.5);
  const Tensor x = input_for(s, 18);
  const Condition c = Condition::from_labels({1, 2, 0, 2, 1});
  check_gradient(*cfg, x, times_of(s), c, true, 19);
  check_gradient(*cfg, x, times_of(s), c, false, 20);
}

TEST_CASE("ChunkedDenoiser gives one pass's predictions from evaluations of at most its rows", "[denoiser]") {
  const Setup s = setups()[3];  // edm_like: c_in != 1, per-row scalings
  const auto net = std::make_shared<MlpNet>(2, 3);
  const auto inner = std::make_shared<NetworkDenoiser>(net, s.path, s.pre);
  // 11 rows at varied times and labels, some dropped to the null label.
  const std::size_t n = 11;
  Rng rng(4);
  const Tensor x = rng.normal({n, 2});
  Times t;
  std::vector<int> labels;
  std::vector<std::uint8_t> mask;
  for (std::size_t i = 0; i < n; ++i) {
    t.push_back(s.times[i % s.times.size()]);
    labels.push_back(int(i % 3));
    mask.push_back(i % 4 == 1 ? 1 : 0);
  }
  Condition c = Condition::from_labels(labels);
  c.set_null_mask(mask);
  Prediction whole;
  inner->predict(x, t, c, whole);
  for (const std::size_t rows : {1, 3, 4, 10, 11, 50}) {
    const auto counted = std::make_shared<CountingDenoiser>(inner);
    const ChunkedDenoiser chunked(counted, rows);
    net->calls = 0;
    Prediction part;
    chunked.predict(x, t, c, part);
    const std::size_t evaluations = (n + rows - 1) / rows;
    INFO("rows " << rows);
    REQUIRE(net->calls == evaluations);
    REQUIRE(counted->nfe() == evaluations);
    REQUIRE(shape_of(part.x0) == shape_of(x));
    // Each row sees its own time, label and mask: the same numbers as one pass.
    for (std::size_t k = 0; k < x.size(); ++k) {
      REQUIRE_THAT(part.x0.data()[k], WithinAbs(whole.x0.data()[k], 1e-6 * (1 + std::abs(whole.x0.data()[k]))));
      REQUIRE_THAT(part.eps.data()[k], WithinAbs(whole.eps.data()[k], 1e-6 * (1 + std::abs(whole.eps.data()[k]))));
    }
  }
  // Under classifier-free guidance (2N rows inside) the guided predictions are unchanged too.
  const ClassifierFreeGuidance guided_whole(inner, 1.5);
  const ClassifierFreeGuidance guided_chunked(std::make_shared<ChunkedDenoiser>(inner, 4), 1.5);
  const Condition labels_only = Condition::from_labels(labels);
  Prediction gw, gc;
  guided_whole.predict(x, t, labels_only, gw);
  guided_chunked.predict(x, t, labels_only, gc);
  for (std::size_t k = 0; k < x.size(); ++k)
    REQUIRE_THAT(gc.x0.data()[k], WithinAbs(gw.x0.data()[k], 1e-6 * (1 + std::abs(gw.x0.data()[k]))));
  REQUIRE_THROWS_WITH(ChunkedDenoiser(inner, 0), Catch::Contains("at least one row"));
  const ChunkedDenoiser two(inner, 2);
  Prediction bad;
  REQUIRE_THROWS_WITH(two.predict(x, same_time(n - 1, 0.5), c, bad), Catch::Contains("10 times for 11 rows"));
}
