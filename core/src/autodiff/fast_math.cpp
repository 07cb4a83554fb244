// The activation loops of fast_math.hpp, one counted loop per function so each vectorises.
#include "autodiff/fast_math.hpp"

namespace diffusion::fast {

void activate(Activation a, const float* z, float* y, std::size_t n) {
  switch (a) {
    case Activation::relu:
      for (std::size_t i = 0; i < n; ++i) y[i] = z[i] > 0.0f ? z[i] : 0.0f;
      return;
    case Activation::silu:
      for (std::size_t i = 0; i < n; ++i) y[i] = z[i] * sigmoid(z[i]);
      return;
    case Activation::sigmoid:
      for (std::size_t i = 0; i < n; ++i) y[i] = sigmoid(z[i]);
      return;
    case Activation::gelu:
      for (std::size_t i = 0; i < n; ++i) y[i] = 0.5f * z[i] * (1.0f + fast::erf(z[i] * 0.70710678118654752f));
      return;
    case Activation::tanh:
      for (std::size_t i = 0; i < n; ++i) y[i] = activate(a, z[i]);
      return;
    case Activation::identity:
      if (y != z)
        for (std::size_t i = 0; i < n; ++i) y[i] = z[i];
      return;
  }
}

void activate_backward(Activation a, const float* g, const float* z, const float* y, float* out,
                       std::size_t n) {
  switch (a) {
    case Activation::relu:
      for (std::size_t i = 0; i < n; ++i) out[i] = z[i] > 0.0f ? g[i] : 0.0f;
      return;
    case Activation::silu:
      // d/dz z s(z) = s + z s (1 - s) = s + y (1 - s); s is recomputed here (activate_keep
      // saves it instead).
      for (std::size_t i = 0; i < n; ++i) {
        const float s = sigmoid(z[i]);
        out[i] = g[i] * (s + y[i] * (1.0f - s));
      }
      return;
    case Activation::sigmoid:
      for (std::size_t i = 0; i < n; ++i) out[i] = g[i] * (y[i] * (1.0f - y[i]));
      return;
    case Activation::tanh:
      for (std::size_t i = 0; i < n; ++i) out[i] = g[i] * (1.0f - y[i] * y[i]);
      return;
    case Activation::gelu:
      // x Phi(x) -> Phi(x) + x phi(x).
      for (std::size_t i = 0; i < n; ++i) {
        const float cdf = 0.5f * (1.0f + fast::erf(z[i] * 0.70710678118654752f));
        out[i] = g[i] * (cdf + z[i] * 0.39894228040143268f * exp(-0.5f * z[i] * z[i]));
      }
      return;
    case Activation::identity:
      for (std::size_t i = 0; i < n; ++i) out[i] = g[i];
      return;
  }
}

void activate_keep(Activation a, float* z, float* y, std::size_t n) {
  if (a != Activation::silu) return activate(a, z, y, n);
  for (std::size_t i = 0; i < n; ++i) {
    const float s = sigmoid(z[i]);
    y[i] = z[i] * s;
    z[i] = s;
  }
}

void activate_backward_kept(Activation a, const float* g, const float* kept, const float* y,
                            float* out, std::size_t n) {
  if (a != Activation::silu) return activate_backward(a, g, kept, y, out, n);
  for (std::size_t i = 0; i < n; ++i) out[i] = g[i] * (kept[i] + y[i] * (1.0f - kept[i]));
}

}  // namespace diffusion::fast
