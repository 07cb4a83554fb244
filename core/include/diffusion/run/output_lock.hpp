#pragma once
// One run owns a results file at a time. Two runs writing one output both used to succeed, and
// one result was lost (the second also deleted the first one's checkpoints); a run whose output
// was one of its own inputs (the experiment file, an init file) destroyed that input.
#include <string>
#include <vector>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// Refused before anything is read or written (runexp: exit 2).
class OutputConflict : public Error {
 public:
  using Error::Error;
};

/// Holds an exclusive advisory lock (flock) on "<dir>/.<file>.lock" beside the output for the
/// life of the object. The kernel releases it when the process ends, however it ends, so a
/// killed run never leaves the output locked. The lock file holds the owner's PID, which a
/// refused second run names. The file is removed on release.
class OutputLock {
 public:
  /// Throws OutputConflict naming the owner's PID when another process holds the output.
  explicit OutputLock(const std::string& out_path);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string lock_path_;
  int fd_ = -1;
};

/// Throws OutputConflict when `out_path` is the same file as one of `inputs` (compared by device
/// and inode, so another spelling of the same path is caught); `what` names each input
/// ("the experiment file", "init"). Inputs that do not exist, and an output that does not exist
/// yet, cannot be the same file.
void check_output_is_no_input(const std::string& out_path,
                              const std::vector<std::pair<std::string, std::string>>& inputs);

}  // namespace diffusion
