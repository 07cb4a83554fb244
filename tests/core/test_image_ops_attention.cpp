// attention: finite-difference gradients over heads, token counts and cross-attention; forward
// and gradients against a direct loop over softmax(Q K^T / sqrt(d)) V (in double) to 1e-5
// relative; the MultiHeadAttention module against the same op composed by hand.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/grad_check.hpp"
#include "core/nn_test_helpers.hpp"
#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/nn/image_layers.hpp"

using namespace diffusion;
using grad_check::check_gradients;
using grad_check::normal;

namespace {

struct AttnCase {
  std::size_t n, tq, tk, dk, dv, heads;
};

std::string str(const AttnCase& a) {
  return "n " + std::to_string(a.n) + " tq " + std::to_string(a.tq) + " tk " +
         std::to_string(a.tk) + " dk " + std::to_string(a.dk) + " dv " + std::to_string(a.dv) +
         " heads " + std::to_string(a.heads);
}

// The definition in double, per sample i, head h and query t: p_j = softmax_j(q_t . k_j / sqrt(d))
// over the head's features, o_t = sum_j p_j v_j; and the gradients of sum(o * g):
// dv_j += p_j g_t, dp_j = g_t . v_j, ds_j = p_j (dp_j - sum_l p_l dp_l),
// dq_t = sum_j ds_j k_j / sqrt(d), dk_j += ds_j q_t / sqrt(d).
struct NaiveAttention {
  std::vector<double> o, dq, dk, dv;
  NaiveAttention(const AttnCase& a, const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& g) {
    const std::size_t hk = a.dk / a.heads, hv = a.dv / a.heads;
    const double scale = 1.0 / std::sqrt(double(hk));
    o.assign(a.n * a.tq * a.dv, 0.0);
    dq.assign(q.size(), 0.0), dk.assign(k.size(), 0.0), dv.assign(v.size(), 0.0);
    const auto Q = [&](std::size_t i, std::size_t t, std::size_t f) { return (i * a.tq + t) * a.dk + f; };
    const auto K = [&](std::size_t i, std::size_t j, std::size_t f) { return (i * a.tk + j) * a.dk + f; };
    const auto V = [&](std::size_t i, std::size_t j, std::size_t f) { return (i * a.tk + j) * a.dv + f; };
    const auto O = [&](std::size_t i, std::size_t t, std::size_t f) { return (i * a.tq + t) * a.dv + f; };
    std::vector<double> p(a.tk), dp(a.tk);
    for (std::size_t i = 0; i < a.n; ++i)
      for (std::size_t h = 0; h < a.heads; ++h)
        for (std::size_t t = 0; t < a.tq; ++t) {
          double mx = -INFINITY;
          for (std::size_t j = 0; j < a.tk; ++j) {
            double s = 0.0;
            for (std::size_t f = h * hk; f < (h + 1) * hk; ++f)
              s += double(q.data()[Q(i, t, f)]) * k.data()[K(i, j, f)];
            p[j] = s * scale;
            mx = std::max(mx, p[j]);
          }
          double z = 0.0;
          for (double& pj : p) z += (pj = std::exp(pj - mx));
          for (double& pj : p) pj /= z;
          double pdp = 0.0;
          for (std::size_t j = 0; j < a.tk; ++j) {
            dp[j] = 0.0;
            for (std::size_t f = h * hv; f < (h + 1) * hv; ++f) {
              const double gf = g.data()[O(i, t, f)];
              o[O(i, t, f)] += p[j] * v.data()[V(i, j, f)];
              dv[V(i, j, f)] += p[j] * gf;
              dp[j] += gf * v.data()[V(i, j, f)];
            }
            pdp += p[j] * dp[j];
          }
          for (std::size_t j = 0; j < a.tk; ++j) {
            const double ds = p[j] * (dp[j] - pdp) * scale;
            for (std::size_t f = h * hk; f < (h + 1) * hk; ++f) {
              dq[Q(i, t, f)] += ds * k.data()[K(i, j, f)];
              dk[K(i, j, f)] += ds * q.data()[Q(i, t, f)];
            }
          }
        }
  }
};

double relative_error(const Tensor& a, const std::vector<double>& ref) {
  REQUIRE(a.size() == ref.size());
  double err = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::fabs(a.data()[i] - ref[i]));
    scale = std::max(scale, std::fabs(ref[i]));
  }
  return err / scale;
}

}  // namespace

