// Optimisers against PyTorch's update rules written out in double precision, state checkpoints,
// EMA, learning-rate schedules and gradient clipping.
#include <catch2/catch.hpp>

#include "nn_test_helpers.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/nn/layers.hpp"
#include "diffusion/optim/optim.hpp"

using namespace diffusion;
using namespace diffusion::testing;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

Tensor vec(const std::vector<double>& v) {
  Tensor t = Tensor::from_shape({v.size()});
  for (std::size_t i = 0; i < v.size(); ++i) t(i) = static_cast<float>(v[i]);
  return t;
}

// The fixed problem of the hand examples: a 4-vector and three gradients.
const std::vector<double> kP0 = {0.5, -1.0, 2.0, 0.0};
const std::vector<std::vector<double>> kGrads = {
    {0.1, -0.2, 0.3, 0.0}, {-0.05, 0.4, 0.1, 1.0}, {0.2, 0.0, -0.3, -2.0}};

// torch.optim.Adam / AdamW, written out in double precision as the papers' equations.
std::vector<std::vector<double>> adam_reference(double lr, double b1, double b2, double eps,
                                                double wd, bool decoupled) {
  std::vector<double> p = kP0, m(p.size(), 0.0), v(p.size(), 0.0);
  std::vector<std::vector<double>> out;
  for (std::size_t t = 1; t <= kGrads.size(); ++t) {
    for (std::size_t j = 0; j < p.size(); ++j) {
      double g = kGrads[t - 1][j];
      if (decoupled)
        p[j] *= 1.0 - lr * wd;  // AdamW: decay the weights directly
      else
        g += wd * p[j];  // Adam: L2 term in the gradient
      m[j] = b1 * m[j] + (1.0 - b1) * g;
      v[j] = b2 * v[j] + (1.0 - b2) * g * g;
      const double m_hat = m[j] / (1.0 - std::pow(b1, t));
      const double v_hat = v[j] / (1.0 - std::pow(b2, t));
      p[j] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
    out.push_back(p);
  }
  return out;
}

// torch.optim.SGD, written out in double precision.
std::vector<std::vector<double>> sgd_reference(double lr, double mu, double damp, double wd,
                                               bool nesterov) {
  std::vector<double> p = kP0, buf(p.size(), 0.0);
  std::vector<std::vector<double>> out;
  for (std::size_t t = 1; t <= kGrads.size(); ++t) {
    for (std::size_t j = 0; j < p.size(); ++j) {
      double d = kGrads[t - 1][j] + wd * p[j];
      if (mu != 0.0) {
        buf[j] = t == 1 ? d : mu * buf[j] + (1.0 - damp) * d;
        d = nesterov ? d + mu * buf[j] : buf[j];
      }
      p[j] -= lr * d;
    }
    out.push_back(p);
  }
  return out;
}

// Runs the optimiser made by `make` on the hand problem and compares every step.
void check_against(const std::function<std::unique_ptr<Optimizer>(std::vector<Var>)>& make,
                   const std::vector<std::vector<double>>& expected, double tol) {
  Var p(vec(kP0), true);
  auto opt = make({p});
  for (std::size_t t = 0; t < kGrads.size(); ++t) {
    opt->zero_grad();
    p.grad() = vec(kGrads[t]);
    opt->step();
    for (std::size_t j = 0; j < kP0.size(); ++j) {
      CAPTURE(t + 1, j);
      CHECK_THAT(p.value()(j), WithinAbs(expected[t][j], tol));
    }
  }
  CHECK(opt->steps() == 3);
}

AdamOptions adam_options(double wd) {
  AdamOptions o;
  o.lr = 0.1;
  o.beta1 = 0.9;
  o.beta2 = 0.999;
  o.eps = 1e-8;
  o.weight_decay = wd;
  return o;
}

}  // namespace

