#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <diffusion/tensor/blas_kernels.hpp>

int main(int argc, char** argv) {
  diffusion::use_blas_kernels_for_this_cpu(argv);
  return Catch::Session().run(argc, argv);
}
