// Fused network ops: layer normalisation and the regression losses. Fusing keeps the backward
// to one pass over the data instead of a chain of elementwise nodes.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"

namespace diffusion {
namespace {

void require_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.shape() != b.shape())
    throw Error(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                " differ (pred and target must have the same shape)");
}

// A loss of d = pred - target: its gradient gp goes to pred and -gp to target (each if wanted).
void give_difference_grads(Node* pred, Node* target, Tensor&& gp) {
  if (target) {
    Tensor gt = Tensor::from_shape(shape_of(gp));
    const float* o = gp.data();
    float* q = gt.data();
    for (std::size_t i = 0, n = gt.size(); i < n; ++i) q[i] = -o[i];
    give_grad(*target, std::move(gt));
  }
  if (pred) give_grad(*pred, std::move(gp));
}

// mean(phi(pred - target)) with phi'(d) given, gradients to both inputs.
template <class Phi, class DPhi>
Var pointwise_loss(const Var& pred, const Var& target, const char* op, Phi phi, DPhi dphi) {
  const Tensor& p = pred.value();
  const Tensor& t = target.value();
  require_same_shape(p, t, op);
  const std::size_t n = p.size();
  const float* pp = p.data();
  const float* pt = t.data();
  double acc = 0.0;  // double: losses average many terms and are logged
  for (std::size_t i = 0; i < n; ++i) acc += phi(pp[i] - pt[i]);
  const float inv_n = 1.0f / static_cast<float>(n);
  return make_result(scalar(static_cast<float>(acc) * inv_n), op, {pred, target},
                     [dphi, inv_n](Node& self) {
                       Node* np = grad_input(self, 0);
                       Node* nt = grad_input(self, 1);
                       const Tensor& p = self.inputs[0]->value;
                       const float* pp = p.data();
                       const float* pt = self.inputs[1]->value.data();
                       const float scale = *self.grad.data() * inv_n;
                       Tensor gp = Tensor::from_shape(p.shape());
                       float* o = gp.data();
                       for (std::size_t i = 0, n = gp.size(); i < n; ++i)
                         o[i] = scale * dphi(pp[i] - pt[i]);
                       give_difference_grads(np, nt, std::move(gp));
                     });
}