TEST_CASE("Adam matches the hand-computed PyTorch rule over three steps", "[nn][optim][adam]") {
  const auto expected = adam_reference(0.1, 0.9, 0.999, 1e-8, 0.0, false);
  // Step 1 by hand: m_hat = g and v_hat = g^2, so p -= lr g / (|g| + eps).
  CHECK_THAT(expected[0][0], WithinAbs(0.5 - 0.1 * 0.1 / (0.1 + 1e-8), 1e-15));
  CHECK_THAT(expected[0][3], WithinAbs(0.0, 1e-15));  // zero gradient: no move
  check_against([](std::vector<Var> ps) { return std::make_unique<Adam>(ps, adam_options(0.0)); },
                expected, 1e-6);
}

TEST_CASE("Adam with L2 weight decay matches the hand-computed rule", "[nn][optim][adam]") {
  check_against([](std::vector<Var> ps) { return std::make_unique<Adam>(ps, adam_options(0.1)); },
                adam_reference(0.1, 0.9, 0.999, 1e-8, 0.1, false), 1e-6);
}

TEST_CASE("AdamW's decoupled weight decay matches the hand-computed rule", "[nn][optim][adam]") {
  const auto expected = adam_reference(0.1, 0.9, 0.999, 1e-8, 0.1, true);
  // The two decays differ: the test would not tell them apart otherwise.
  CHECK(std::abs(expected[2][2] - adam_reference(0.1, 0.9, 0.999, 1e-8, 0.1, false)[2][2]) > 1e-3);
  check_against(
      [](std::vector<Var> ps) {
        AdamWOptions o;
        static_cast<AdamOptions&>(o) = adam_options(0.1);
        return std::make_unique<AdamW>(ps, o);
      },
      expected, 1e-6);
  CHECK(AdamWOptions().weight_decay == 1e-2);  // PyTorch's AdamW default
}

TEST_CASE("SGD with Nesterov momentum matches a hand example", "[nn][optim][sgd]") {
  // p0 = 1, g = 1, 0.5, -1, lr 0.1, momentum 0.9, nesterov; by hand:
  //   b = 1,                 d = 1 + 0.9*1 = 1.9,       p = 1 - 0.19 = 0.81
  //   b = 0.9*1 + 0.5 = 1.4, d = 0.5 + 0.9*1.4 = 1.76,  p = 0.81 - 0.176 = 0.634
  //   b = 0.9*1.4 - 1 = 0.26, d = -1 + 0.9*0.26 = -0.766, p = 0.634 + 0.0766 = 0.7106
  Var p(Tensor{1.0f}, true);
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.nesterov = true;
  SGD opt({p}, o);
  const double grads[] = {1.0, 0.5, -1.0}, expected[] = {0.81, 0.634, 0.7106};
  for (int t = 0; t < 3; ++t) {
    opt.zero_grad();
    p.grad() = Tensor{static_cast<float>(grads[t])};
    opt.step();
    CHECK_THAT(p.value()(0), WithinAbs(expected[t], 1e-6));
  }
}

TEST_CASE("SGD variants match the hand-computed PyTorch rule", "[nn][optim][sgd]") {
  struct Case { double mu, damp, wd; bool nesterov; };
  const Case c = GENERATE(Case{0.0, 0.0, 0.0, false}, Case{0.0, 0.0, 0.1, false},
                          Case{0.9, 0.0, 0.0, false}, Case{0.9, 0.1, 0.1, false},
                          Case{0.9, 0.0, 0.1, true});
  CAPTURE(c.mu, c.damp, c.wd, c.nesterov);
  check_against(
      [&](std::vector<Var> ps) {
        SgdOptions o;
        o.lr = 0.1, o.momentum = c.mu, o.dampening = c.damp, o.weight_decay = c.wd;
        o.nesterov = c.nesterov;
        return std::make_unique<SGD>(ps, o);
      },
      sgd_reference(0.1, c.mu, c.damp, c.wd, c.nesterov), 1e-6);
  SgdOptions bad;
  bad.nesterov = true;
  CHECK_THAT(error_of([&] { SGD({Var(zeros({1}), true)}, bad); }), Contains("nesterov"));
}

