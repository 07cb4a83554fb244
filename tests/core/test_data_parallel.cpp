// Data-parallel training steps (data_parallel.hpp) and the gradient sinks under them: the
// shards' gradients must add up to the whole batch's, and must not depend on the thread count
// (two threads running backward passes through the same parameters at once must not race).
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "diffusion/model/network.hpp"
#include "diffusion/run/data_parallel.hpp"
#include "diffusion/nn/layers.hpp"
#include "grad_check.hpp"
#include "nn_test_helpers.hpp"

using namespace diffusion;
using testing::bitwise_equal;
using testing::ThreadCount;

namespace {

// A small time-conditioned MLP with a learned per-class output offset, so labels matter.
class SmallNet : public Network {
 public:
  explicit SmallNet(Rng& rng) {
    mlp_ = register_module("mlp", std::make_shared<MLP>(std::vector<std::size_t>{3, 32, 32, 2}, Activation::silu, rng));
    offset_ = register_parameter("offset", Var(rng.normal({3, 2}), true));
  }
  bool class_conditional() const override { return true; }
  Var forward(const Var& x, const Tensor& t, const Condition& c) override {
    const Var tc = reshape(Var(t), {static_cast<long>(t.size()), 1});
    const Var y = mlp_->forward(concat({x, tc}, 1));
    if (!c.has_labels()) return y;
    return y + index_select(offset_, 0, std::vector<std::size_t>(c.labels().begin(), c.labels().end()));
  }

 private:
  std::shared_ptr<MLP> mlp_;
  Var offset_;
};

// The mean of per-sample losses that draw nothing: the same numbers however the batch is cut.
Var fixed_loss(Network& net, const Tensor& x0, const Condition& c) {
  const std::size_t n = x0.shape()[0];
  Tensor t = Tensor::from_shape({n}), target = Tensor::from_shape({n, 2});
  for (std::size_t i = 0; i < n; ++i) {
    t(i) = std::cos(x0(i, 0));
    for (std::size_t j = 0; j < 2; ++j) target(i, j) = std::sin(3 * x0(i, j));
  }
  return mean(mse_per_sample(net.forward(Var(x0), t, c), Var(target)));
}

// Draws times and noise from rng, as the diffusion losses do.
Var noisy_loss(Network& net, const Tensor& x0, const Condition& c, Rng& rng) {
  const std::size_t n = x0.shape()[0];
  const Tensor t = rng.uniform({n});
  const Tensor eps = rng.normal({n, 2});
  Tensor xt = Tensor::from_shape({n, 2});
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < 2; ++j) xt(i, j) = x0(i, j) + t(i) * eps(i, j);
  return mean(mse_per_sample(net.forward(Var(xt), t, c), Var(eps)));
}

struct Step {
  double loss;
  std::vector<Tensor> grads;
};

Step run_step(std::size_t shards, bool noisy, std::uint64_t seed = 9) {
  Rng init(1);
  SmallNet net(init);
  Rng data(2);
  const Tensor x0 = data.normal({64, 2});
  std::vector<int> labels(64);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>((i * 7) % 3);
  ShardedStep step(net.parameters(), shards);
  Rng rng(seed);
  Step out;
  out.loss = step.run(x0, Condition::from_labels(labels), rng,
                      [&](const Tensor& x, const Condition& c, Rng& r, std::size_t) {
                        return noisy ? noisy_loss(net, x, c, r) : fixed_loss(net, x, c);
                      });
  for (const Var& p : net.parameters()) out.grads.push_back(p.grad());
  return out;
}

}  // namespace

TEST_CASE("a sharded step's loss and gradients are the whole batch's", "[data_parallel]") {
  const Step whole = run_step(1, false);
  const std::size_t shards = GENERATE(2, 4, 8);
  CAPTURE(shards);
  const Step cut = run_step(shards, false);
  REQUIRE_THAT(cut.loss, Catch::Matchers::WithinRel(whole.loss, 1e-6));
  REQUIRE(cut.grads.size() == whole.grads.size());
  for (std::size_t p = 0; p < whole.grads.size(); ++p) {
    double scale = 0;
    for (const float g : whole.grads[p]) scale = std::max(scale, double(std::abs(g)));
    REQUIRE(scale > 0);  // every parameter, the class offsets included, gets a gradient
    for (std::size_t i = 0; i < whole.grads[p].size(); ++i) {
      CAPTURE(p, i);
      REQUIRE_THAT(cut.grads[p].data()[i], Catch::Matchers::WithinAbs(whole.grads[p].data()[i], 1e-5 * scale));
    }
  }
}

TEST_CASE("a sharded step gives the same bits on one thread and on two", "[data_parallel][parallel]") {
  Step serial;
  {
    ThreadCount one(1);
    serial = run_step(4, true);
  }
  ThreadCount two(2);
  // Repeated, so that a race between the shards' backward passes would show.
  for (int rep = 0; rep < 20; ++rep) {
    const Step threaded = run_step(4, true);
    REQUIRE(threaded.loss == serial.loss);
    for (std::size_t p = 0; p < serial.grads.size(); ++p) REQUIRE(bitwise_equal(threaded.grads[p], serial.grads[p]));
  }
  // Each shard draws its own noise: a different step seed gives a different step.
  REQUIRE(run_step(4, true, 10).loss != serial.loss);
}

TEST_CASE("a sharded step replaces the gradients and refuses an uneven batch", "[data_parallel]") {
  Rng init(1);
  SmallNet net(init);
  Rng rng(0), data(2);
  const Tensor x0 = data.normal({12, 2});
  const auto loss = [&](const Tensor& x, const Condition& c, Rng&, std::size_t) { return fixed_loss(net, x, c); };
  ShardedStep step(net.parameters(), 2);
  step.run(x0, Condition(), rng, loss);
  // Without labels the offsets get no gradient.
  for (const auto& [name, p] : net.named_parameters()) {
    CAPTURE(name);
    REQUIRE(p.has_grad() == (name != "offset"));
  }
  const Var w = net.named_parameters().back().first == "offset" ? net.parameters().front() : net.parameters().back();
  REQUIRE(w.has_grad());
  const Tensor first = w.grad();
  step.run(x0, Condition(), rng, loss);
  REQUIRE(bitwise_equal(w.grad(), first));  // replaced, not added to
  ShardedStep five(net.parameters(), 5);
  REQUIRE_THROWS_WITH(five.run(x0, Condition(), rng, loss),
                      Catch::Contains("a batch of 12 does not split into 5 equal shards"));
}

TEST_CASE("a gradient sink collects the parameters' gradients in their place", "[data_parallel][autodiff]") {
  Var w(full({3}, 2.0f), true), b(full({3}, 1.0f), true);
  const Var x(Tensor(full({3}, 5.0f)));
  GradSink sink({w, b});
  {
    GradSink::Scope scope(sink);
    sum(w * x + b * b).backward();
  }
  REQUIRE_FALSE(w.has_grad());
  REQUIRE_FALSE(b.has_grad());
  REQUIRE(sink.has(0));
  REQUIRE(sink.has(1));
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(sink.grad(0).data()[i] == 5.0f);  // d/dw of w x
    REQUIRE(sink.grad(1).data()[i] == 2.0f);  // d/db of b^2
  }
  // Uninstalled, gradients go to the parameters again.
  sum(w * x).backward();
  REQUIRE(w.has_grad());
  REQUIRE(w.grad().data()[0] == 5.0f);
  sink.clear();
  REQUIRE_FALSE(sink.has(0));
}
