#include "diffusion/run/output_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

namespace diffusion {
namespace fs = std::filesystem;

namespace {

std::string lock_path_for(const std::string& out_path) {
  const fs::path out(out_path);
  return (out.parent_path() / ("." + out.filename().string() + ".lock")).string();
}

std::string read_owner(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string pid = n > 0 ? std::string(buf, std::size_t(n)) : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

int OutputLock::try_acquire(bool& opened) {
  // The lock file may be removed by its previous owner between our open and our lock; then we
  // hold a lock on a file nobody else can find, so check that the path still names it, and
  // retry if not.
  for (;;) {
    fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    opened = fd_ >= 0;
    if (fd_ < 0) return errno;
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd_);
      fd_ = -1;
      return err;
    }
    struct stat held {}, named {};
    if (::fstat(fd_, &held) == 0 && ::stat(lock_path_.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino)
      break;
    ::close(fd_);
    fd_ = -1;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    // The PID is only for the message of a refused run; the lock itself holds.
  }
  return 0;
}

OutputLock::OutputLock(const std::string& out_path) : out_path_(out_path), lock_path_(lock_path_for(out_path)) {
  // Another run that clears a dead run's temporary files (stale_temp_files.hpp) holds the lock
  // of that run's output for the moment it takes to remove them: wait that long before refusing.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
  int err = 0;
  bool opened = false;
  while ((err = try_acquire(opened)) == EWOULDBLOCK && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (err == 0) return;
  if (err == EWOULDBLOCK) {
    std::string owner = "unknown";
    if (const int fd = ::open(lock_path_.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
      owner = read_owner(fd);
      ::close(fd);
    }
    throw OutputConflict("output " + out_path + " is being written by another run (process " + owner + "; lock " +
                         lock_path_ + "); wait for it to end, or give this run another --out");
  }
  if (opened)
    throw OutputConflict("output " + out_path + ": cannot lock " + lock_path_ + ": " + std::strerror(err));
  throw OutputConflict("output " + out_path + ": cannot create its lock file " + lock_path_ + ": " + std::strerror(err));
}

OutputLock::OutputLock(const std::string& out_path, std::try_to_lock_t)
    : out_path_(out_path), lock_path_(lock_path_for(out_path)) {
  bool opened = false;
  try_acquire(opened);
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // while still locked: a waiting opener then retries on a new file
  ::close(fd_);
}

void check_output_is_no_input(const std::string& out_path,
                              const std::vector<std::pair<std::string, std::string>>& inputs) {
  struct stat out {};
  if (::stat(out_path.c_str(), &out) != 0) return;
  for (const auto& [what, path] : inputs) {
    struct stat in {};
    if (path.empty() || ::stat(path.c_str(), &in) != 0) continue;
    if (in.st_dev == out.st_dev && in.st_ino == out.st_ino)
      throw OutputConflict("output " + out_path + " is " + what + " (" + path +
                           "): the run would overwrite its own input; give it another --out");
  }
}

}  // namespace diffusion
