// Changes of resolution for U-Nets (Ronneberger et al. 2015; Ho et al. 2020, appendix B):
// nearest-neighbour upsampling on the way up, average pooling on the way down. Each is a fixed
// linear map, so its backward is the transposed map: upsampling's gradient sums each f x f
// block, pooling's spreads each output's gradient evenly over its window.
#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/tensor/parallel.hpp"

namespace diffusion {
namespace {

void require_image(const Shape& s, const char* op) {
  if (s.size() != 4)
    throw Error(std::string(op) + ": expected an image batch (N, C, H, W), got " + shape_str(s));
}

}  // namespace

Var upsample_nearest(const Var& x, std::size_t factor) {
  const Shape xs = x.shape();
  require_image(xs, "upsample_nearest");
  if (factor == 0) throw Error("upsample_nearest: factor must be positive");
  const std::size_t planes = xs[0] * xs[1], h = xs[2], w = xs[3], f = factor;
  const std::size_t wo = w * f, plane_in = h * w, plane_out = plane_in * f * f;
  Tensor y = Tensor::from_shape({xs[0], xs[1], h * f, wo});
  const float* px = x.value().data();
  float* py = y.data();
  parallel_for(planes, [&](std::size_t pl) {
    const float* xp = px + pl * plane_in;
    float* yp = py + pl * plane_out;
    for (std::size_t i = 0; i < h; ++i) {
      float* first = yp + i * f * wo;  // output row i f, then copied to the next f - 1 rows
      for (std::size_t j = 0; j < w; ++j) std::fill_n(first + j * f, f, xp[i * w + j]);
      for (std::size_t r = 1; r < f; ++r) std::copy_n(first, wo, first + r * wo);
    }
  });
  return make_result(std::move(y), "upsample_nearest", {x},
                     [planes, h, w, f, wo, plane_in, plane_out](Node& self) {
    Node* nx = grad_input(self, 0);
    if (!nx) return;
    Tensor gx = Tensor::from_shape(nx->value.shape());
    const float* g = self.grad.data();
    float* o = gx.data();
    parallel_for(planes, [&](std::size_t pl) {  // each input pixel: the sum of its f x f block
      const float* gp = g + pl * plane_out;
      float* op = o + pl * plane_in;
      std::fill_n(op, plane_in, 0.0f);
      for (std::size_t i = 0; i < h * f; ++i) {
        const float* row = gp + i * wo;
        float* orow = op + (i / f) * w;
        for (std::size_t j = 0; j < w; ++j) {
          float acc = 0.0f;
          for (std::size_t r = 0; r < f; ++r) acc += row[j * f + r];
          orow[j] += acc;
        }
      }
    });
    give_grad(*nx, std::move(gx));
  });
}

Var avg_pool2d(const Var& x, std::size_t kernel, std::size_t stride) {
  const Shape xs = x.shape();
  require_image(xs, "avg_pool2d");
  const std::size_t k = kernel, s = stride == 0 ? kernel : stride;
  if (k == 0 || k > xs[2] || k > xs[3])
    throw Error("avg_pool2d: kernel " + std::to_string(k) + " does not fit input " +
                shape_str(xs) + " (needs 1 <= kernel <= H, W)");
  const std::size_t planes = xs[0] * xs[1], h = xs[2], w = xs[3];
  const std::size_t ho = (h - k) / s + 1, wo = (w - k) / s + 1;
  const float inv = 1.0f / static_cast<float>(k * k);
  Tensor y = Tensor::from_shape({xs[0], xs[1], ho, wo});
  const float* px = x.value().data();
  float* py = y.data();
  parallel_for(planes, [&](std::size_t pl) {
    const float* xp = px + pl * h * w;
    float* yp = py + pl * ho * wo;
    for (std::size_t i = 0; i < ho; ++i)
      for (std::size_t j = 0; j < wo; ++j) {
        float acc = 0.0f;
        for (std::size_t a = 0; a < k; ++a)
          for (std::size_t b = 0; b < k; ++b) acc += xp[(i * s + a) * w + j * s + b];
        yp[i * wo + j] = acc * inv;
      }
  });
  return make_result(std::move(y), "avg_pool2d", {x},
                     [planes, h, w, ho, wo, k, s, inv](Node& self) {
    Node* nx = grad_input(self, 0);
    if (!nx) return;
    Tensor gx = Tensor::from_shape(nx->value.shape());
    const float* g = self.grad.data();
    float* o = gx.data();
    parallel_for(planes, [&](std::size_t pl) {  // windows may overlap (stride < kernel): add
      const float* gp = g + pl * ho * wo;
      float* op = o + pl * h * w;
      std::fill_n(op, h * w, 0.0f);
      for (std::size_t i = 0; i < ho; ++i)
        for (std::size_t j = 0; j < wo; ++j) {
          const float v = gp[i * wo + j] * inv;
          for (std::size_t a = 0; a < k; ++a)
            for (std::size_t b = 0; b < k; ++b) op[(i * s + a) * w + j * s + b] += v;
        }
    });
    give_grad(*nx, std::move(gx));
  });
}

}  // namespace diffusion
