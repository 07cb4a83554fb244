// Elementwise autodiff ops: arithmetic with numpy broadcasting and pointwise functions.
//
// Kernels are templates over the per-element lambda, so the compiler inlines it into plain
// counted loops over raw pointers (no per-element indirect call). Binary ops take a fast path
// for the layouts small networks produce — equal shapes, a scalar, a trailing "row" (N, D) op (D)
// and a leading "column" (N, D) op (N, 1) — and fall back to index arithmetic for any rank.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "diffusion/autodiff/autodiff.hpp"
#include "autodiff/fast_math.hpp"

namespace diffusion {
namespace {

// x's shape aligned to `rank` dimensions with leading 1s.
Shape aligned(const Tensor& x, std::size_t rank) {
  Shape s(rank, 1);
  const std::size_t off = rank - x.dimension();
  for (std::size_t i = 0; i < x.dimension(); ++i) s[off + i] = x.shape()[i];
  return s;
}

// x (aligned to out) equals out's trailing dimensions and is 1 (or missing) before them:
// every output row of x.size() elements pairs with all of x.
bool is_row(const Shape& xs, const Shape& out) {
  std::size_t i = 0;
  while (i < xs.size() && xs[i] == 1) ++i;
  for (; i < xs.size(); ++i)
    if (xs[i] != out[i]) return false;
  return true;
}

// x (aligned to out) equals out's leading dimensions and is 1 after them: each x element pairs
// with one contiguous block of out.
bool is_column(const Shape& xs, const Shape& out) {
  std::size_t i = 0;
  while (i < xs.size() && xs[i] == out[i]) ++i;
  for (; i < xs.size(); ++i)
    if (xs[i] != 1) return false;
  return true;
}

// out = f(a, b) with a of out's size and b broadcast as a row or column (fast paths).
template <class F>
bool binary_fast(const float* pa, const Tensor& b, const Shape& bs, const Shape& os,
                 std::size_t n, float* po, F f) {
  const float* pb = b.data();
  const std::size_t nb = b.size();
  if (nb == n) {
    for (std::size_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return true;
  }
  if (nb == 1) {
    const float s = pb[0];
    for (std::size_t i = 0; i < n; ++i) po[i] = f(pa[i], s);
    return true;
  }
  if (is_row(bs, os)) {
    for (std::size_t r = 0, rows = n / nb; r < rows; ++r) {
      const float* ar = pa + r * nb;
      float* orow = po + r * nb;
      for (std::size_t j = 0; j < nb; ++j) orow[j] = f(ar[j], pb[j]);
    }
    return true;
  }
  if (is_column(bs, os)) {
    const std::size_t inner = n / nb;
    for (std::size_t r = 0; r < nb; ++r) {
      const float s = pb[r];
      const float* ar = pa + r * inner;
      float* orow = po + r * inner;
      for (std::size_t j = 0; j < inner; ++j) orow[j] = f(ar[j], s);
    }
    return true;
  }
  return false;
}

// f(a, b) elementwise over the numpy broadcast of a and b.
template <class F>
Tensor binary(const Tensor& a, const Tensor& b, const char* op, F f) {
  const Shape os = broadcast_shapes(shape_of(a), shape_of(b), op);
  Tensor out = Tensor::from_shape(os);
  const std::size_t n = out.size();
  if (n == 0) return out;
  const std::size_t rank = os.size();
  const Shape as = aligned(a, rank), bs = aligned(b, rank);
  float* po = out.data();
  if (a.size() == n && binary_fast(a.data(), b, bs, os, n, po, f)) return out;
  if (b.size() == n &&
      binary_fast(b.data(), a, as, os, n, po, [&f](float y, float x) { return f(x, y); }))
    return out;
  // General case: walk the output row by row (rows along the last dimension), keeping each
  // operand's offset with zero strides on its broadcast dimensions.
  Shape sa(rank, 0), sb(rank, 0);
  for (std::size_t i = rank, ka = 1, kb = 1; i-- > 0;) {
    sa[i] = as[i] == 1 ? 0 : ka;
    sb[i] = bs[i] == 1 ? 0 : kb;
    ka *= as[i];
    kb *= bs[i];
  }
  const std::size_t inner = os[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  const float* pa = a.data();
  const float* pb = b.data();
  Shape idx(rank, 0);
  for (std::size_t row = 0, rows = n / inner; row < rows; ++row) {
    std::size_t oa = 0, ob = 0;
    for (std::size_t d = 0; d + 1 < rank; ++d) {
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    float* orow = po + row * inner;
    for (std::size_t j = 0; j < inner; ++j) orow[j] = f(pa[oa + j * ia], pb[ob + j * ib]);
    for (std::size_t d = rank - 1; d-- > 0;) {
      if (++idx[d] < os[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

template <class F>
Tensor map(const Tensor& x, F f) {
  Tensor y = Tensor::from_shape(x.shape());
  const float* px = x.data();
  float* py = y.data();
  for (std::size_t i = 0, n = x.size(); i < n; ++i) py[i] = f(px[i]);
  return y;
}

// Backward of a pointwise op: dx = g * d(x, y) with d the derivative from input and output.
template <class D>
void pointwise_backward(Node& self, D d) {
  Node* in = grad_input(self, 0);
  if (!in) return;
  Tensor gx = Tensor::from_shape(self.value.shape());
  const float* g = self.grad.data();
  const float* x = in->value.data();
  const float* y = self.value.data();
  float* o = gx.data();
  for (std::size_t i = 0, n = gx.size(); i < n; ++i) o[i] = g[i] * d(x[i], y[i]);
  give_grad(*in, std::move(gx));
}

// A pointwise op from its forward f(x) and derivative d(x, y).
template <class F, class D>
Var pointwise(const Var& a, const char* op, F f, D d) {
  return make_result(map(a.value(), f), op, {a},
                     [d](Node& self) { pointwise_backward(self, d); });
}

// An activation op through the shared kernels of fast_math (also used by the fused linear).
Var activation(const Var& a, Activation act, const char* op) {
  const Tensor& x = a.value();
  Tensor y = Tensor::from_shape(x.shape());
  fast::activate(act, x.data(), y.data(), x.size());
  return make_result(std::move(y), op, {a}, [act](Node& self) {
    Node* in = grad_input(self, 0);
    if (!in) return;
    Tensor gx = Tensor::from_shape(self.value.shape());
    fast::activate_backward(act, self.grad.data(), in->value.data(), self.value.data(), gx.data(),
                            gx.size());
    give_grad(*in, std::move(gx));
  });
}

// sin (quadrant 0) or cos (quadrant 1) of every element: the vectorised kernel, then libm for
// the rare arguments beyond its range.
Tensor trig(const Tensor& x, std::int32_t quadrant) {
  Tensor y = Tensor::from_shape(x.shape());
  const float* px = x.data();
  float* py = y.data();
  const std::size_t n = x.size();
  for (std::size_t i = 0; i < n; ++i) py[i] = fast::sin_quadrant(px[i], quadrant);
  for (std::size_t i = 0; i < n; ++i)
    if (!(std::fabs(px[i]) <= fast::kTrigMaxArg)) py[i] = quadrant ? std::cos(px[i]) : std::sin(px[i]);
  return y;
}

}  // namespace

// ---- Arithmetic ----

Var add(const Var& a, const Var& b) {
  return make_result(binary(a.value(), b.value(), "add", [](float x, float y) { return x + y; }),
                     "add", {a, b}, [](Node& self) {
                       // accumulate_grad sums over broadcast dimensions.
                       if (Node* na = grad_input(self, 0)) accumulate_grad(*na, self.grad);
                       if (Node* nb = grad_input(self, 1)) accumulate_grad(*nb, self.grad);
                     });
}

Var sub(const Var& a, const Var& b) {
  return make_result(binary(a.value(), b.value(), "sub", [](float x, float y) { return x - y; }),
                     "sub", {a, b}, [](Node& self) {
                       if (Node* na = grad_input(self, 0)) accumulate_grad(*na, self.grad);
                       if (Node* nb = grad_input(self, 1))
                         give_grad(*nb, map(self.grad, [](float g) { return -g; }));
                     });
}

Var mul(const Var& a, const Var& b) {
  return make_result(
      binary(a.value(), b.value(), "mul", [](float x, float y) { return x * y; }), "mul", {a, b},
      [](Node& self) {
        const auto times = [](float g, float v) { return g * v; };
        Node* na = grad_input(self, 0);
        Node* nb = grad_input(self, 1);
        if (na) give_grad(*na, binary(self.grad, self.inputs[1]->value, "mul", times));
        if (nb) give_grad(*nb, binary(self.grad, self.inputs[0]->value, "mul", times));
      });
}

Var div(const Var& a, const Var& b) {
  return make_result(
      binary(a.value(), b.value(), "div", [](float x, float y) { return x / y; }), "div", {a, b},
      [](Node& self) {
        const Tensor& bv = self.inputs[1]->value;
        if (Node* na = grad_input(self, 0))
          give_grad(*na, binary(self.grad, bv, "div", [](float g, float y) { return g / y; }));
        if (Node* nb = grad_input(self, 1)) {
          // d(a/b)/db = -(a/b)/b: reuse the output instead of a and b^2.
          Tensor gq = Tensor::from_shape(self.value.shape());
          const float* g = self.grad.data();
          const float* q = self.value.data();
          float* o = gq.data();
          for (std::size_t i = 0, n = gq.size(); i < n; ++i) o[i] = g[i] * q[i];
          give_grad(*nb, binary(gq, bv, "div", [](float t, float y) { return -t / y; }));
        }
      });
}

Var neg(const Var& a) {
  return pointwise(a, "neg", [](float x) { return -x; }, [](float, float) { return -1.0f; });
}

Var add(const Var& a, float b) {
  return make_result(map(a.value(), [b](float x) { return x + b; }), "add_scalar", {a},
                     [](Node& self) {
                       if (Node* na = grad_input(self, 0)) accumulate_grad(*na, self.grad);
                     });
}

Var mul(const Var& a, float b) {
  return pointwise(a, "mul_scalar", [b](float x) { return x * b; },
                   [b](float, float) { return b; });
}

// ---- Pointwise functions ----

Var exp(const Var& a) {
  return pointwise(a, "exp", [](float x) { return fast::exp(x); },
                   [](float, float y) { return y; });
}

Var log(const Var& a) {
  return pointwise(a, "log", [](float x) { return std::log(x); },
                   [](float x, float) { return 1.0f / x; });
}

Var sqrt(const Var& a) {
  return pointwise(a, "sqrt", [](float x) { return std::sqrt(x); },
                   [](float, float y) { return 0.5f / y; });
}

Var pow(const Var& a, float p) {
  return pointwise(a, "pow", [p](float x) { return std::pow(x, p); },
                   [p](float x, float) { return p * std::pow(x, p - 1.0f); });
}

Var square(const Var& a) {
  return pointwise(a, "square", [](float x) { return x * x; },
                   [](float x, float) { return 2.0f * x; });
}

Var abs(const Var& a) {
  return pointwise(a, "abs", [](float x) { return std::fabs(x); },
                   [](float x, float) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); });
}

Var sin(const Var& a) {
  return make_result(trig(a.value(), 0), "sin", {a}, [](Node& self) {
    Node* in = grad_input(self, 0);
    if (!in) return;
    Tensor d = trig(in->value, 1);  // cos x
    float* pd = d.data();
    const float* g = self.grad.data();
    for (std::size_t i = 0, n = d.size(); i < n; ++i) pd[i] *= g[i];
    give_grad(*in, std::move(d));
  });
}

Var cos(const Var& a) {
  return make_result(trig(a.value(), 1), "cos", {a}, [](Node& self) {
    Node* in = grad_input(self, 0);
    if (!in) return;
    Tensor d = trig(in->value, 0);  // sin x
    float* pd = d.data();
    const float* g = self.grad.data();
    for (std::size_t i = 0, n = d.size(); i < n; ++i) pd[i] *= -g[i];
    give_grad(*in, std::move(d));
  });
}

Var tanh(const Var& a) { return activation(a, Activation::tanh, "tanh"); }

Var sigmoid(const Var& a) {
  // 1/(1+exp(-x)) saturates cleanly in float: exp overflows to inf and the result is 0.
  return activation(a, Activation::sigmoid, "sigmoid");
}

Var relu(const Var& a) { return activation(a, Activation::relu, "relu"); }

Var silu(const Var& a) { return activation(a, Activation::silu, "silu"); }

Var gelu(const Var& a) { return activation(a, Activation::gelu, "gelu"); }

Var softplus(const Var& a) {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): never overflows, exact for large |x|.
  return pointwise(a, "softplus",
                   [](float x) { return std::fmax(x, 0.0f) + std::log1p(std::exp(-std::fabs(x))); },
                   [](float x, float) { return fast::sigmoid(x); });
}

}  // namespace diffusion
