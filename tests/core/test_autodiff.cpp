// The autodiff machinery: graph order, accumulation, deep graphs, no-grad scope, messages.
#include <catch2/catch.hpp>

#include <pthread.h>

#include <cmath>

#include <string>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"

using namespace diffusion;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;

namespace {

// An identity op that counts how often its backward runs.
Var counted(const Var& x, int& calls) {
  return make_result(x.value(), "counted", {x}, [&calls](Node& self) {
    ++calls;
    accumulate_grad(*self.inputs[0], self.grad);
  });
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("backward visits each node of a diamond once, after all its consumers", "[autodiff]") {
  //      x -> y -> u --\
  //             \-> v --> z = u + v
  int y_calls = 0, u_calls = 0, v_calls = 0;
  Var x(Tensor{1.0f, 2.0f}, true);
  const Var y = counted(x, y_calls);
  const Var u = counted(y, u_calls);
  const Var v = counted(y, v_calls);
  const Var z = sum(u + v);
  z.backward();
  CHECK(y_calls == 1);
  CHECK(u_calls == 1);
  CHECK(v_calls == 1);
  // y ran once with both branches' gradients already summed.
  CHECK(x.grad()(0) == 2.0f);
  CHECK(x.grad()(1) == 2.0f);
}

TEST_CASE("shared subexpressions accumulate gradients", "[autodiff]") {
  Var x(Tensor{0.5f, -1.5f, 2.0f}, true);
  const Var s = x * x;           // used twice below
  const Var z = sum(s * s + s);  // d/dx = (2 s + 1) 2x
  z.backward();
  for (std::size_t i = 0; i < 3; ++i) {
    const float xi = x.value()(i), si = xi * xi;
    CHECK_THAT(x.grad()(i), WithinAbs((2 * si + 1) * 2 * xi, 1e-5));
  }
}

TEST_CASE("repeated backward adds to leaf gradients until zero_grad", "[autodiff]") {
  Var x(Tensor{1.0f, 2.0f}, true);
  sum(x * 3.0f).backward();
  sum(x * 3.0f).backward();
  CHECK(x.grad()(0) == 6.0f);
  x.zero_grad();
  CHECK_FALSE(x.has_grad());
  sum(x * 3.0f).backward();
  CHECK(x.grad()(1) == 3.0f);
}

TEST_CASE("two backward passes through one graph give the sum of their gradients", "[autodiff]") {
  // The nll metric's exact divergence seeds one graph once per coordinate; each pass must see
  // only its own seed at the interior nodes (y and s below), as if the graph were rebuilt.
  Var x(Tensor{0.5f, -1.5f}, true);
  const Var y = x * x;      // interior
  const Var s = sin(y);     // interior; ds/dx = cos(x^2) 2x
  s.backward(Tensor{1.0f, 0.0f});
  const float first = x.grad()(0);
  CHECK_THAT(first, WithinAbs(std::cos(0.25f) * 1.0f, 1e-6));
  CHECK(x.grad()(1) == 0.0f);
  s.backward(Tensor{0.0f, 1.0f});
  CHECK(x.grad()(0) == first);  // unchanged by the second seed
  CHECK_THAT(x.grad()(1), WithinAbs(std::cos(2.25f) * -3.0f, 1e-5));
}

namespace {
// Runs f on a thread with a 1 MiB stack (a typical worker-thread size, an eighth of main's), so
// that recursion proportional to graph depth fails here rather than only in production.
template <class F>
void on_small_stack(F f) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, std::size_t(1) << 20);
  pthread_t thread;
  auto run = [](void* arg) -> void* {
    (*static_cast<F*>(arg))();
    return nullptr;
  };
  REQUIRE(pthread_create(&thread, &attr, run, &f) == 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}
}  // namespace

TEST_CASE("a chain of 100000 ops overflows the stack neither in backward nor on release",
          "[autodiff]") {
  float y_value = 0.0f, x_grad = 0.0f;
  on_small_stack([&] {
    Var x(scalar(0.0f), true);
    {
      Var y = x;
      for (int i = 0; i < 100000; ++i) y = y + 1e-5f;
      y.backward();
      y_value = y.item();
    }  // the whole chain is freed here
    x_grad = x.grad().data()[0];
  });
  CHECK_THAT(y_value, WithinAbs(1.0, 1e-2));
  CHECK(x_grad == 1.0f);
}

TEST_CASE("NoGradScope records nothing and restores the previous state", "[autodiff]") {
  Var w(Tensor{1.0f, 2.0f}, true);
  CHECK(grad_enabled());
  {
    NoGradScope outer;
    CHECK_FALSE(grad_enabled());
    {
      NoGradScope inner;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());  // the inner scope restores "disabled", not "enabled"
    const Var y = sum(exp(w) * w);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.node()->inputs.empty());
    CHECK_FALSE(static_cast<bool>(y.node()->backward));
    CHECK_THAT(y.item(), WithinAbs(std::exp(1.0) + 2 * std::exp(2.0), 1e-4));
    CHECK_THROWS_AS(y.backward(), Error);
  }
  CHECK(grad_enabled());
  CHECK(sum(w * w).requires_grad());
}

