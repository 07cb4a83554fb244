#include "diffusion/io/h5_memory_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

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
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create", fd);
  for (std::size_t done = 0; done < image.size();) {
    const ssize_t n = ::write(fd, image.data() + done, image.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;  // no progress and no reason: do not loop
    if (n <= 0) fail("writing failed", fd);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync failed", fd);
  if (::close(fd) != 0) fail("writing failed", -1);
}

void fsync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace diffusion
