// The mlp network plugin: configurations, parameter names, and that gradients reach every
// parameter in each conditioning mode.
#include <catch2/catch.hpp>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

using namespace diffusion;

namespace {

std::shared_ptr<Network> make_mlp(const std::string& yaml, int classes = 0) {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_mlp.so");
  Rng rng(3);
  BuildContext ctx{{2}, classes, &rng};
  return registries().networks.create(Config::load_string(yaml).root(), ctx);
}

}  // namespace

TEST_CASE("mlp: the flagship network has the expected names and size", "[network][mlp]") {
  auto net = make_mlp("{type: mlp, hidden: [128, 128, 128], activation: silu, time_embedding: {type: sinusoidal, dim: 32}}");
  const auto params = net->named_parameters();
  REQUIRE(params.front().first == "net.layers.0.weight");
  REQUIRE(params.front().second.shape() == Shape{128, 34});
  // (34*128 + 128) + 2 (128*128 + 128) + (128*2 + 2)
  REQUIRE(net->num_parameters() == 34 * 128 + 128 + 2 * (128 * 128 + 128) + 128 * 2 + 2);
}

TEST_CASE("mlp: every conditioning mode trains every parameter", "[network][mlp]") {
  const std::string yaml = GENERATE(
      std::string("{type: mlp, hidden: [16, 16]}"),
      std::string("{type: mlp, hidden: [16], conditioning: add, time_embedding: {type: fourier, dim: 8, scale: 4}}"),
      std::string("{type: mlp, hidden: [16, 8], class_conditional: true}"),
      std::string("{type: mlp, hidden: [16], conditioning: add, class_conditional: true, activation: gelu}"));
  CAPTURE(yaml);
  auto net = make_mlp(yaml, 3);
  Rng rng(1);
  const std::vector<int> labels = {0, 2, 1, 2, 0};
  const Var y = net->forward(Var(rng.normal({5, 2})), rng.uniform({5}, 0, 999),
                             net->class_conditional() ? Condition::from_labels(labels) : Condition());
  REQUIRE(y.shape() == Shape{5, 2});
  sum(square(y)).backward();
  for (const auto& [name, p] : net->named_parameters()) {
    CAPTURE(name);
    REQUIRE(p.has_grad());
    double norm = 0;
    for (float g : p.grad()) norm += double(g) * g;
    REQUIRE(norm > 0);
  }
}

TEST_CASE("mlp: rows whose condition is dropped use the null label", "[network][mlp][condition]") {
  auto net = make_mlp("{type: mlp, hidden: [16], class_conditional: true}", 3);
  REQUIRE(net->named_parameters().front().first == "class_embedding");
  REQUIRE(net->named_parameters().front().second.shape() == Shape{4, 32});  // 3 classes and the null label
  Rng rng(1);
  const Tensor x = rng.normal({4, 2}), t = rng.uniform({4}, 0, 999);
  Condition a = Condition::from_labels({0, 1, 2, 0}), b = Condition::from_labels({2, 2, 1, 1});
  const Tensor ya = net->forward(Var(x), t, a).value(), yb = net->forward(Var(x), t, b).value();
  REQUIRE(ya(0, 0) != yb(0, 0));  // labels matter
  a.set_null_mask({1, 1, 1, 1});
  b.set_null_mask({1, 1, 1, 1});
  const Tensor na = net->forward(Var(x), t, a).value(), nb = net->forward(Var(x), t, b).value();
  for (std::size_t i = 0; i < na.size(); ++i) REQUIRE(na.data()[i] == nb.data()[i]);  // dropped: labels do not
  REQUIRE_THROWS_WITH(net->forward(Var(x), t, Condition()), Catch::Contains("without labels"));
  REQUIRE_THROWS_WITH(net->forward(Var(x), t, Condition::from_labels({0, 1, 3, 0})), Catch::Contains("label 3"));
}

TEST_CASE("mlp: bad settings fail with the key named", "[network][mlp]") {
  REQUIRE_THROWS_WITH(make_mlp("{type: mlp, class_conditional: true}", 0), Catch::Contains("class_conditional"));
  REQUIRE_THROWS_WITH(make_mlp("{type: mlp, time_embedding: {type: sinusoidal, dim: 7}}"), Catch::Contains("time_embedding.dim"));
  REQUIRE_THROWS_WITH(make_mlp("{type: mlp, activation: swish2}"), Catch::Contains("activation"));
  REQUIRE_THROWS_WITH(make_mlp("{type: mlp, hiden: [3]}"), Catch::Contains("did you mean 'hidden'"));
}