TEST_CASE("ops on inputs without requires_grad record nothing", "[autodiff]") {
  const Var a(Tensor{1.0f, 2.0f}), b(Tensor{3.0f, 4.0f});
  const Var y = matmul(reshape(a, {1, 2}), reshape(b, {2, 1}));
  CHECK_FALSE(y.requires_grad());
  CHECK(y.node()->inputs.empty());
  CHECK(y.item() == 11.0f);
}

TEST_CASE("backward on a non-scalar result needs a seed", "[autodiff]") {
  Var x(Tensor{1.0f, 2.0f, 3.0f}, true);
  const Var y = x * 2.0f;
  CHECK_THAT(error_of([&] { y.backward(); }), Contains("one-element"));
  CHECK_THAT(error_of([&] { y.backward(Tensor{1.0f, 1.0f}); }), Contains("seed shape"));
  y.backward(Tensor{1.0f, 0.0f, -1.0f});
  CHECK(x.grad()(0) == 2.0f);
  CHECK(x.grad()(1) == 0.0f);
  CHECK(x.grad()(2) == -2.0f);
}

TEST_CASE("shape errors name the op and both shapes", "[autodiff]") {
  const Var a(zeros({3, 4})), b(zeros({5})), c(zeros({5, 2})), w(zeros({5, 6}));
  struct Case {
    std::string message;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {error_of([&] { add(a, b); }), {"add", "(3, 4)", "(5,)"}},
      {error_of([&] { sub(a, b); }), {"sub", "(3, 4)", "(5,)"}},
      {error_of([&] { mul(a, c); }), {"mul", "(3, 4)", "(5, 2)"}},
      {error_of([&] { div(c, a); }), {"div", "(5, 2)", "(3, 4)"}},
      {error_of([&] { matmul(a, c); }), {"matmul", "(3, 4)", "(5, 2)", "incompatible"}},
      {error_of([&] { matmul(a, b); }), {"matmul", "(3, 4)", "(5,)"}},
      {error_of([&] { matmul(Var(zeros({2, 3, 4})), Var(zeros({3, 4, 5}))); }),
       {"matmul", "(2, 3, 4)", "(3, 4, 5)"}},
      {error_of([&] { linear(a, w, Var()); }), {"linear", "(3, 4)", "(5, 6)"}},
      {error_of([&] { linear(c, Var(zeros({3, 2})), Var(zeros({4}))); }),
       {"linear", "(4,)", "(3, 2)"}},
      {error_of([&] { concat({a, c}, 0); }), {"concat", "(3, 4)", "(5, 2)"}},
      {error_of([&] { reshape(a, {5, -1}); }), {"reshape", "(3, 4)", "(5, -1)"}},
      {error_of([&] { reshape(a, {-1, -1}); }), {"reshape", "(3, 4)"}},
      {error_of([&] { permute(a, {0, 0}); }), {"permute", "(3, 4)"}},
      {error_of([&] { transpose(b); }), {"transpose", "(5,)"}},
      {error_of([&] { slice(a, 1, 2, 5); }), {"slice", "(3, 4)"}},
      {error_of([&] { index_select(a, 0, {0, 3}); }), {"index_select", "(3, 4)", "3"}},
      {error_of([&] { sum(a, {2}); }), {"sum", "axis 2", "(3, 4)"}},
      {error_of([&] { mean(a, {0, -2}); }), {"mean", "(3, 4)"}},
      {error_of([&] { softmax(a, -3); }), {"softmax", "(3, 4)"}},
      {error_of([&] { layer_norm(a, Var(zeros({3})), Var()); }), {"layer_norm", "(3,)", "(3, 4)"}},
      {error_of([&] { mse_loss(a, c); }), {"mse_loss", "(3, 4)", "(5, 2)"}},
      {error_of([&] { pseudo_huber_loss(a, Var(zeros({4})), 1.0f); }),
       {"pseudo_huber_loss", "(3, 4)", "(4,)"}},
  };
  for (const Case& c : cases)
    for (const std::string& e : c.expected) {
      CAPTURE(c.message);
      CHECK_THAT(c.message, Contains(e));
    }
}
