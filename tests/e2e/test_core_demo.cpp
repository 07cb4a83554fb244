// tools/demo/core_demo as a sanity test of the core: an MLP trained with Adam on
// y = sin(3x) + 0.1 noise must reach the noise floor (MSE 0.01) within 2x, and the loss must
// visibly fall (the first logged loss, before any update, is > 10x the final one).
#include <sys/wait.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace {

struct DemoRun {
  int status = -1;     ///< exit code (-1 if it did not exit normally)
  std::string output;  ///< stdout and stderr together
};

DemoRun run_demo(const std::string& args) {
  // One BLAS thread: the matrices are small, and ctest -j runs other tests alongside.
  const std::string cmd = "OPENBLAS_NUM_THREADS=1 " + std::string(DIFFUSION_BINARY_DIR) +
                          "/bin/core_demo " + args + " 2>&1";
  DemoRun r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) r.output += buf;
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

TEST_CASE("core_demo regresses a noisy sine down to the noise floor", "[e2e][demo]") {
  const DemoRun run = run_demo("--steps 3000 --seed 0");
  CAPTURE(run.output);
  REQUIRE(run.status == 0);

  std::vector<double> logged;  // "step=<i> loss=<value>" lines
  double final_loss = -1.0;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);) {
    long step = 0;
    double value = 0.0;
    if (std::sscanf(line.c_str(), "step=%ld loss=%lf", &step, &value) == 2) logged.push_back(value);
    if (std::sscanf(line.c_str(), "final_loss=%lf", &value) == 1) final_loss = value;
  }
  REQUIRE(logged.size() >= 2);
  REQUIRE(final_loss > 0.0);
  CAPTURE(logged.front(), final_loss);
  // The noise floor is 0.1^2 = 0.01: within 2x of it means the network learned sin(3x).
  CHECK(final_loss < 0.02);
  CHECK(logged.front() > 10.0 * final_loss);
  CHECK(logged.back() < logged.front());
}

TEST_CASE("core_demo refuses a bad command line with status 2", "[e2e][demo]") {
  const DemoRun run = run_demo("--steps zero");
  CAPTURE(run.output);
  CHECK(run.status == 2);
  CHECK(run.output.find("--steps") != std::string::npos);
}
