#pragma once
// Which OpenBLAS kernels run the products, and a remedy when they are the wrong ones.
//
// Debian's OpenBLAS chooses its kernels at load time from the CPU's family and model number.
// On a CPU newer than the library (OpenBLAS 0.3.21 and Intel's 5th-generation Xeon, model 207,
// for one) it falls back to its oldest x86-64 kernels, "Prescott" (SSE3), although the CPU has
// AVX-512: every sgemm then runs about 3x slower. The choice can only be overridden before the
// library loads, through the environment variable OPENBLAS_CORETYPE.
#include <string>

namespace diffusion {

/// The kernel family OpenBLAS chose ("SkylakeX", "Haswell", "Prescott", ...), or "" when the
/// BLAS is not OpenBLAS.
std::string blas_kernel_name();

/// Call first thing in main(). When OpenBLAS fell back to its Prescott kernels on a CPU with
/// AVX2 or AVX-512 and OPENBLAS_CORETYPE is unset, sets OPENBLAS_CORETYPE to the kernels the CPU
/// supports (Haswell or SkylakeX) and re-executes the program with the same arguments; the new
/// process sees the variable set and goes on. Otherwise, or if the re-execution fails, returns
/// and the program runs as it is. The user's own OPENBLAS_CORETYPE is always respected.
void use_blas_kernels_for_this_cpu(char** argv);

}  // namespace diffusion