TEST_CASE("a parameter without a gradient is skipped and keeps its own step count",
          "[nn][optim][adam]") {
  Var a(vec(kP0), true), late(vec(kP0), true);
  Adam opt({a, late}, adam_options(0.0));
  opt.zero_grad();
  a.grad() = vec(kGrads[0]);
  opt.step();  // `late` has no gradient: untouched
  CHECK(bitwise_equal(late.value(), vec(kP0)));
  // Its first update is a first Adam step (bias correction with t = 1), as in PyTorch.
  opt.zero_grad();
  late.grad() = vec(kGrads[0]);
  opt.step();
  Var fresh(vec(kP0), true);
  Adam single({fresh}, adam_options(0.0));
  fresh.grad() = vec(kGrads[0]);
  single.step();
  CHECK(bitwise_equal(late.value(), fresh.value()));
}

TEST_CASE("optimiser state round-trips through HDF5 and gives an identical next step",
          "[nn][optim][hdf5]") {
  using Factory = std::function<std::unique_ptr<Optimizer>(std::vector<Var>)>;
  const std::string kind = GENERATE("adam", "adamw", "sgd");
  CAPTURE(kind);
  const Factory make = [kind](std::vector<Var> ps) -> std::unique_ptr<Optimizer> {
    if (kind == "adam") return std::make_unique<Adam>(ps, adam_options(0.01));
    if (kind == "adamw") {
      AdamWOptions o;
      o.lr = 0.05;
      return std::make_unique<AdamW>(ps, o);
    }
    SgdOptions o;
    o.lr = 0.05, o.momentum = 0.9;
    return std::make_unique<SGD>(ps, o);
  };
  TempH5 file("state_" + kind);
  Rng data_rng(5);
  const Var x(data_rng.normal({16, 3})), y(data_rng.normal({16, 2}));
  auto train_step = [&](MLP& net, Optimizer& opt) {
    opt.zero_grad();
    mse_loss(net.forward(x), y).backward();
    opt.step();
  };

  Rng rng_a(1);
  MLP a({3, 8, 2}, Activation::tanh, rng_a);
  auto opt_a = make(a.parameters());
  for (int i = 0; i < 3; ++i) train_step(a, *opt_a);
  opt_a->set_lr(0.03);  // a schedule moved it: it must come back too
  {
    H5::H5File f(file.path, H5F_ACC_TRUNC);
    a.save(h5_require_group(f, "model"));
    opt_a->save_state(h5_require_group(f, "optimizer"));
  }
  train_step(a, *opt_a);

  Rng rng_b(2);
  MLP b({3, 8, 2}, Activation::tanh, rng_b);
  auto opt_b = make(b.parameters());
  {
    H5::H5File f(file.path, H5F_ACC_RDONLY);
    b.load(f.openGroup("model"));
    opt_b->load_state(f.openGroup("optimizer"));
  }
  CHECK(opt_b->steps() == 3);
  CHECK(opt_b->lr() == 0.03);
  train_step(b, *opt_b);
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(bitwise_equal(pa[i].second.value(), pb[i].second.value()));
  }
}

TEST_CASE("loading optimiser state checks type, count and shapes", "[nn][optim][hdf5]") {
  TempH5 file("state_errors");
  Var p(zeros({3, 2}), true), q(zeros({4}), true);
  Adam adam({p, q}, adam_options(0.0));
  {
    H5::H5File f(file.path, H5F_ACC_TRUNC);
    adam.save_state(h5_require_group(f, "optimizer"));
  }
  H5::H5File f(file.path, H5F_ACC_RDONLY);
  const H5::Group g = f.openGroup("optimizer");
  SgdOptions so;
  so.momentum = 0.9;
  SGD sgd({p, q}, so);
  CHECK_THAT(error_of([&] { sgd.load_state(g); }), Contains("'adam'") && Contains("'sgd'"));
  Adam fewer({p}, adam_options(0.0));
  CHECK_THAT(error_of([&] { fewer.load_state(g); }), Contains("2 parameters"));
  Var p_wrong(zeros({2, 3}), true);
  Adam wrong({p_wrong, q}, adam_options(0.0));
  CHECK_THAT(error_of([&] { wrong.load_state(g); }),
             Contains("/optimizer/0/exp_avg") && Contains("expected shape (2, 3)") &&
                 Contains("found (3, 2)"));
}

