#pragma once
// One run owns a results file at a time. Two runs writing one output both used to succeed, and
// one result was lost (the second also deleted the first one's checkpoints); a run whose output
// was one of its own inputs (the experiment file, an init file) destroyed that input.
#include <mutex>
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
/// killed run never leaves the output locked, and a free lock means no live run writes that
/// output (stale_temp_files.hpp relies on this). The lock file holds the owner's PID, which a
/// refused second run names. The file is removed on release.
class OutputLock {
 public:
  /// Throws OutputConflict naming the owner's PID when another process holds the output. A
  /// lock held only for a moment (another run clearing a dead run's files) is waited for.
  explicit OutputLock(const std::string& out_path);
  /// Takes the lock only if it is free now; owns() says whether it did. Never throws.
  OutputLock(const std::string& out_path, std::try_to_lock_t);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

  bool owns() const { return fd_ >= 0; }
  /// The output path as given.
  const std::string& out_path() const { return out_path_; }

 private:
  /// One attempt: 0 when locked, else the errno of the failure (EWOULDBLOCK: held by another);
  /// `opened` says whether the lock file could be opened.
  int try_acquire(bool& opened);

  std::string out_path_, lock_path_;
  int fd_ = -1;
};

/// Throws OutputConflict when `out_path` is the same file as one of `inputs` (compared by device
/// and inode, so another spelling of the same path is caught); `what` names each input
/// ("the experiment file", "init"). Inputs that do not exist, and an output that does not exist
/// yet, cannot be the same file.
void check_output_is_no_input(const std::string& out_path,
                              const std::vector<std::pair<std::string, std::string>>& inputs);

}  // namespace diffusion