// Per row i of a batch (N, ...): mean_j phi(pred_ij - target_ij), shape (N); gradients to both.
// The backward multiplies by g_i / D first, so with a loss that is the mean over rows (1/N) the
// gradient is exactly pointwise_loss's whenever N and D are powers of two.
template <class Phi, class DPhi>
Var per_sample_loss(const Var& pred, const Var& target, const char* op, Phi phi, DPhi dphi) {
  const Tensor& p = pred.value();
  const Tensor& t = target.value();
  require_same_shape(p, t, op);
  if (p.dimension() == 0) throw Error(std::string(op) + ": needs a batch (N, ...), got a scalar");
  const std::size_t rows = p.shape()[0], d = rows ? p.size() / rows : 0;
  Tensor out = Tensor::from_shape({rows});
  const float* pp = p.data();
  const float* pt = t.data();
  for (std::size_t r = 0; r < rows; ++r) {
    double acc = 0.0;
    for (std::size_t j = r * d; j < (r + 1) * d; ++j) acc += phi(pp[j] - pt[j]);
    out(r) = static_cast<float>(acc) / static_cast<float>(d);
  }
  const float inv_d = 1.0f / static_cast<float>(d);
  return make_result(std::move(out), op, {pred, target}, [dphi, inv_d, d](Node& self) {
    Node* np = grad_input(self, 0);
    Node* nt = grad_input(self, 1);
    const Tensor& p = self.inputs[0]->value;
    const float* pp = p.data();
    const float* pt = self.inputs[1]->value.data();
    const float* g = self.grad.data();
    Tensor gp = Tensor::from_shape(p.shape());
    float* o = gp.data();
    for (std::size_t r = 0, rows = self.grad.size(); r < rows; ++r) {
      const float scale = g[r] * inv_d;
      for (std::size_t j = r * d; j < (r + 1) * d; ++j) o[j] = scale * dphi(pp[j] - pt[j]);
    }
    give_difference_grads(np, nt, std::move(gp));
  });
}

}  // namespace

Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps) {
  const Tensor& xv = x.value();
  const Shape xs = shape_of(xv);
  if (xs.empty()) throw Error("layer_norm: needs at least 1 dimension, got shape ()");
  const std::size_t d = xs.back(), rows = numel(xs) / std::max<std::size_t>(d, 1);
  for (const Var* p : {&weight, &bias})
    if (p->defined() && shape_of(p->value()) != Shape{d})
      throw Error(std::string("layer_norm: ") + (p == &weight ? "weight " : "bias ") +
                  shape_str(p->value()) + " does not match input " + shape_str(xs) +
                  " (expected (" + std::to_string(d) + ",))");
  Tensor y = Tensor::from_shape(xs);
  Tensor xhat = Tensor::from_shape(xs);
  std::vector<float> rstd(rows);
  const float* px = xv.data();
  const float* pw = weight.defined() ? weight.value().data() : nullptr;
  const float* pb = bias.defined() ? bias.value().data() : nullptr;
  float* py = y.data();
  float* ph = xhat.data();
  const float inv_d = 1.0f / static_cast<float>(d);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = px + r * d;
    float* hr = ph + r * d;
    float* yr = py + r * d;
    float mu = 0.0f;
    for (std::size_t j = 0; j < d; ++j) mu += xr[j];
    mu *= inv_d;
    float var = 0.0f;  // two passes: no cancellation from E[x^2] - E[x]^2
    for (std::size_t j = 0; j < d; ++j) var += (xr[j] - mu) * (xr[j] - mu);
    const float rs = 1.0f / std::sqrt(var * inv_d + eps);
    rstd[r] = rs;
    for (std::size_t j = 0; j < d; ++j) hr[j] = (xr[j] - mu) * rs;
    for (std::size_t j = 0; j < d; ++j)
      yr[j] = (pw ? hr[j] * pw[j] : hr[j]) + (pb ? pb[j] : 0.0f);
  }
  return make_result(
      std::move(y), "layer_norm", {x, weight, bias},
      [xhat = std::move(xhat), rstd = std::move(rstd), d, rows](Node& self) {
        const float* g = self.grad.data();
        const float* h = xhat.data();
        Node* nx = grad_input(self, 0);
        Node* nw = grad_input(self, 1);
        Node* nb = grad_input(self, 2);
        const float* pw = self.inputs[1] ? self.inputs[1]->value.data() : nullptr;
        if (nx) {
          // dx = rstd (dh - mean(dh) - xhat mean(dh xhat)), with dh = g w.
          Tensor gx = Tensor::from_shape(xhat.shape());
          float* o = gx.data();
          const float inv_d = 1.0f / static_cast<float>(d);
          for (std::size_t r = 0; r < rows; ++r) {
            const float* gr = g + r * d;
            const float* hr = h + r * d;
            float* orow = o + r * d;
            for (std::size_t j = 0; j < d; ++j) orow[j] = pw ? gr[j] * pw[j] : gr[j];
            float m1 = 0.0f, m2 = 0.0f;
            for (std::size_t j = 0; j < d; ++j) {
              m1 += orow[j];
              m2 += orow[j] * hr[j];
            }
            m1 *= inv_d;
            m2 *= inv_d;
            for (std::size_t j = 0; j < d; ++j) orow[j] = rstd[r] * (orow[j] - m1 - hr[j] * m2);
          }
          give_grad(*nx, std::move(gx));
        }
        if (nw || nb) {
          Tensor gw = zeros({d}), gb = zeros({d});
          float* pgw = gw.data();
          float* pgb = gb.data();
          for (std::size_t r = 0; r < rows; ++r) {
            const float* gr = g + r * d;
            const float* hr = h + r * d;
            for (std::size_t j = 0; j < d; ++j) {
              pgw[j] += gr[j] * hr[j];
              pgb[j] += gr[j];
            }
          }
          if (nw) give_grad(*nw, std::move(gw));
          if (nb) give_grad(*nb, std::move(gb));
        }
      });
}

namespace {

/// The squared error d^2 (summed in double) and its derivative 2d.
struct SquaredError {
  double operator()(float d) const { return static_cast<double>(d) * d; }
  static float derivative(float d) { return 2.0f * d; }
};

/// Pseudo-Huber sqrt(d^2 + c^2) - c and its derivative d / sqrt(d^2 + c^2).
struct PseudoHuber {
  PseudoHuber(float c, const char* op) : c(c), c2(static_cast<double>(c) * c), cf2(c * c) {
    if (!(c > 0.0f)) throw Error(std::string(op) + ": c must be positive, got " + std::to_string(c));
  }
  double operator()(float d) const { return std::sqrt(static_cast<double>(d) * d + c2) - c; }
  float derivative(float d) const { return d / std::sqrt(d * d + cf2); }
  float c;
  double c2;
  float cf2;
};

}  // namespace

Var mse_loss(const Var& pred, const Var& target) {
  return pointwise_loss(pred, target, "mse_loss", SquaredError{}, [](float d) { return SquaredError::derivative(d); });
}

Var pseudo_huber_loss(const Var& pred, const Var& target, float c) {
  const PseudoHuber h(c, "pseudo_huber_loss");
  return pointwise_loss(pred, target, "pseudo_huber_loss", h, [h](float d) { return h.derivative(d); });
}

Var mse_per_sample(const Var& pred, const Var& target) {
  return per_sample_loss(pred, target, "mse_per_sample", SquaredError{},
                         [](float d) { return SquaredError::derivative(d); });
}

Var pseudo_huber_per_sample(const Var& pred, const Var& target, float c) {
  const PseudoHuber h(c, "pseudo_huber_per_sample");
  return per_sample_loss(pred, target, "pseudo_huber_per_sample", h, [h](float d) { return h.derivative(d); });
}

}  // namespace diffusion
