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

#include "diffusion/autodiff.hpp"

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
  std::vector<std::size_t> sa(rank, 0), sb(rank, 0);
  for (std::size_t i = rank, ka = 1, kb = 1; i-- > 0;) {
    sa[i] = as[i] == 1 ? 0 : ka;
    sb[i] = bs[i] == 1 ? 0 : kb;
    ka *= as[i];
    kb *= bs[i];
  }
  const std::size_t inner = os[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  const float* pa = a.data();
  const float* pb = b.data();
  std::vector<std::size_t> idx(rank, 0);
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

// exp(x) in float after Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial
// for e^r, and 2^n written into exponent bits (as two factors, so n = 128 and the subnormal
// range come out right). Within 2 ulp of std::exp, inf/0/NaN where it gives them.
// Why not std::exp: a libm call keeps every loop that makes it scalar, and silu/sigmoid were a
// third of a small MLP's training step. Why bit masks rather than clamping x or `x > 89 ? inf :
// y`: GCC threads those branches (or sinks the arithmetic into them) and then refuses to
// vectorise the loop; with integer min/max and masks it vectorises to 8 lanes (~7x std::exp).
inline float fast_exp(float x) {
  // Round x/ln2 to an integer by adding 1.5 * 2^23: the sum's low mantissa bits hold it.
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  std::int32_t k;
  std::memcpy(&k, &t, sizeof k);
  k -= 0x4B400000;
  float r = x - n * 0.693359375f;  // ln2 split in two so that n ln2 is exact
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  k = k > 128 ? 128 : k;  // beyond these the product overflows to inf or underflows to 0
  k = k < -160 ? -160 : k;
  const std::int32_t k1 = k >> 1, k2 = k - k1;
  const std::int32_t b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  const float y = p * s1 * s2;
  // |x| so large that the rounding trick fails: force inf or 0 (NaN falls through as NaN).
  std::int32_t yb;
  std::memcpy(&yb, &y, sizeof yb);
  const std::int32_t hi = -static_cast<std::int32_t>(x > 89.0f);
  const std::int32_t lo = -static_cast<std::int32_t>(x < -104.0f);
  yb = (yb & ~(hi | lo)) | (0x7F800000 & hi);
  float out;
  std::memcpy(&out, &yb, sizeof out);
  return out;
}

inline float sigmoid_of(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

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
  return pointwise(a, "exp", [](float x) { return fast_exp(x); },
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
  return pointwise(a, "sin", [](float x) { return std::sin(x); },
                   [](float x, float) { return std::cos(x); });
}

Var cos(const Var& a) {
  return pointwise(a, "cos", [](float x) { return std::cos(x); },
                   [](float x, float) { return -std::sin(x); });
}

Var tanh(const Var& a) {
  return pointwise(a, "tanh", [](float x) { return std::tanh(x); },
                   [](float, float y) { return 1.0f - y * y; });
}

Var sigmoid(const Var& a) {
  // 1/(1+exp(-x)) saturates cleanly in float: exp overflows to inf and the result is 0.
  return pointwise(a, "sigmoid", [](float x) { return sigmoid_of(x); },
                   [](float, float y) { return y * (1.0f - y); });
}

Var relu(const Var& a) {
  return pointwise(a, "relu", [](float x) { return x > 0.0f ? x : 0.0f; },
                   [](float x, float) { return x > 0.0f ? 1.0f : 0.0f; });
}

Var silu(const Var& a) {
  // d/dx x s(x) = s (1 + x (1 - s)); s is recomputed rather than stored.
  return pointwise(a, "silu", [](float x) { return x * sigmoid_of(x); },
                   [](float x, float) {
                     const float s = sigmoid_of(x);
                     return s * (1.0f + x * (1.0f - s));
                   });
}

Var gelu(const Var& a) {
  // x Phi(x); derivative Phi(x) + x phi(x).
  return pointwise(a, "gelu", [](float x) { return 0.5f * x * (1.0f + std::erf(x * kInvSqrt2)); },
                   [](float x, float) {
                     const float cdf = 0.5f * (1.0f + std::erf(x * kInvSqrt2));
                     return cdf + x * kInvSqrt2Pi * fast_exp(-0.5f * x * x);
                   });
}

Var softplus(const Var& a) {
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|): never overflows, exact for large |x|.
  return pointwise(a, "softplus",
                   [](float x) { return std::fmax(x, 0.0f) + std::log1p(std::exp(-std::fabs(x))); },
                   [](float x, float) { return sigmoid_of(x); });
}

}  // namespace diffusion
