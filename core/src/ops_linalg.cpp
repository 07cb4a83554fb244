// Matrix products through BLAS sgemm (row-major). Gradients are sgemms too:
// for C = A B, dA = dC B^T and dB = A^T dC.
#include <cblas.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff.hpp"

namespace diffusion {
namespace {

// Row-major C (m x n) = alpha op(A) op(B) + beta C, where op transposes when asked.
// BLAS leaves C untouched when k == 0, so the beta == 0 case is zeroed here.
void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
          const float* b, float beta, float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f) std::fill(c, c + m * n, 0.0f);
    return;
  }
  const int lda = static_cast<int>(ta ? m : k);
  const int ldb = static_cast<int>(tb ? k : n);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, a, lda, b, ldb,
              beta, c, static_cast<int>(n));
}

// How a matmul's operands map onto sgemm calls: `batches` products of (m, k) @ (k, n). When b
// is 2-D and a is batched, a's batch folds into m (one sgemm), and b's gradient sums over it.
struct MatmulPlan {
  std::size_t batches, m, k, n;
};

MatmulPlan plan_matmul(const Shape& as, const Shape& bs, Shape& out) {
  const auto fail = [&]() {
    return Error("matmul: shapes " + shape_str(as) + " and " + shape_str(bs) +
                 " are incompatible");
  };
  if (as.size() < 2 || bs.size() < 2) throw fail();
  const std::size_t ra = as.size(), rb = bs.size();
  const std::size_t m = as[ra - 2], k = as[ra - 1], n = bs[rb - 1];
  if (bs[rb - 2] != k) throw fail();
  out.assign(as.begin(), as.end() - 1);
  out.push_back(n);
  if (rb == 2) return {1, numel(Shape(as.begin(), as.end() - 1)), k, n};
  if (ra != rb || !std::equal(as.begin(), as.end() - 2, bs.begin())) throw fail();
  return {numel(Shape(as.begin(), as.end() - 2)), m, k, n};
}

}  // namespace

Var matmul(const Var& a, const Var& b) {
  const Tensor& av = a.value();
  const Tensor& bv = b.value();
  Shape os;
  const MatmulPlan p = plan_matmul(shape_of(av), shape_of(bv), os);
  Tensor out = Tensor::from_shape(os);
  const std::size_t sa = p.m * p.k, sb = bv.dimension() == 2 ? 0 : p.k * p.n, sc = p.m * p.n;
  for (std::size_t i = 0; i < p.batches; ++i)
    gemm(false, false, p.m, p.n, p.k, av.data() + i * sa, bv.data() + i * sb, 0.0f,
         out.data() + i * sc);
  return make_result(std::move(out), "matmul", {a, b}, [p, sa, sb, sc](Node& self) {
    const float* g = self.grad.data();
    const Tensor& av = self.inputs[0]->value;
    const Tensor& bv = self.inputs[1]->value;
    if (Node* na = grad_input(self, 0)) {  // dA = dC B^T
      Tensor ga = Tensor::from_shape(av.shape());
      for (std::size_t i = 0; i < p.batches; ++i)
        gemm(false, true, p.m, p.k, p.n, g + i * sc, bv.data() + i * sb, 0.0f,
             ga.data() + i * sa);
      give_grad(*na, std::move(ga));
    }
    if (Node* nb = grad_input(self, 1)) {  // dB = A^T dC
      Tensor gb = Tensor::from_shape(bv.shape());
      for (std::size_t i = 0; i < p.batches; ++i)
        gemm(true, false, p.k, p.n, p.m, av.data() + i * sa, g + i * sc, 0.0f,
             gb.data() + i * sb);
      give_grad(*nb, std::move(gb));
    }
  });
}

Var linear(const Var& x, const Var& weight, const Var& bias) {
  const Tensor& xv = x.value();
  const Tensor& wv = weight.value();
  const Shape xs = shape_of(xv), ws = shape_of(wv);
  if (ws.size() != 2 || xs.empty() || xs.back() != ws[1])
    throw Error("linear: input " + shape_str(xs) + " and weight " + shape_str(ws) +
                " are incompatible (expected input (..., in) and weight (out, in))");
  const std::size_t in = ws[1], outf = ws[0], rows = numel(xs) / std::max<std::size_t>(in, 1);
  if (bias.defined() && shape_of(bias.value()) != Shape{outf})
    throw Error("linear: bias " + shape_str(bias.value()) + " does not match weight " +
                shape_str(ws) + " (expected (" + std::to_string(outf) + ",))");
  Shape os = xs;
  os.back() = outf;
  Tensor y = Tensor::from_shape(os);
  float* py = y.data();
  // Pre-fill the rows with the bias so a single sgemm with beta = 1 adds x W^T to it.
  if (bias.defined()) {
    const float* pb = bias.value().data();
    for (std::size_t r = 0; r < rows; ++r) std::copy(pb, pb + outf, py + r * outf);
  }
  gemm(false, true, rows, outf, in, xv.data(), wv.data(), bias.defined() ? 1.0f : 0.0f, py);
  return make_result(std::move(y), "linear", {x, weight, bias},
                     [rows, in, outf](Node& self) {
                       const float* g = self.grad.data();
                       if (Node* nx = grad_input(self, 0)) {  // dX = dY W
                         Tensor gx = Tensor::from_shape(nx->value.shape());
                         gemm(false, false, rows, in, outf, g, self.inputs[1]->value.data(), 0.0f,
                              gx.data());
                         give_grad(*nx, std::move(gx));
                       }
                       if (Node* nw = grad_input(self, 1)) {  // dW = dY^T X
                         Tensor gw = Tensor::from_shape(nw->value.shape());
                         gemm(true, false, outf, in, rows, g, self.inputs[0]->value.data(), 0.0f,
                              gw.data());
                         give_grad(*nw, std::move(gw));
                       }
                       if (Node* nb = grad_input(self, 2)) {  // db = column sums of dY
                         Tensor gb = zeros({outf});
                         float* pb = gb.data();
                         for (std::size_t r = 0; r < rows; ++r) {
                           const float* gr = g + r * outf;
                           for (std::size_t j = 0; j < outf; ++j) pb[j] += gr[j];
                         }
                         give_grad(*nb, std::move(gb));
                       }
                     });
}

}  // namespace diffusion
