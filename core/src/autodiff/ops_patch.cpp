// Images as sequences of patches (Dosovitskiy et al. 2021, sec. 3.1; DiT, Peebles & Xie 2023,
// sec. 3.2): patchify cuts (N, C, H, W) into (H/p)(W/p) tokens of C p p features, unpatchify
// puts them back. Both are the same permutation read in opposite directions, so each one's
// backward is the other.
#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/tensor/parallel.hpp"

namespace diffusion {
namespace {

struct PatchGrid {
  std::size_t n, c, h, w, p;
  std::size_t rows() const { return h / p; }
  std::size_t cols() const { return w / p; }
  std::size_t tokens() const { return rows() * cols(); }
  std::size_t features() const { return c * p * p; }
};

// Copies between an image batch and its tokens: image[n, ch, i p + a, j p + b] is
// tokens[n, i cols + j, (ch p + a) p + b]. to_tokens picks the direction.
void move_patches(const PatchGrid& g, const float* from, float* to, bool to_tokens) {
  const std::size_t image = g.c * g.h * g.w;  // elements per sample, the same in both layouts
  parallel_for(g.n, [&](std::size_t n) {
    const float* src = from + n * image;
    float* dst = to + n * image;
    for (std::size_t i = 0; i < g.rows(); ++i)
      for (std::size_t j = 0; j < g.cols(); ++j) {
        const std::size_t token = (i * g.cols() + j) * g.features();
        for (std::size_t ch = 0; ch < g.c; ++ch)
          for (std::size_t a = 0; a < g.p; ++a) {
            // One patch row: p pixels contiguous in both layouts.
            const std::size_t pix = (ch * g.h + i * g.p + a) * g.w + j * g.p;
            const std::size_t feat = token + (ch * g.p + a) * g.p;
            if (to_tokens) std::copy_n(src + pix, g.p, dst + feat);
            else std::copy_n(src + feat, g.p, dst + pix);
          }
      }
  });
}

Var patch_op(const Var& in, const PatchGrid& g, bool to_tokens, const char* op) {
  const Shape out_shape = to_tokens ? Shape{g.n, g.tokens(), g.features()}
                                    : Shape{g.n, g.c, g.h, g.w};
  Tensor out = Tensor::from_shape(out_shape);
  move_patches(g, in.value().data(), out.data(), to_tokens);
  return make_result(std::move(out), op, {in}, [g, to_tokens](Node& self) {
    Node* ni = grad_input(self, 0);
    if (!ni) return;
    Tensor gi = Tensor::from_shape(ni->value.shape());
    move_patches(g, self.grad.data(), gi.data(), !to_tokens);
    give_grad(*ni, std::move(gi));
  });
}

}  // namespace

Var patchify(const Var& x, std::size_t patch) {
  const Shape xs = x.shape();
  if (xs.size() != 4 || patch == 0 || xs[2] % patch != 0 || xs[3] % patch != 0)
    throw Error("patchify: input " + shape_str(xs) + " with patch size " + std::to_string(patch) +
                ": expected (N, C, H, W) with H and W divisible by the patch size");
  return patch_op(x, {xs[0], xs[1], xs[2], xs[3], patch}, true, "patchify");
}

Var unpatchify(const Var& tokens, std::size_t patch, std::size_t height, std::size_t width) {
  const Shape ts = tokens.shape();
  const auto fail = [&](const std::string& why) {
    return Error("unpatchify: tokens " + shape_str(ts) + " with patch size " +
                 std::to_string(patch) + " into " + std::to_string(height) + " x " +
                 std::to_string(width) + ": " + why);
  };
  if (patch == 0 || height % patch != 0 || width % patch != 0)
    throw fail("height and width must be divisible by the patch size");
  if (ts.size() != 3 || ts[1] != (height / patch) * (width / patch))
    throw fail("expected (N, (H/p) (W/p), C p p)");
  if (ts[2] % (patch * patch) != 0) throw fail("features must be a multiple of p^2");
  return patch_op(tokens, {ts[0], ts[2] / (patch * patch), height, width, patch}, false,
                  "unpatchify");
}

}  // namespace diffusion
