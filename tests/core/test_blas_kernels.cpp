// The test binary's main() calls use_blas_kernels_for_this_cpu, as runexp and the benchmarks do,
// so the products here run on kernels that match the CPU's instruction sets.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include <diffusion/tensor/blas_kernels.hpp>

TEST_CASE("OpenBLAS does not run its Prescott fallback on a CPU with AVX2 or AVX-512") {
  const std::string kernels = diffusion::blas_kernel_name();
  if (kernels.empty()) {
    SUCCEED("the BLAS is not OpenBLAS");
    return;
  }
  const char* chosen = std::getenv("OPENBLAS_CORETYPE");
  if (chosen && std::string(chosen) == "Prescott") {
    SUCCEED("the user chose Prescott through OPENBLAS_CORETYPE");
    return;
  }
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    INFO("OpenBLAS kernels: " << kernels);
    REQUIRE(kernels != "Prescott");
  }
}
