// Inverted dropout (Srivastava et al. 2014, with the scaling moved to training time as in
// every modern framework): keep each element with probability 1 - p and divide the kept ones
// by 1 - p, so E[y] = x and evaluation needs no rescaling. The mask (0 or 1 / (1 - p) per
// element) is kept for backward: dx = dy * mask.
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff/ops_image.hpp"

namespace diffusion {

Var dropout(const Var& x, float p, Rng& rng, bool training) {
  if (!(p >= 0.0f && p < 1.0f))
    throw Error("dropout: probability must be in [0, 1), got " + std::to_string(p));
  if (!training || p == 0.0f) return x;
  const Tensor& xv = x.value();
  const float keep_scale = 1.0f / (1.0f - p);
  // One uniform per element, in order: the mask is a function of the stream's state only.
  Tensor mask = Tensor::from_shape(xv.shape());
  float* m = mask.data();
  for (std::size_t i = 0, n = mask.size(); i < n; ++i)
    m[i] = rng.uniform() < p ? 0.0f : keep_scale;
  Tensor y = Tensor::from_shape(xv.shape());
  const float* px = xv.data();
  float* py = y.data();
  for (std::size_t i = 0, n = y.size(); i < n; ++i) py[i] = px[i] * m[i];
  return make_result(std::move(y), "dropout", {x}, [mask = std::move(mask)](Node& self) {
    Node* nx = grad_input(self, 0);
    if (!nx) return;
    Tensor gx = Tensor::from_shape(mask.shape());
    const float* g = self.grad.data();
    const float* m = mask.data();
    float* o = gx.data();
    for (std::size_t i = 0, n = gx.size(); i < n; ++i) o[i] = g[i] * m[i];
    give_grad(*nx, std::move(gx));
  });
}

}  // namespace diffusion
