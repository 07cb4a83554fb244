#include "torch_baseline.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "json.hpp"

namespace bench {

bool torch_available() {
  if (std::system("/usr/bin/python3 -c 'import torch, sklearn' >/dev/null 2>&1") == 0) return true;
  std::fprintf(stderr, "the PyTorch baseline needs /usr/bin/python3 with torch and sklearn "
                       "(Debian's python3-torch, python3-sklearn)\n");
  return false;
}

std::vector<TorchRun> run_torch(const std::vector<std::string>& runs, const TorchOptions& o) {
  // Without the counter library (sanitizer builds) allocations are not counted (NaN).
  const bool count_allocs = o.count_allocs && *DIFFUSION_ALLOC_COUNT_LIB;
  std::string cmd;
  if (count_allocs) cmd += "LD_PRELOAD='" DIFFUSION_ALLOC_COUNT_LIB "' ";
  cmd += "/usr/bin/python3 '" DIFFUSION_TORCH_RUNNER "' '" + o.script + "'";
  if (o.seconds > 0) cmd += " --seconds " + std::to_string(o.seconds);
  if (count_allocs) cmd += " --count-allocs";
  for (const std::string& r : runs) cmd += " '" + r + "'";
  cmd += " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + cmd);
  std::string out;
  std::vector<TorchRun> result;
  char buf[8192];
  while (std::fgets(buf, sizeof buf, pipe)) {
    const std::string line = buf;
    out += line;
    if (line[0] != '{') continue;
    TorchRun r;
    r.version = json_field_string(line, "impl");
    r.threads = static_cast<int>(json_field_number(line, "threads"));
    r.steps = static_cast<long>(json_field_number(line, "steps"));
    r.batch = static_cast<long>(json_field_number(line, "batch"));
    r.width = static_cast<long>(json_field_number(line, "width"));
    // steps / train_s: the script rounds steps_per_s to 0.1, too coarse for the large cases.
    r.steps_per_s = double(r.steps) / json_field_number(line, "train_s");
    r.samples_per_s = json_field_number(line, "samples_per_s");
    r.peak_rss_mb = json_field_number(line, "peak_rss_kb") / 1024.0;
    r.allocs_per_step = json_field_number(line, "allocs_per_step");
    r.allocs_per_ddim_step = json_field_number(line, "allocs_per_ddim_step");
    result.push_back(r);
  }
  if (::pclose(pipe) != 0 || result.size() != runs.size())
    throw std::runtime_error("the PyTorch baseline failed (" + cmd + "):\n" + out);
  return result;
}

}  // namespace bench