TEST_CASE("attention gradients match finite differences", "[image_ops][grad]") {
  const AttnCase a = GENERATE(values<AttnCase>({
      {2, 5, 5, 8, 8, 1},   // one head
      {2, 4, 4, 8, 8, 2},   // two heads
      {1, 3, 6, 6, 9, 3},   // cross-attention: more keys than queries, dv != dk
      {2, 7, 2, 4, 4, 4},   // one feature per head... times 4 heads, two keys
  }));
  CAPTURE(str(a));
  // Scores of order 1, so the softmax is neither flat nor saturated.
  check_gradients(
      [&](const std::vector<Var>& v) { return attention(v[0], v[1], v[2], a.heads); },
      {normal({a.n, a.tq, a.dk}, 1), normal({a.n, a.tk, a.dk}, 2), normal({a.n, a.tk, a.dv}, 3)});
}

TEST_CASE("self-attention with one input as q and k and v sums the three gradients",
          "[image_ops][grad]") {
  check_gradients([](const std::vector<Var>& v) { return attention(v[0], v[0], v[0], 2); },
                  {normal({2, 5, 6}, 4)});
}

TEST_CASE("attention and its gradients match the direct loops to 1e-5 relative", "[image_ops]") {
  const AttnCase a = GENERATE(values<AttnCase>({
      {3, 49, 49, 64, 64, 4},   // a U-Net's 7x7 attention, 4 heads of 16
      {2, 33, 17, 24, 40, 8},   // cross-attention, odd token counts
      {2, 64, 64, 32, 32, 1},   // one head
  }));
  CAPTURE(str(a));
  const Tensor q = normal({a.n, a.tq, a.dk}, 5), k = normal({a.n, a.tk, a.dk}, 6);
  const Tensor v = normal({a.n, a.tk, a.dv}, 7), g = normal({a.n, a.tq, a.dv}, 8);
  Var qv(q, true), kv(k, true), vv(v, true);
  const Var o = attention(qv, kv, vv, a.heads);
  o.backward(g);
  const NaiveAttention ref(a, q, k, v, g);
  CHECK(relative_error(o.value(), ref.o) < 1e-5);
  CHECK(relative_error(qv.grad(), ref.dq) < 1e-5);
  CHECK(relative_error(kv.grad(), ref.dk) < 1e-5);
  CHECK(relative_error(vv.grad(), ref.dv) < 1e-5);
}

TEST_CASE("attention survives large scores and gives the same values without a graph",
          "[image_ops]") {
  // Scores near 1e3: a softmax without the max shift would overflow to inf / inf = NaN.
  Tensor q = normal({1, 4, 8}, 9);
  for (float& e : q) e *= 60.0f;
  const Tensor k = normal({1, 6, 8}, 10), v = normal({1, 6, 8}, 11);
  const Var with_graph = attention(Var(q, true), Var(k), Var(v), 2);
  Tensor without;
  {
    NoGradScope no_grad;
    without = attention(Var(q), Var(k), Var(v), 2).value();
  }
  for (float e : with_graph.value()) REQUIRE(std::isfinite(e));
  CHECK(testing::bitwise_equal(with_graph.value(), without));
}

TEST_CASE("attention rejects mismatched shapes and names them", "[image_ops]") {
  using Catch::Matchers::Contains;
  const auto message = [](const Shape& q, const Shape& k, const Shape& v, std::size_t heads) {
    return testing::error_of(
        [&] { attention(Var(zeros(q)), Var(zeros(k)), Var(zeros(v)), heads); });
  };
  CHECK_THAT(message({2, 3, 8}, {2, 4, 8}, {2, 4, 8}, 3), Contains("heads must divide"));
  CHECK_THAT(message({2, 3, 8}, {2, 4, 6}, {2, 4, 8}, 2), Contains("same feature size"));
  CHECK_THAT(message({2, 3, 8}, {2, 4, 8}, {2, 5, 8}, 2), Contains("same number of tokens"));
  CHECK_THAT(message({2, 3, 8}, {1, 4, 8}, {1, 4, 8}, 2), Contains("batch sizes differ"));
  CHECK_THAT(message({2, 8}, {2, 4, 8}, {2, 4, 8}, 2), Contains("q (2, 8)"));
}