TEST_CASE("EMA after k updates with constant parameters equals the closed form", "[nn][ema]") {
  Rng rng(8);
  Linear model(3, 2, true, rng);
  const Tensor w0 = model.weight().value();
  auto shadow = std::make_shared<Linear>(3, 2, true, rng);
  const double d = 0.9;
  EMA ema(model, shadow, d);
  CHECK(bitwise_equal(shadow->weight().value(), w0));  // starts at the model
  CHECK_FALSE(shadow->weight().requires_grad());
  const float c = 0.75f;
  for (auto& p : model.parameters()) std::fill(p.value().begin(), p.value().end(), c);
  const int k = 7;
  for (int i = 0; i < k; ++i) ema.update();
  CHECK(ema.num_updates() == k);
  // s_k = d^k s_0 + (1 - d^k) c
  const double dk = std::pow(d, k);
  for (std::size_t i = 0; i < w0.size(); ++i)
    CHECK_THAT(shadow->weight().value().data()[i], WithinAbs(dk * w0.data()[i] + (1 - dk) * c, 1e-6));
  // copy_to puts the average into another module.
  Linear target(3, 2, true, rng);
  ema.copy_to(target);
  CHECK(bitwise_equal(target.weight().value(), shadow->weight().value()));
}

TEST_CASE("EMA warm-up uses min(decay, (1 + n) / (10 + n))", "[nn][ema]") {
  Rng rng(9);
  Linear model(2, 2, true, rng);
  EMA ema(model, std::make_shared<Linear>(2, 2, true, rng), 0.5, true);
  CHECK_THAT(ema.next_decay(), WithinAbs(0.1, 1e-15));
  ema.update();
  CHECK_THAT(ema.next_decay(), WithinAbs(2.0 / 11.0, 1e-15));
  for (int i = 0; i < 20; ++i) ema.update();
  CHECK(ema.next_decay() == 0.5);  // (22 / 31) > 0.5: capped
  EMA plain(model, std::make_shared<Linear>(2, 2, true, rng), 0.999);
  CHECK(plain.next_decay() == 0.999);  // off by default
}

TEST_CASE("EMA copies buffers and round-trips through HDF5 with the model's names",
          "[nn][ema][hdf5]") {
  TempH5 file("ema");
  struct Net : Module {
    Net(Rng& r) {
      register_module("fourier", std::make_shared<GaussianFourierEmbedding>(4, 1.0, r));
      register_module("mlp", std::make_shared<MLP>(std::vector<std::size_t>{4, 6, 2},
                                                   Activation::gelu, r));
    }
  };
  Rng r1(1), r2(2), r3(3);
  Net model(r1);
  auto shadow = std::make_shared<Net>(r2);
  EMA ema(model, shadow, 0.99, true);
  CHECK(bitwise_equal(shadow->named_buffers()[0].second.value(),
                      model.named_buffers()[0].second.value()));
  for (int i = 0; i < 5; ++i) {
    for (auto& p : model.parameters()) p.value() += 0.1f;
    ema.update();
  }
  {
    H5::H5File f(file.path, H5F_ACC_TRUNC);
    ema.save(h5_require_group(f, "ema"));
    model.save(h5_require_group(f, "model"));
    // The same dotted names under /ema as under /model.
    CHECK(h5_dataset_names(f.openGroup("ema")) == h5_dataset_names(f.openGroup("model")));
  }
  Net other(r3);
  EMA restored(other, std::make_shared<Net>(r3), 0.99, true);
  {
    H5::H5File f(file.path, H5F_ACC_RDONLY);
    restored.load(f.openGroup("ema"));
  }
  CHECK(restored.num_updates() == 5);
  CHECK(restored.next_decay() == ema.next_decay());
  const auto a = ema.module().named_state(), b = restored.module().named_state();
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].first);
    CHECK(bitwise_equal(a[i].second.value(), b[i].second.value()));
  }
}

