// Reductions (sum, mean) and the softmax family along an axis.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff/autodiff.hpp"
#include "autodiff/axis_view.hpp"

namespace diffusion {
namespace {

// The input shape with reduced axes set to 1 (the keepdims shape); fills `reduced` flags.
Shape kept_shape(const Shape& s, const std::vector<int>& axes, const char* op,
                 Shape& reduced) {
  reduced.assign(s.size(), axes.empty());
  for (int ax : axes) {
    const std::size_t a = normalize_axis(ax, s, op);
    if (reduced[a])
      throw Error(std::string(op) + ": axis " + std::to_string(ax) + " repeated for shape " +
                  shape_str(s));
    reduced[a] = true;
  }
  Shape k = s;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (reduced[i]) k[i] = 1;
  return k;
}

// scale * g broadcast from the keepdims shape `ks` back up to `full` (the adjoint of a sum).
Tensor expand(const Tensor& g, const Shape& ks, const Shape& full, float scale) {
  Tensor out = Tensor::from_shape(full);
  const std::size_t n = out.size();
  if (n == 0) return out;
  float* po = out.data();
  const float* pg = g.data();
  const std::size_t rank = full.size();
  if (rank == 0 || g.size() == 1) {
    std::fill(po, po + n, scale * pg[0]);
    return out;
  }
  // Row by row along the last dimension, with zero strides on reduced dimensions.
  Shape st(rank, 0);
  for (std::size_t i = rank, k = 1; i-- > 0;) {
    st[i] = ks[i] == 1 ? 0 : k;
    k *= ks[i];
  }
  const std::size_t inner = full[rank - 1], is = st[rank - 1];
  Shape idx(rank, 0);
  for (std::size_t row = 0, rows = n / inner; row < rows; ++row) {
    std::size_t off = 0;
    for (std::size_t d = 0; d + 1 < rank; ++d) off += idx[d] * st[d];
    float* orow = po + row * inner;
    for (std::size_t j = 0; j < inner; ++j) orow[j] = scale * pg[off + j * is];
    for (std::size_t d = rank - 1; d-- > 0;) {
      if (++idx[d] < full[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Var reduce(const Var& a, const std::vector<int>& axes, bool keepdims, bool average,
           const char* op) {
  const Tensor& av = a.value();
  const Shape s = shape_of(av);
  Shape reduced;  // 0/1 per axis; inline, so a reduction makes no heap allocation
  const Shape ks = kept_shape(s, axes, op, reduced);
  Shape os;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (keepdims || !reduced[i]) os.push_back(ks[i]);
  // A sum over axes is the adjoint of broadcasting, which sum_to already implements.
  Tensor out = sum_to(av, ks);
  const std::size_t count = numel(s) / std::max<std::size_t>(numel(ks), 1);
  const float scale = average ? 1.0f / static_cast<float>(count) : 1.0f;
  if (average) {
    float* p = out.data();
    for (std::size_t i = 0, n = out.size(); i < n; ++i) p[i] *= scale;
  }
  out.reshape(os);
  return make_result(std::move(out), op, {a}, [ks, s, scale](Node& self) {
    if (Node* in = grad_input(self, 0)) give_grad(*in, expand(self.grad, ks, s, scale));
  });
}

// y = x - logsumexp(x) along the axis when `log_out`, else softmax(x); max-shifted for stability.
Tensor softmax_forward(const Tensor& x, const AxisView& v, bool log_out) {
  Tensor y = Tensor::from_shape(x.shape());
  if (y.size() == 0) return y;
  const float* px = x.data();
  float* py = y.data();
  const std::size_t n = v.n, inner = v.inner;
  std::vector<float> mx(inner), sm(inner);
  for (std::size_t o = 0; o < v.outer; ++o) {
    const float* xb = px + o * n * inner;
    float* yb = py + o * n * inner;
    // Work on whole rows of `inner` contiguous elements, so both axis layouts stream memory.
    std::copy(xb, xb + inner, mx.begin());
    for (std::size_t k = 1; k < n; ++k)
      for (std::size_t i = 0; i < inner; ++i) mx[i] = std::max(mx[i], xb[k * inner + i]);
    std::fill(sm.begin(), sm.end(), 0.0f);
    for (std::size_t k = 0; k < n; ++k)
      for (std::size_t i = 0; i < inner; ++i) {
        const float e = std::exp(xb[k * inner + i] - mx[i]);
        yb[k * inner + i] = e;
        sm[i] += e;
      }
    if (log_out) {
      for (std::size_t i = 0; i < inner; ++i) sm[i] = mx[i] + std::log(sm[i]);
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) yb[k * inner + i] = xb[k * inner + i] - sm[i];
    } else {
      for (std::size_t i = 0; i < inner; ++i) sm[i] = 1.0f / sm[i];
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) yb[k * inner + i] *= sm[i];
    }
  }
  return y;
}

// softmax: dx = y (g - sum(g y)); log_softmax: dx = g - exp(y) sum(g).
Tensor softmax_backward(const Tensor& g, const Tensor& y, const AxisView& v, bool log_out) {
  Tensor dx = Tensor::from_shape(y.shape());
  const float* pg = g.data();
  const float* py = y.data();
  float* pd = dx.data();
  const std::size_t n = v.n, inner = v.inner;
  std::vector<float> acc(inner);
  for (std::size_t o = 0; o < v.outer; ++o) {
    const std::size_t base = o * n * inner;
    const float* gb = pg + base;
    const float* yb = py + base;
    float* db = pd + base;
    std::fill(acc.begin(), acc.end(), 0.0f);
    if (log_out) {
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) acc[i] += gb[k * inner + i];
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i)
          db[k * inner + i] = gb[k * inner + i] - std::exp(yb[k * inner + i]) * acc[i];
    } else {
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i) acc[i] += gb[k * inner + i] * yb[k * inner + i];
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i)
          db[k * inner + i] = yb[k * inner + i] * (gb[k * inner + i] - acc[i]);
    }
  }
  return dx;
}

Var softmax_op(const Var& a, int axis, bool log_out, const char* op) {
  const Tensor& av = a.value();
  const Shape s = shape_of(av);
  const AxisView v = axis_view(s, normalize_axis(axis, s, op));
  return make_result(softmax_forward(av, v, log_out), op, {a}, [v, log_out](Node& self) {
    if (Node* in = grad_input(self, 0))
      give_grad(*in, softmax_backward(self.grad, self.value, v, log_out));
  });
}

}  // namespace

Var sum(const Var& a, std::vector<int> axes, bool keepdims) {
  return reduce(a, axes, keepdims, false, "sum");
}

Var mean(const Var& a, std::vector<int> axes, bool keepdims) {
  return reduce(a, axes, keepdims, true, "mean");
}

Var softmax(const Var& a, int axis) { return softmax_op(a, axis, false, "softmax"); }

Var log_softmax(const Var& a, int axis) { return softmax_op(a, axis, true, "log_softmax"); }

}  // namespace diffusion
