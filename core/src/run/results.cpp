#include "diffusion/run/results.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "diffusion/io/h5_memory_file.hpp"
#include "diffusion/io/hdf5_io.hpp"

namespace diffusion {
namespace fs = std::filesystem;

void check_output_path(const std::string& out_path) {
  const fs::path out(out_path);
  fs::path dir = out.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir))
    throw Error("output " + out_path + ": folder " + dir.string() + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    throw Error("output " + out_path + ": folder " + dir.string() + " is not writable");
  if (fs::is_directory(out)) throw Error("output " + out_path + " is a folder, expected a file path");
}

std::string explain_file_size_limit(const std::string& error) {
  const std::string too_large = std::strerror(EFBIG);
  if (error.find(too_large) == std::string::npos || error.find("file size limit") != std::string::npos) return error;
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    return error + " (over this process's file size limit of " + std::to_string(limit.rlim_cur) +
           " bytes: `ulimit -f` is " + std::to_string(limit.rlim_cur / 1024) + "; raise it)";
  return error + " (larger than the file system allows for one file)";
}

ResultsWriter::ResultsWriter(const std::string& out_path) : out_path_(out_path) {
  check_output_path(out_path);
  const fs::path out(out_path);
  fs::path dir = out.parent_path();
  if (dir.empty()) dir = ".";
  temp_path_ = (dir / ("." + out.filename().string() + "." + std::to_string(::getpid()) + ".tmp")).string();
  // Created now, empty, so an output that cannot be written fails before any work is done;
  // the file itself is built in memory and written into it by finish().
  const int fd = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("output " + out_path + ": cannot create " + temp_path_ + ": " + std::strerror(errno));
  ::close(fd);
  try {
    H5::Exception::dontPrint();
    file_ = h5_create_in_memory(temp_path_);
    write_attribute(file_, "status", "running");
    write_attribute(file_, "version", kResultsVersion);
  } catch (const H5::Exception& e) {
    std::remove(temp_path_.c_str());
    throw Error("output " + out_path + ": cannot create " + temp_path_ + ": " + e.getDetailMsg());
  }
}

ResultsWriter::~ResultsWriter() {
  if (!done_) abandon();
}

void ResultsWriter::finish(const std::string& status) {
  write_attribute(file_, "status", status);
  try {
    // A failed save (e.g. a full disk) removes the partial temporary file and leaves the
    // in-memory file open, so the caller can still record the failure or abandon it.
    h5_save_image(file_, temp_path_);
  } catch (const Error& e) {
    throw Error("output " + out_path_ + ": " + explain_file_size_limit(e.what()));
  }
  close_handles();
  if (std::rename(temp_path_.c_str(), out_path_.c_str()) != 0) {
    const int err = errno;
    std::remove(temp_path_.c_str());
    done_ = true;
    throw Error("output " + out_path_ + ": cannot rename " + temp_path_ + " into place: " + std::strerror(err));
  }
  fs::path dir = fs::path(out_path_).parent_path();
  fsync_folder(dir.empty() ? "." : dir.string());
  done_ = true;
}

void ResultsWriter::close_handles() {
  // In memory, so closing writes nothing and cannot fail on a full disk.
  file_.close();
}

void ResultsWriter::abandon() {
  try {
    close_handles();
  } catch (const H5::Exception&) {
  }
  std::remove(temp_path_.c_str());
  done_ = true;
}

}  // namespace diffusion
