// Matrix products through BLAS sgemm (row-major). Gradients are sgemms too:
// for C = A B, dA = dC B^T and dB = A^T dC.
#include <cblas.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/tensor/parallel.hpp"
#include "autodiff/fast_math.hpp"

namespace diffusion {
namespace {

// One row-major sgemm: C (m x n) = op(A) op(B) + beta C with explicit leading dimensions.
void sgemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
           std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
           std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// How products are cut into blocks for the threads. The cut depends on the shape only, never
// on the thread count: OpenBLAS's rounding depends on the shape of each call (its kernels for
// small and large products sum in different orders), so a cut by thread count would make the
// results depend on DIFFUSION_THREADS. With one thread the same blocks simply run in turn.
constexpr std::size_t kBlockMacs = std::size_t{1} << 21;  // ~60 us of sgemm per block at least
constexpr std::size_t kMaxBlocks = 16;
// Every block packs the whole of the operand it shares with the others, so thin blocks spend
// much of their time packing: a weight gradient dW = dY^T X (512 x 512, k = 4096) cut into 16
// blocks of 32 rows would pack X 16 times. Beyond two blocks, each is at least this long.
constexpr std::size_t kMinBlockLen = 256;

// Length of the blocks (a multiple of 16, whole kernel tiles, at most max_len) that cut
// `extent` rows or columns of a product of `macs` multiply-adds. The number of blocks is a
// power of two, so that they share out evenly over 2 or 4 threads.
std::size_t block_length(std::size_t extent, std::size_t macs, std::size_t max_len) {
  std::size_t blocks = 1;
  while (blocks < kMaxBlocks && 2 * blocks * kBlockMacs <= macs &&
         (blocks == 1 || extent / (2 * blocks) >= kMinBlockLen))
    blocks *= 2;
  const std::size_t len = ((extent + blocks - 1) / blocks + 15) / 16 * 16;
  return std::min(std::max<std::size_t>(len, 1), std::max<std::size_t>(max_len, 16));
}

// fn(lo, len) over the blocks [lo, lo + len) that cut [0, extent), spread over the threads.
template <class Fn>
void for_blocks(std::size_t extent, std::size_t block, const Fn& fn) {
  if (block >= extent) {
    if (extent > 0) fn(std::size_t{0}, extent);
    return;
  }
  parallel_for((extent + block - 1) / block, [&](std::size_t i) {
    const std::size_t lo = i * block;
    fn(lo, std::min(block, extent - lo));
  });
}

// One sgemm call of a plan.
struct GemmCall {
  bool ta, tb;
  std::size_t m, n, k;
  const float* a;
  std::size_t lda;
  const float* b;
  std::size_t ldb;
  float beta;
  float* c;
  std::size_t ldc;
};

// The blocks of one or more independent products, run as one parallel job: a backward pass
// plans dX and dW together, so two threads each take a share of both without waiting in
// between.
struct GemmPlan {
  GemmCall calls[2 * kMaxBlocks];
  std::size_t size = 0;

  // Adds row-major C (m x n) = op(A) op(B) + beta C, where op transposes when asked, cut along
  // whichever of m and n is larger; each block is an ordinary sgemm on slices of A or B.
  // BLAS leaves C untouched when k == 0, so the beta == 0 case is zeroed here.
  void add(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
           const float* b, float beta, float* c) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      if (beta == 0.0f) std::fill(c, c + m * n, 0.0f);
      return;
    }
    const std::size_t lda = ta ? m : k, ldb = tb ? k : n;
    const bool by_rows = m >= n;
    const std::size_t extent = by_rows ? m : n;
    const std::size_t block = block_length(extent, m * n * k, extent);
    for (std::size_t lo = 0; lo < extent; lo += block) {
      const std::size_t len = std::min(block, extent - lo);
      if (by_rows)  // rows lo.. of C come from rows lo.. of op(A)
        calls[size++] = {ta, tb, len, n, k, ta ? a + lo : a + lo * lda, lda, b, ldb, beta,
                         c + lo * n, n};
      else  // columns lo.. of C come from columns lo.. of op(B)
        calls[size++] = {ta, tb, m, len, k, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta,
                         c + lo, n};
    }
  }

