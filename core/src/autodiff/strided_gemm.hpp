#pragma once
// Internal to the ops: one row-major cblas_sgemm with explicit leading dimensions and alpha,
// for ops that multiply slices of their tensors in place (a head's columns of q in attention,
// a group's rows of the column matrix in conv2d) instead of copying them out first.
#include <cblas.h>

#include <cstddef>

namespace diffusion {

/// C (m x n) = alpha op(A) op(B) + beta C, all row-major with leading dimensions lda, ldb, ldc;
/// op transposes when ta / tb. On one thread: callers run it inside their own parallel blocks.
inline void strided_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k,
                         float alpha, const float* a, std::size_t lda, const float* b,
                         std::size_t ldb, float beta, float* c, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

}  // namespace diffusion
