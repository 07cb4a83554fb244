#include "sgemm_alone.hpp"

#include <cblas.h>

#include <chrono>

// OpenBLAS's thread control; weak, so the benchmarks still link against another BLAS.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace bench {

void set_blas_threads(int threads) {
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
}

bool blas_threads_settable() { return openblas_set_num_threads != nullptr; }

SgemmResult time_sgemm_alone(const std::vector<Gemm>& gemms, int threads, double min_seconds) {
  // Separate operands per call, as in a training step where each product reads other tensors.
  struct Operands {
    std::vector<float> a, b, c;
  };
  std::vector<Operands> ops;
  for (const Gemm& g : gemms)
    ops.push_back({std::vector<float>(g.m * g.k, 0.01f), std::vector<float>(g.k * g.n, 0.02f),
                   std::vector<float>(g.m * g.n, 0.0f)});
  const auto pass = [&] {
    for (std::size_t i = 0; i < gemms.size(); ++i) {
      const Gemm& g = gemms[i];
      const int lda = int(g.trans_a ? g.m : g.k), ldb = int(g.trans_b ? g.k : g.n);
      cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                  g.trans_b ? CblasTrans : CblasNoTrans, int(g.m), int(g.n), int(g.k), 1.0f,
                  ops[i].a.data(), lda, ops[i].b.data(), ldb, g.beta, ops[i].c.data(), int(g.n));
    }
  };
  set_blas_threads(threads);
  pass();
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  long passes = 0;
  double secs = 0.0;
  do {
    pass();
    ++passes;
    secs = std::chrono::duration<double>(Clock::now() - start).count();
  } while (secs < min_seconds);
  set_blas_threads(1);
  return {threads, 1e6 * secs / passes, total_flops(gemms) * passes / secs / 1e9};
}

}  // namespace bench