  void run() const {
    const auto call = [this](std::size_t i) {
      const GemmCall& g = calls[i];
      sgemm(g.ta, g.tb, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc);
    };
    if (size == 1) call(0);
    else parallel_for(size, call);
  }
};

// Row-major C (m x n) = op(A) op(B) + beta C as one planned job.
void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
          const float* b, float beta, float* c) {
  GemmPlan plan;
  plan.add(ta, tb, m, n, k, a, b, beta, c);
  plan.run();
}

// fn(lo, len) over blocks of rows covering [0, rows), cut as gemm cuts a product with
// work_per_row multiply-adds per row, and at most 256 rows so that a block's output stays in
// cache for whatever fn does after its product.
template <class Fn>
void for_row_blocks(std::size_t rows, std::size_t work_per_row, const Fn& fn) {
  for_blocks(rows, block_length(rows, rows * work_per_row, 256), fn);
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
  return linear(x, weight, bias, Activation::identity);
}

Var linear(const Var& x, const Var& weight, const Var& bias, Activation act) {
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
  // Backward needs the pre-activation z (for silu, sigmoid(z): see activate_keep); without a
  // graph it is computed in place in y.
  const bool fused = act != Activation::identity;
  const bool record = grad_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                         (bias.defined() && bias.requires_grad()));
  Tensor z = fused && record ? Tensor::from_shape(os) : Tensor();
  float* pz = fused && record ? z.data() : y.data();
  float* py = y.data();
  const float* pb = bias.defined() ? bias.value().data() : nullptr;
  for_row_blocks(rows, in * outf, [&](std::size_t lo, std::size_t len) {
    float* zr = pz + lo * outf;
    // Rows pre-filled with the bias, so one sgemm with beta = 1 adds x W^T to it.
    if (pb)
      for (std::size_t r = 0; r < len; ++r) std::copy(pb, pb + outf, zr + r * outf);
    sgemm(false, true, len, outf, in, xv.data() + lo * in, in, wv.data(), in, pb ? 1.0f : 0.0f,
          zr, outf);
    if (fused && record) fast::activate_keep(act, zr, py + lo * outf, len * outf);
    else if (fused) fast::activate(act, zr, py + lo * outf, len * outf);
  });
  return make_result(
      std::move(y), "linear", {x, weight, bias},
      [rows, in, outf, act, z = std::move(z)](Node& self) {
        // dZ = dY f'(z), then the affine map's gradients from dZ.
        const float* g = self.grad.data();
        Tensor gz_store;
        if (act != Activation::identity) {
          gz_store = Tensor::from_shape(self.value.shape());
          float* gz = gz_store.data();
          const float* pz = z.data();
          const float* py = self.value.data();
          // An activation's derivative costs about as much as 32 multiply-adds per element.
          for_row_blocks(rows, 32 * outf, [&](std::size_t lo, std::size_t len) {
            const std::size_t o = lo * outf;
            fast::activate_backward_kept(act, g + o, pz + o, py + o, gz + o, len * outf);
          });
          g = gz;
        }
        // dX = dZ W and dW = dZ^T X, independent products planned as one job.
        Node* nx = grad_input(self, 0);
        Node* nw = grad_input(self, 1);
        Tensor gx = nx ? Tensor::from_shape(nx->value.shape()) : Tensor();
        Tensor gw = nw ? Tensor::from_shape(nw->value.shape()) : Tensor();
        GemmPlan plan;
        if (nx) plan.add(false, false, rows, in, outf, g, self.inputs[1]->value.data(), 0.0f, gx.data());
        if (nw) plan.add(true, false, outf, in, rows, g, self.inputs[0]->value.data(), 0.0f, gw.data());
        plan.run();
        if (nx) give_grad(*nx, std::move(gx));
        if (nw) give_grad(*nw, std::move(gw));
        if (Node* nb = grad_input(self, 2)) {  // db = column sums of dZ
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
