// The machine's reference for a step's matrix products: the same cblas_sgemm calls (shapes,
// transposes, beta) timed alone, back to back, with OpenBLAS at a given thread count.
#pragma once

#include <vector>

#include "flagship.hpp"

namespace bench {

struct SgemmResult {
  int threads;              // OpenBLAS threads
  double us_per_step;       // one pass over all the calls
  double gflops;
};

/// Times passes over `gemms` for at least min_seconds (after one untimed pass) with OpenBLAS at
/// `threads` threads, then puts OpenBLAS back to one thread, as the benchmarks run it.
SgemmResult time_sgemm_alone(const std::vector<Gemm>& gemms, int threads, double min_seconds);

/// OpenBLAS's thread count (no-op when the BLAS is not OpenBLAS).
void set_blas_threads(int threads);
/// True when the linked BLAS is OpenBLAS, whose thread count we can set.
bool blas_threads_settable();

}  // namespace bench
