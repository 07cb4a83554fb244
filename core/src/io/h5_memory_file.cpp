#include "diffusion/io/h5_memory_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "diffusion/io/file_seal.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {
namespace {

/// write(2) until all n bytes are written; false (errno set) on failure.
bool write_all(int fd, const char* data, std::size_t n) {
  for (std::size_t done = 0; done < n;) {
    const ssize_t k = ::write(fd, data + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) errno = EIO;  // no progress and no reason: do not loop
    if (k <= 0) return false;
    done += static_cast<std::size_t>(k);
  }
  return true;
}

}  // namespace

H5::H5File h5_create_in_memory(const std::string& name) {
  H5::FileAccPropList fapl;
  fapl.setCore(1 << 20, false);  // grow in 1 MiB steps; no backing store: never written by HDF5
  return H5::H5File(name, H5F_ACC_TRUNC, H5::FileCreatPropList::DEFAULT, fapl);
}

void h5_save_image(H5::H5File& file, const std::string& path) {
  std::vector<char> image;
  try {
    file.flush(H5F_SCOPE_GLOBAL);
    const ssize_t size = H5Fget_file_image(file.getId(), nullptr, 0);
    if (size < 0) throw Error(path + ": cannot take the HDF5 file image");
    image.resize(static_cast<std::size_t>(size));
    if (H5Fget_file_image(file.getId(), image.data(), image.size()) != size)
      throw Error(path + ": cannot take the HDF5 file image");
  } catch (const H5::Exception& e) {
    throw Error(path + ": cannot take the HDF5 file image: " + e.getDetailMsg());
  }
  const auto fail = [&](const char* what, int fd) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    std::remove(path.c_str());
    throw Error(path + ": " + what + ": " + std::strerror(err));
  };
  // The seal goes in front, as a 512-byte HDF5 user block (file_seal.hpp).
  const std::string seal = seal_for(image.data(), image.size());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", fd);
  if (!write_all(fd, seal.data(), seal.size()) || !write_all(fd, image.data(), image.size()))
    fail("writing failed", fd);
  if (::fsync(fd) != 0) fail("fsync failed", fd);
  if (::close(fd) != 0) fail("writing failed", -1);
}

VerifiedH5File h5_open_verified(const std::string& path) {
  // The seal first: HDF5 never parses a file whose bytes are not those written.
  const auto check = [&](int fd) {
    try {
      return check_seal_of_fd(fd) > 0;
    } catch (const CorruptFile& c) {
      throw CorruptFile(path + ": " + c.what());
    } catch (const Error& e) {
      throw Error(path + ": " + e.what());
    }
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat checked {};
  VerifiedH5File f;
  try {
    f.sealed = check(fd);
    ::fstat(fd, &checked);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  H5::Exception::dontPrint();
  try {
    f.file = H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    throw Error(path + ": not a readable HDF5 file (" + e.getDetailMsg() + ")");
  }
  // The path replaced meanwhile (the toolkit renames new files into place, never changes one):
  // check the file HDF5 holds open, through its own descriptor.
  void* handle = nullptr;
  struct stat opened {};
  if (H5Fget_vfd_handle(f.file.getId(), H5P_DEFAULT, &handle) < 0 || handle == nullptr ||
      ::fstat(*static_cast<int*>(handle), &opened) != 0)
    throw Error(path + ": cannot reach the file HDF5 opened to check its seal");
  if (opened.st_dev != checked.st_dev || opened.st_ino != checked.st_ino) f.sealed = check(*static_cast<int*>(handle));
  return f;
}

void fsync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace diffusion
