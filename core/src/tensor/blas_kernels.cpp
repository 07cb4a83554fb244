#include "diffusion/tensor/blas_kernels.hpp"

#include <unistd.h>

#include <cstdlib>

// OpenBLAS's own query; weak, so the core still links against another BLAS.
extern "C" char* openblas_get_corename() __attribute__((weak));

namespace diffusion {

std::string blas_kernel_name() {
  if (!openblas_get_corename) return "";
  const char* name = openblas_get_corename();
  return name ? name : "";
}

namespace {

// The best kernels OpenBLAS has for this CPU's instruction sets, or nullptr when the fallback is
// already what the CPU can do.
const char* kernels_supported_by_cpu() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

}  // namespace

void use_blas_kernels_for_this_cpu(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user chose, or this is the re-execution
  // Only OpenBLAS's fallback for a CPU it does not know is corrected; a kernel it chose on
  // purpose (e.g. Haswell on a CPU whose AVX-512 it avoids) is left alone.
  if (blas_kernel_name() != "Prescott") return;
  const char* kernels = kernels_supported_by_cpu();
  if (!kernels || setenv("OPENBLAS_CORETYPE", kernels, 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // execv returned: it failed; run on with the fallback
}

}  // namespace diffusion
