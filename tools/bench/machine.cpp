#include "machine.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>

#include <diffusion/tensor/blas_kernels.hpp>

namespace bench {

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double load_average() {
  std::ifstream f("/proc/loadavg");
  double load = -1.0;
  f >> load;
  return load;
}

std::string machine_description() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  const std::string kernels = diffusion::blas_kernel_name();
  return model + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs" +
         (kernels.empty() ? "" : ", OpenBLAS kernels " + kernels);
}

}  // namespace bench