TEST_CASE("learning-rate schedules at specific steps", "[nn][schedule]") {
  const double base = 1e-3, lo = 1e-5;
  SECTION("constant") {
    const auto s = LrSchedule::constant(base);
    CHECK(s.lr_at(0) == base);
    CHECK(s.lr_at(123456) == base);
  }
  SECTION("linear warm-up") {
    const auto s = LrSchedule::linear_warmup(base, 100);
    CHECK(s.lr_at(0) == 0.0);
    CHECK_THAT(s.lr_at(25), WithinRel(base / 4, 1e-12));
    CHECK_THAT(s.lr_at(50), WithinRel(base / 2, 1e-12));
    CHECK(s.lr_at(100) == base);
    CHECK(s.lr_at(10000) == base);
  }
  SECTION("cosine with warm-up") {
    const auto s = LrSchedule::cosine(base, 1100, 100, lo);
    CHECK_THAT(s.lr_at(50), WithinRel(base / 2, 1e-12));
    CHECK_THAT(s.lr_at(100), WithinRel(base, 1e-12));
    CHECK_THAT(s.lr_at(350), WithinRel(lo + (base - lo) * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12));
    CHECK_THAT(s.lr_at(600), WithinRel((base + lo) / 2, 1e-12));
    CHECK_THAT(s.lr_at(1100), WithinRel(lo, 1e-12));
    CHECK_THAT(s.lr_at(5000), WithinRel(lo, 1e-12));
  }
  SECTION("cosine without warm-up starts at base and reaches zero") {
    const auto s = LrSchedule::cosine(base, 1000);
    CHECK(s.lr_at(0) == base);
    CHECK_THAT(s.lr_at(1000), WithinAbs(0.0, 1e-18));
  }
  SECTION("names and validation") {
    CHECK(parse_lr_schedule("cosine") == LrScheduleKind::cosine);
    CHECK(parse_lr_schedule("warmup") == LrScheduleKind::linear_warmup);
    CHECK_THAT(error_of([] { parse_lr_schedule("step"); }),
               Contains("'step'") && Contains("constant") && Contains("cosine"));
    CHECK_THAT(error_of([] { LrSchedule::cosine(1e-3, 100, 100); }), Contains("total_steps"));
    CHECK_THAT(error_of([] { LrSchedule::linear_warmup(1e-3, 0); }), Contains("warmup_steps"));
  }
}

TEST_CASE("clip_grad_norm scales the global norm to max_norm", "[nn][clip]") {
  Var a(zeros({2}), true), b(zeros({1, 1}), true), none(zeros({3}), true);
  a.grad() = Tensor{3.0f, 0.0f};
  b.grad() = full({1, 1}, 4.0f);  // global norm 5; `none` has no gradient and counts 0
  const double before = clip_grad_norm({a, b, none}, 1.0);
  CHECK_THAT(before, WithinAbs(5.0, 1e-12));
  CHECK_FALSE(none.has_grad());
  CHECK_THAT(grad_norm({a, b}), WithinRel(1.0, 1e-6));  // 5 / (5 + 1e-6) of 1
  CHECK_THAT(a.grad()(0), WithinRel(0.6, 1e-6));
  CHECK_THAT(b.grad()(0, 0), WithinRel(0.8, 1e-6));
  // Below the threshold nothing changes.
  const Tensor a_before = a.grad();
  const double again = clip_grad_norm({a, b}, 10.0);
  CHECK_THAT(again, WithinRel(1.0, 1e-6));
  CHECK(bitwise_equal(a.grad(), a_before));
}
