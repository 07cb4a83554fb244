#pragma once
// runexp as a child process, for end-to-end tests that signal it, limit it or time it: stdout
// and stderr go to <log_prefix>.out and <log_prefix>.err, stdin is /dev/null.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::testing {

inline std::string runexp_path() { return std::string(DIFFUSION_BINARY_DIR) + "/bin/runexp"; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Child {
  int status = -1;       ///< exit code, -1 if it did not exit normally
  double seconds = 0;    ///< from wait_runexp's call to the child's end
  std::string out, err;  ///< what it wrote to stdout and stderr
};

/// Start `runexp args...`; `in_child` runs in the child just before exec (setrlimit, signal
/// dispositions: only async-signal-safe calls, the test process may have threads).
inline pid_t spawn_runexp(const std::vector<std::string>& args, const std::string& log_prefix,
                          void (*in_child)() = nullptr) {
  // Everything that allocates happens before fork.
  std::vector<std::string> all{runexp_path()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out_path = log_prefix + ".out", err_path = log_prefix + ".err";
  const pid_t pid = ::fork();
  if (pid < 0) throw Error("fork failed");
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    ::dup2(out, 1), ::dup2(err, 2), ::dup2(in, 0);
    if (in_child) in_child();
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

/// Wait for a child started by spawn_runexp (at most 300 s, then SIGKILL).
inline Child wait_runexp(pid_t pid, const std::string& log_prefix) {
  Child c;
  int raw = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (::waitpid(pid, &raw, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(300)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &raw, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  c.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  c.out = read_text(log_prefix + ".out");
  c.err = read_text(log_prefix + ".err");
  return c;
}

/// Run `runexp args...` to its end.
inline Child run_runexp(const std::vector<std::string>& args, const std::string& log_prefix,
                        void (*in_child)() = nullptr) {
  return wait_runexp(spawn_runexp(args, log_prefix, in_child), log_prefix);
}

}  // namespace diffusion::testing
