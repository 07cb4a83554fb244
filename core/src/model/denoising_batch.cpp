#include "diffusion/model/denoising_batch.hpp"

namespace diffusion {

DenoisingBatch denoising_batch(const Path& path, const Preconditioning& pre, const Tensor& x0, const Tensor& z,
                               const Tensor& t) {
  const Shape shape = shape_of(x0);
  if (shape.empty() || shape_of(z) != shape || t.size() != shape[0])
    throw Error("denoising batch: data " + shape_str(x0) + ", source draws " + shape_str(z) + " and times " +
                shape_str(t) + " do not match");
  const std::size_t n = shape[0], per = n ? x0.size() / n : 0;
  DenoisingBatch b{Tensor::from_shape(shape), Tensor::from_shape({n}), Tensor::from_shape(shape)};
  for (std::size_t i = 0; i < n; ++i) {
    const double a = path.alpha(t(i)), s = path.sigma(t(i));
    const Scalings k = pre.scalings(path, t(i));
    const Target y = pre.target(path, t(i));
    b.c_noise(i) = static_cast<float>(k.c_noise);
    const float* px = x0.data() + i * per;
    const float* pz = z.data() + i * per;
    float* pin = b.input.data() + i * per;
    float* pt = b.target.data() + i * per;
    for (std::size_t j = 0; j < per; ++j) {
      pin[j] = float(a * px[j] + s * pz[j]);
      pt[j] = float(y.x0 * px[j] + y.eps * pz[j]);
      if (k.c_in != 1.0) pin[j] = float(k.c_in * pin[j]);
    }
  }
  return b;
}

}  // namespace diffusion
