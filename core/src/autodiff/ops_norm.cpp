// Group normalisation (Wu & He 2018, eq. 1-3): per sample, the channels are split into G
// groups and each group's C/G x (spatial) elements are normalised to mean 0 and variance 1
// (biased), then every channel gets its own scale and shift:
//   y = (x - mu_g) / sqrt(var_g + eps) * w_c + b_c.
// In NCHW a group is one contiguous run of memory, so each (sample, group) is one task.
// Only mu and 1/sigma are kept for backward (x-hat is recomputed from the input, which the
// graph holds anyway), so a U-Net's many norms cost no extra activation memory. Backward per
// group, with dh = dy w_c: dx = (dh - mean(dh) - x-hat mean(dh x-hat)) / sigma.
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/tensor/parallel.hpp"

namespace diffusion {

Var group_norm(const Var& x, std::size_t groups, const Var& weight, const Var& bias, float eps) {
  const Tensor& xv = x.value();
  const Shape xs = shape_of(xv);
  if (xs.size() < 2 || groups == 0 || xs[1] % groups != 0)
    throw Error("group_norm: input " + shape_str(xs) + " with " + std::to_string(groups) +
                " groups: expected (N, C, ...) with C divisible by the groups");
  if (!(eps > 0.0f)) throw Error("group_norm: eps must be > 0, got " + std::to_string(eps));
  const std::size_t n = xs[0], c = xs[1], spatial = numel(xs) / std::max<std::size_t>(n * c, 1);
  for (const Var* p : {&weight, &bias})
    if (p->defined() && shape_of(p->value()) != Shape{c})
      throw Error(std::string("group_norm: ") + (p == &weight ? "weight " : "bias ") +
                  shape_str(p->value()) + " does not match input " + shape_str(xs) +
                  " (expected (" + std::to_string(c) + ",))");
  const std::size_t cg = c / groups, len = cg * spatial;  // channels and elements per group
  Tensor y = Tensor::from_shape(xs);
  std::vector<float> mean(n * groups), rstd(n * groups);
  const float* px = xv.data();
  const float* pw = weight.defined() ? weight.value().data() : nullptr;
  const float* pb = bias.defined() ? bias.value().data() : nullptr;
  float* py = y.data();
  parallel_for(n * groups, [&](std::size_t task) {
    const float* xg = px + task * len;
    // Two passes in double: a group holds thousands of elements, and E[x^2] - E[x]^2 cancels.
    double s = 0.0;
    for (std::size_t i = 0; i < len; ++i) s += xg[i];
    const double mu = s / double(len);
    double ss = 0.0;
    for (std::size_t i = 0; i < len; ++i) ss += (xg[i] - mu) * (xg[i] - mu);
    const float m = static_cast<float>(mu);
    const float r = static_cast<float>(1.0 / std::sqrt(ss / double(len) + eps));
    mean[task] = m, rstd[task] = r;
    const std::size_t c0 = (task % groups) * cg;
    float* yg = py + task * len;
    for (std::size_t j = 0; j < cg; ++j) {
      // y = x-hat w + b folded into one multiply-add per element: x a + (b - mu a), a = r w.
      const float a = pw ? r * pw[c0 + j] : r;
      const float b = (pb ? pb[c0 + j] : 0.0f) - m * a;
      const float* xc = xg + j * spatial;
      float* yc = yg + j * spatial;
      for (std::size_t i = 0; i < spatial; ++i) yc[i] = xc[i] * a + b;
    }
  });
  return make_result(
      std::move(y), "group_norm", {x, weight, bias},
      [n, c, groups, cg, spatial, len, mean = std::move(mean),
       rstd = std::move(rstd)](Node& self) {
        Node* nx = grad_input(self, 0);
        Node* nw = grad_input(self, 1);
        Node* nb = grad_input(self, 2);
        const float* g = self.grad.data();
        const float* px = self.inputs[0]->value.data();
        const float* pw = self.inputs[1] ? self.inputs[1]->value.data() : nullptr;
        Tensor gx = nx ? Tensor::from_shape(self.value.shape()) : Tensor();
        // Per (sample, channel) sums of dy x-hat and dy, added over samples afterwards in order.
        std::vector<float> dw_parts(nw ? n * c : 0), db_parts(nb ? n * c : 0);
        parallel_for(n * groups, [&](std::size_t task) {
          const std::size_t c0 = (task % groups) * cg, row = (task / groups) * c + c0;
          const float* xg = px + task * len;
          const float* gg = g + task * len;
          const float m = mean[task], r = rstd[task];
          double m1 = 0.0, m2 = 0.0;  // sums of dh and dh x-hat over the group
          for (std::size_t j = 0; j < cg; ++j) {
            const float w = pw ? pw[c0 + j] : 1.0f;
            const float* xc = xg + j * spatial;
            const float* gc = gg + j * spatial;
            float sg = 0.0f, sgh = 0.0f;
            for (std::size_t i = 0; i < spatial; ++i) {
              sg += gc[i];
              sgh += gc[i] * ((xc[i] - m) * r);
            }
            if (nw) dw_parts[row + j] = sgh;
            if (nb) db_parts[row + j] = sg;
            m1 += double(w) * sg;
            m2 += double(w) * sgh;
          }
          if (!nx) return;
          const float a1 = static_cast<float>(m1 / double(len));
          const float a2 = static_cast<float>(m2 / double(len));
          float* og = gx.data() + task * len;
          for (std::size_t j = 0; j < cg; ++j) {
            const float w = pw ? pw[c0 + j] : 1.0f;
            const float* xc = xg + j * spatial;
            const float* gc = gg + j * spatial;
            float* oc = og + j * spatial;
            for (std::size_t i = 0; i < spatial; ++i) {
              const float h = (xc[i] - m) * r;
              oc[i] = r * (gc[i] * w - a1 - h * a2);
            }
          }
        });
        if (nx) give_grad(*nx, std::move(gx));
        const auto channel_sums = [n, c](const std::vector<float>& parts) {
          Tensor t = zeros({c});
          for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < c; ++j) t.data()[j] += parts[i * c + j];
          return t;
        };
        if (nw) give_grad(*nw, channel_sums(dw_parts));
        if (nb) give_grad(*nb, channel_sums(db_parts));
      });
}

}  // namespace diffusion