TEST_CASE("MultiHeadAttention is its out projection of attention over its q k v projections",
          "[image_ops][nn]") {
  Rng rng(12);
  MultiHeadAttention mha(8, 2, rng);
  std::vector<std::string> names;
  for (const auto& e : mha.named_parameters()) names.push_back(e.first);
  CHECK(names == std::vector<std::string>{"q.weight", "q.bias", "k.weight", "k.bias",
                                          "v.weight", "v.bias", "out.weight", "out.bias"});
  const auto param = [&](const std::string& name) {
    for (const auto& e : mha.named_parameters())
      if (e.first == name) return e.second;
    FAIL("no parameter " << name);
    return Var();
  };
  const auto proj = [&](const std::string& p, const Var& x) {
    return linear(x, param(p + ".weight"), param(p + ".bias"));
  };
  const Var x(normal({3, 5, 8}, 13)), c(normal({3, 7, 8}, 14));
  const Tensor self_ref = proj("out", attention(proj("q", x), proj("k", x), proj("v", x), 2)).value();
  const Tensor cross_ref = proj("out", attention(proj("q", x), proj("k", c), proj("v", c), 2)).value();
  CHECK(testing::bitwise_equal(mha.forward(x).value(), self_ref));
  CHECK(testing::bitwise_equal(mha.forward(x, c).value(), cross_ref));

  // On an image the pixels are the tokens: (N, C, H, W) -> (N, H W, C) and back.
  const Tensor img = normal({2, 8, 3, 4}, 15);
  const Var tokens = permute(reshape(Var(img), {2, 8, 12}), {0, 2, 1});
  const Tensor image_ref =
      reshape(permute(mha.forward(tokens), {0, 2, 1}), {2, 8, 3, 4}).value();
  CHECK(testing::bitwise_equal(mha.forward_image(Var(img)).value(), image_ref));

  // A zero-initialised out projection makes the block output exactly zero.
  MultiHeadAttention zero_out(8, 4, rng, true, Init::zeros);
  const Var zero = zero_out.forward(x);
  for (float e : zero.value()) REQUIRE(e == 0.0f);
  CHECK_THAT(testing::error_of([&] { MultiHeadAttention(8, 3, rng); }),
             Catch::Matchers::Contains("3 heads must divide dim 8"));
  CHECK_THAT(testing::error_of([&] { mha.forward(Var(zeros({3, 5, 6}))); }),
             Catch::Matchers::Contains("(3, 5, 6)"));
}

TEST_CASE("MultiHeadAttention gradients reach the input and every projection",
          "[image_ops][nn][grad]") {
  Rng rng(16);
  MultiHeadAttention mha(6, 3, rng);
  const std::vector<Var> params = mha.parameters();
  std::vector<Tensor> in = {normal({2, 4, 6}, 17)};
  for (const Var& p : params) in.push_back(p.value());
  // The module's computation with its parameters replaced by leaves, in parameters() order
  // (q, k, v, out; weight then bias).
  const auto by_hand = [](const std::vector<Var>& v) {
    const auto lin = [&](std::size_t i, const Var& x) { return linear(x, v[1 + 2 * i], v[2 + 2 * i]); };
    return lin(3, attention(lin(0, v[0]), lin(1, v[0]), lin(2, v[0]), 3));
  };
  check_gradients(by_hand, in);
  // The module's own gradients are those of the checked computation.
  const Tensor seed = normal({2, 4, 6}, 18);
  std::vector<Var> leaves;
  for (const Tensor& t : in) leaves.emplace_back(t, true);
  by_hand(leaves).backward(seed);
  Var x(in[0], true);
  mha.forward(x).backward(seed);
  CHECK(testing::bitwise_equal(x.grad(), leaves[0].grad()));
  for (std::size_t i = 0; i < params.size(); ++i)
    CHECK(testing::bitwise_equal(params[i].grad(), leaves[1 + i].grad()));
}
