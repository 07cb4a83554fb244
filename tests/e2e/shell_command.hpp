#pragma once
// A tool of the build run through the shell, for end-to-end tests of the tools (report,
// score_samples): its exit status and what it wrote to stdout.
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::testing {

struct CommandOutput {
  int status = -1;  ///< exit code, -1 if it did not exit normally
  std::string out;  ///< stdout (add 2>&1 to the command for stderr too)
};

/// `cmd` through /bin/sh, killed after 300 s.
inline CommandOutput run_command(const std::string& cmd) {
  CommandOutput o;
  FILE* p = ::popen(("timeout -k 10 300 " + cmd).c_str(), "r");
  if (!p) throw Error("popen failed: " + cmd);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) o.out.append(buf, n);
  const int raw = ::pclose(p);
  o.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return o;
}

/// The path of a program the build made (build/bin/<tool>).
inline std::string tool_path(const std::string& tool) { return std::string(DIFFUSION_BINARY_DIR) + "/bin/" + tool; }

/// s quoted for /bin/sh.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace diffusion::testing
