// Scaled dot-product multi-head attention (Vaswani et al. 2017, eq. 1 and sec. 3.2.2):
//   S = Q_h K_h^T / sqrt(d),  P = softmax(S) row-wise,  O_h = P V_h,
// for every sample and head h, Q_h being the head's columns of q (no reshape or permute: the
// sgemms read them with the row stride of the whole token). Backward, with dO given:
//   dV_h = P^T dO,  dP = dO V_h^T,  dS = P * (dP - rowsum(dP * P)),
//   dQ_h = dS K_h / sqrt(d),  dK_h = dS^T Q_h / sqrt(d).
// Each (sample, head) is one task on the core's threads, computed the same way whatever the
// thread count.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>

#include "autodiff/fast_math.hpp"
#include "autodiff/strided_gemm.hpp"
#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/tensor/parallel.hpp"

namespace diffusion {
namespace {

struct AttentionShape {
  std::size_t n, tq, tk, dk, dv, heads;
  std::size_t hk() const { return dk / heads; }  // features per head of q and k
  std::size_t hv() const { return dv / heads; }  // of v and the output
  std::size_t probs() const { return tq * tk; }  // one head's probability matrix
};

AttentionShape attention_shape(const Shape& qs, const Shape& ks, const Shape& vs,
                               std::size_t heads) {
  const auto fail = [&](const std::string& why) {
    return Error("attention: q " + shape_str(qs) + ", k " + shape_str(ks) + ", v " +
                 shape_str(vs) + ", heads " + std::to_string(heads) + ": " + why);
  };
  if (qs.size() != 3 || ks.size() != 3 || vs.size() != 3)
    throw fail("expected q (N, Tq, D), k (N, Tk, D), v (N, Tk, Dv)");
  if (ks[0] != qs[0] || vs[0] != qs[0]) throw fail("batch sizes differ");
  if (ks[2] != qs[2]) throw fail("q and k need the same feature size");
  if (vs[1] != ks[1]) throw fail("k and v need the same number of tokens");
  if (heads == 0 || qs[2] % heads != 0 || vs[2] % heads != 0)
    throw fail("heads must divide the feature sizes of q and v");
  if (ks[1] == 0 || qs[2] == 0 || vs[2] == 0) throw fail("no keys or no features");
  return {qs[0], qs[1], ks[1], qs[2], vs[2], heads};
}

// Row-wise softmax of a (rows, cols) matrix in place, one pass of exps per row: subtract the
// row's max (so no exp overflows), exponentiate while summing, normalise.
void softmax_rows(float* s, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = s + r * cols;
    const float mx = *std::max_element(row, row + cols);
    float sum = 0.0f;
    for (std::size_t j = 0; j < cols; ++j) {
      row[j] = fast::exp(row[j] - mx);
      sum += row[j];
    }
    const float inv = 1.0f / sum;
    for (std::size_t j = 0; j < cols; ++j) row[j] *= inv;
  }
}

}  // namespace

Var attention(const Var& q, const Var& k, const Var& v, std::size_t heads) {
  const AttentionShape a =
      attention_shape(shape_of(q.value()), shape_of(k.value()), shape_of(v.value()), heads);
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.hk()));
  const bool record = grad_enabled() && (q.requires_grad() || k.requires_grad() ||
                                         v.requires_grad());
  // The probabilities (N, heads, Tq, Tk), kept for backward; without a graph, one per task.
  Tensor probs = record ? Tensor::from_shape({a.n, a.heads, a.tq, a.tk}) : Tensor();
  Tensor out = Tensor::from_shape({a.n, a.tq, a.dv});
  const float* pq = q.value().data();
  const float* pk = k.value().data();
  const float* pv = v.value().data();
  float* po = out.data();
  parallel_for(a.n * a.heads, [&](std::size_t task) {
    const std::size_t i = task / a.heads, h = task % a.heads;
    Tensor scratch;
    float* p = record ? probs.data() + task * a.probs() : nullptr;
    if (!p) {
      scratch = Tensor::from_shape({a.tq, a.tk});
      p = scratch.data();
    }
    strided_gemm(false, true, a.tq, a.tk, a.hk(), scale, pq + i * a.tq * a.dk + h * a.hk(), a.dk,
                 pk + i * a.tk * a.dk + h * a.hk(), a.dk, 0.0f, p, a.tk);
    softmax_rows(p, a.tq, a.tk);
    strided_gemm(false, false, a.tq, a.hv(), a.tk, 1.0f, p, a.tk,
                 pv + i * a.tk * a.dv + h * a.hv(), a.dv, 0.0f, po + i * a.tq * a.dv + h * a.hv(),
                 a.dv);
  });
  return make_result(
      std::move(out), "attention", {q, k, v},
      [a, scale, probs = std::move(probs)](Node& self) {
        Node* nq = grad_input(self, 0);
        Node* nk = grad_input(self, 1);
        Node* nv = grad_input(self, 2);
        const float* pq = self.inputs[0]->value.data();
        const float* pk = self.inputs[1]->value.data();
        const float* pv = self.inputs[2]->value.data();
        const float* g = self.grad.data();
        Tensor gq = nq ? Tensor::from_shape({a.n, a.tq, a.dk}) : Tensor();
        Tensor gk = nk ? Tensor::from_shape({a.n, a.tk, a.dk}) : Tensor();
        Tensor gv = nv ? Tensor::from_shape({a.n, a.tk, a.dv}) : Tensor();
        parallel_for(a.n * a.heads, [&](std::size_t task) {
          const std::size_t i = task / a.heads, h = task % a.heads;
          const float* p = probs.data() + task * a.probs();
          const float* go = g + i * a.tq * a.dv + h * a.hv();
          const std::size_t qo = i * a.tq * a.dk + h * a.hk(), ko = i * a.tk * a.dk + h * a.hk();
          const std::size_t vo = i * a.tk * a.dv + h * a.hv();
          if (nv)  // dV_h = P^T dO
            strided_gemm(true, false, a.tk, a.hv(), a.tq, 1.0f, p, a.tk, go, a.dv, 0.0f,
                         gv.data() + vo, a.dv);
          if (!nq && !nk) return;
          // dP = dO V_h^T, then dS = P * (dP - rowsum(dP * P)) in its place.
          Tensor ds_store = Tensor::from_shape({a.tq, a.tk});
          float* ds = ds_store.data();
          strided_gemm(false, true, a.tq, a.tk, a.hv(), 1.0f, go, a.dv, pv + vo, a.dv, 0.0f, ds,
                       a.tk);
          for (std::size_t r = 0; r < a.tq; ++r) {
            float* dr = ds + r * a.tk;
            const float* pr = p + r * a.tk;
            float dot = 0.0f;
            for (std::size_t j = 0; j < a.tk; ++j) dot += dr[j] * pr[j];
            for (std::size_t j = 0; j < a.tk; ++j) dr[j] = pr[j] * (dr[j] - dot);
          }
          if (nq)  // dQ_h = dS K_h / sqrt(d)
            strided_gemm(false, false, a.tq, a.hk(), a.tk, scale, ds, a.tk, pk + ko, a.dk, 0.0f,
                         gq.data() + qo, a.dk);
          if (nk)  // dK_h = dS^T Q_h / sqrt(d)
            strided_gemm(true, false, a.tk, a.hk(), a.tq, scale, ds, a.tk, pq + qo, a.dk, 0.0f,
                         gk.data() + ko, a.dk);
        });
        if (nq) give_grad(*nq, std::move(gq));
        if (nk) give_grad(*nk, std::move(gk));
        if (nv) give_grad(*nv, std::move(gv));
      });
}

}  // namespace diffusion
