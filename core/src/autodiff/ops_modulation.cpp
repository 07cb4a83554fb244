// Feature-wise modulation y = x (1 + scale) + shift, one (scale, shift) per sample and channel
// computed from a conditioning vector: FiLM (Perez et al. 2018), the U-Net's scale-shift norm
// (Nichol & Dhariwal 2021, sec. 3), DiT's adaLN (Peebles & Xie 2023, sec. 3.2). One fused op
// instead of reshape + broadcast add + broadcast mul: one pass forward, one backward.
// x is seen as (N, outer, C, inner) around the channel axis; (N, C, H, W) has outer = 1 and
// inner = H W, tokens (N, T, C) have outer = T and inner = 1.
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/tensor/parallel.hpp"

namespace diffusion {

Var modulate(const Var& x, const Var& scale, const Var& shift, int channel_axis) {
  const Shape xs = x.shape();
  if (xs.size() < 2)
    throw Error("modulate: input " + shape_str(xs) + " needs a batch and a channel axis");
  const std::size_t axis = normalize_axis(channel_axis, xs, "modulate");
  if (axis == 0) throw Error("modulate: the channel axis cannot be the batch axis 0");
  const std::size_t n = xs[0], c = xs[axis];
  std::size_t outer = 1, inner = 1;
  for (std::size_t i = 1; i < axis; ++i) outer *= xs[i];
  for (std::size_t i = axis + 1; i < xs.size(); ++i) inner *= xs[i];
  for (const Var* v : {&scale, &shift})
    if (v->defined() && shape_of(v->value()) != Shape{n, c})
      throw Error(std::string("modulate: ") + (v == &scale ? "scale " : "shift ") +
                  shape_str(v->value()) + " does not match input " + shape_str(xs) +
                  " with channel axis " + std::to_string(channel_axis) + " (expected (" +
                  std::to_string(n) + ", " + std::to_string(c) + "))");
  Tensor y = Tensor::from_shape(xs);
  const float* px = x.value().data();
  const float* ps = scale.defined() ? scale.value().data() : nullptr;
  const float* pt = shift.defined() ? shift.value().data() : nullptr;
  float* py = y.data();
  const std::size_t per_sample = outer * c * inner;
  parallel_for(n, [&](std::size_t i) {
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t j = 0; j < c; ++j) {
        const float a = 1.0f + (ps ? ps[i * c + j] : 0.0f), b = pt ? pt[i * c + j] : 0.0f;
        const std::size_t off = i * per_sample + (o * c + j) * inner;
        for (std::size_t e = 0; e < inner; ++e) py[off + e] = px[off + e] * a + b;
      }
  });
  return make_result(
      std::move(y), "modulate", {x, scale, shift},
      [n, c, outer, inner, per_sample](Node& self) {
        Node* nx = grad_input(self, 0);
        Node* ns = grad_input(self, 1);
        Node* nt = grad_input(self, 2);
        const float* g = self.grad.data();
        const float* px = self.inputs[0]->value.data();
        const float* ps = self.inputs[1] ? self.inputs[1]->value.data() : nullptr;
        Tensor gx = nx ? Tensor::from_shape(self.value.shape()) : Tensor();
        Tensor gs = ns ? zeros({n, c}) : Tensor();
        Tensor gt = nt ? zeros({n, c}) : Tensor();
        parallel_for(n, [&](std::size_t i) {  // each sample's rows of dscale, dshift are its own
          for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t j = 0; j < c; ++j) {
              const std::size_t off = i * per_sample + (o * c + j) * inner;
              const float* gr = g + off;
              if (nx) {  // dx = dy (1 + scale)
                const float a = 1.0f + (ps ? ps[i * c + j] : 0.0f);
                float* xr = gx.data() + off;
                for (std::size_t e = 0; e < inner; ++e) xr[e] = gr[e] * a;
              }
              if (ns) {  // dscale = sum dy x
                const float* xr = px + off;
                float acc = 0.0f;
                for (std::size_t e = 0; e < inner; ++e) acc += gr[e] * xr[e];
                gs.data()[i * c + j] += acc;
              }
              if (nt) {  // dshift = sum dy
                float acc = 0.0f;
                for (std::size_t e = 0; e < inner; ++e) acc += gr[e];
                gt.data()[i * c + j] += acc;
              }
            }
        });
        if (nx) give_grad(*nx, std::move(gx));
        if (ns) give_grad(*ns, std::move(gs));
        if (nt) give_grad(*nt, std::move(gt));
      });
}

}  // namespace diffusion
