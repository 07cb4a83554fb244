// The residual MLP network (plugins/mlp/residual_mlp.cpp): its size and parameter names, its
// gradients with respect to the input and every parameter against finite differences, the null
// label of dropped conditions, and that it learns a small regression.
#include <catch2/catch.hpp>

#include <cmath>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/optim/optim.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "network_grad_check.hpp"

using namespace diffusion;

namespace {

std::shared_ptr<Network> make_net(const std::string& yaml, int classes = 0) {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_mlp.so");
  Rng rng(3);
  BuildContext ctx{{2}, classes, &rng};
  return registries().networks.create(Config::load_string(yaml).root(), ctx);
}

using network_grad_check::check_parameter_gradients;

}  // namespace

TEST_CASE("residual mlp: names, shapes and parameter count", "[network][residual_mlp]") {
  auto net = make_net("{type: residual_mlp, width: 16, blocks: 2, expansion: 4}");
  const auto params = net->named_parameters();
  REQUIRE(params.front().first == "input.weight");
  REQUIRE(params.front().second.shape() == Shape{16, 34});  // x (2) and the 32-dim sinusoidal embedding
  REQUIRE(params[2].first == "blocks.0.expand.weight");
  REQUIRE(params[2].second.shape() == Shape{64, 16});
  REQUIRE(params[4].first == "blocks.0.project.weight");
  REQUIRE(params[4].second.shape() == Shape{16, 64});
  REQUIRE(params.back().first == "output.bias");
  REQUIRE(net->num_parameters() == (34 * 16 + 16) + 2 * ((16 * 64 + 64) + (64 * 16 + 16)) + (16 * 2 + 2));
  // Raw time: one input feature.
  auto raw = make_net("{type: residual_mlp, width: 8, blocks: 1, time_embedding: {type: raw}}");
  REQUIRE(raw->named_parameters().front().second.shape() == Shape{8, 3});
  Rng rng(1);
  for (std::size_t n : {1, 7}) {
    const Var y = raw->forward(Var(rng.normal({n, 2})), rng.uniform({n}), Condition());
    REQUIRE(y.shape() == Shape{n, 2});
  }
}

TEST_CASE("residual mlp: gradients match finite differences", "[network][residual_mlp]") {
  const std::string yaml = GENERATE(
      std::string("{type: residual_mlp, width: 8, blocks: 2, expansion: 2, activation: silu}"),
      std::string("{type: residual_mlp, width: 6, blocks: 1, activation: tanh, time_embedding: {type: raw}}"),
      std::string("{type: residual_mlp, width: 6, blocks: 2, expansion: 2, activation: gelu, class_conditional: true, "
                  "time_embedding: {type: fourier, dim: 4, scale: 1}}"));
  CAPTURE(yaml);
  auto net = make_net(yaml, 3);
  Rng rng(5);
  const Tensor t = rng.uniform({5}, -1, 1);
  Condition c = net->class_conditional() ? Condition::from_labels({0, 2, 1, 2, 0}) : Condition();
  if (net->class_conditional()) c.set_null_mask({0, 1, 0, 0, 1});
  const Tensor x = rng.normal({5, 2});
  grad_check::check_gradients([&](const std::vector<Var>& in) { return net->forward(in[0], t, c); }, {x});
  check_parameter_gradients(*net, [&] { return net->forward(Var(x), t, c); });
}

TEST_CASE("residual mlp: rows whose condition is dropped use the null label", "[network][residual_mlp][condition]") {
  auto net = make_net("{type: residual_mlp, width: 8, blocks: 1, class_conditional: true}", 3);
  REQUIRE(net->named_parameters().front().first == "class_embedding");
  REQUIRE(net->named_parameters().front().second.shape() == Shape{4, 32});  // 3 classes and the null label
  Rng rng(1);
  const Tensor x = rng.normal({4, 2}), t = rng.uniform({4}, 0, 999);
  Condition a = Condition::from_labels({0, 1, 2, 0}), b = Condition::from_labels({2, 2, 1, 1});
  const Tensor ya = net->forward(Var(x), t, a).value(), yb = net->forward(Var(x), t, b).value();
  REQUIRE(ya(0, 0) != yb(0, 0));
  a.set_null_mask({1, 1, 1, 1});
  b.set_null_mask({1, 1, 1, 1});
  const Tensor na = net->forward(Var(x), t, a).value(), nb = net->forward(Var(x), t, b).value();
  for (std::size_t i = 0; i < na.size(); ++i) REQUIRE(na.data()[i] == nb.data()[i]);
  REQUIRE_THROWS_WITH(net->forward(Var(x), t, Condition()), Catch::Contains("without labels"));
  REQUIRE_THROWS_WITH(net->forward(Var(x), t, Condition::from_labels({0, 1, 3, 0})), Catch::Contains("label 3"));
}

TEST_CASE("residual mlp: it learns a smooth function of x and t", "[network][residual_mlp]") {
  // y = (sin(2 x_0 + t), x_0 x_1 - t) on 256 fixed points, x ~ N(0, I), t ~ U(0, 1): 400 full-batch
  // Adam steps take the mean squared error below a tenth of the targets' variance (untrained it is
  // above it). Measured: variance 0.88, error 1.0 before and 9e-5 after.
  auto net = make_net("{type: residual_mlp, width: 32, blocks: 2, time_embedding: {type: raw}}");
  Rng rng(9);
  const std::size_t n = 256;
  const Tensor x = rng.normal({n, 2}), t = rng.uniform({n});
  Tensor y = Tensor::from_shape({n, 2});
  double var = 0;
  for (std::size_t i = 0; i < n; ++i) {
    y(i, 0) = std::sin(2 * x(i, 0) + t(i));
    y(i, 1) = x(i, 0) * x(i, 1) - t(i);
    var += (y(i, 0) * y(i, 0) + y(i, 1) * y(i, 1)) / (2.0 * n);  // both targets have mean ~0
  }
  Adam adam(net->parameters(), AdamOptions{3e-3});
  const auto mse = [&] { return mean(square(net->forward(Var(x), t, Condition()) - Var(y))); };
  const double before = mse().value().data()[0];
  for (int step = 0; step < 400; ++step) {
    adam.zero_grad();
    mse().backward();
    adam.step();
  }
  const double after = mse().value().data()[0];
  CAPTURE(var, before, after);
  CHECK(before > 0.5 * var);
  CHECK(after < 0.1 * var);
}

TEST_CASE("residual mlp: bad settings fail with the key named", "[network][residual_mlp]") {
  REQUIRE_THROWS_WITH(make_net("{type: residual_mlp, class_conditional: true}", 0), Catch::Contains("class_conditional"));
  REQUIRE_THROWS_WITH(make_net("{type: residual_mlp, time_embedding: {type: sinusoidal, dim: 7}}"), Catch::Contains("time_embedding.dim"));
  REQUIRE_THROWS_WITH(make_net("{type: residual_mlp, time_embedding: {type: learned}}"), Catch::Contains("raw"));
  REQUIRE_THROWS_WITH(make_net("{type: residual_mlp, width: 0}"), Catch::Contains("width"));
  REQUIRE_THROWS_WITH(make_net("{type: residual_mlp, hidden: [3]}"), Catch::Contains("hidden"));
}
