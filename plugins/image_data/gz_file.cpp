#include "gz_file.hpp"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::image_data {

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

std::vector<std::uint8_t> read_maybe_gzip(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(path + ": a folder, not a file");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  gzbuffer(f, 1 << 17);
  std::vector<std::uint8_t> out;
  std::uint8_t chunk[1 << 16];
  int got = 0;
  while ((got = gzread(f, chunk, sizeof chunk)) > 0) out.insert(out.end(), chunk, chunk + got);
  // A gzip stream cut short reads as far as it goes and then reports Z_BUF_ERROR.
  int code = Z_OK;
  const std::string msg = gzerror(f, &code);
  gzclose(f);
  if (code == Z_BUF_ERROR)
    throw Error(path + ": the compressed file is truncated (zlib: " + msg + " after " + std::to_string(out.size()) +
                " inflated bytes)");
  if (got < 0 || code != Z_OK) throw Error(path + ": unreadable (zlib: " + msg + ")");
  return out;
}

}  // namespace diffusion::image_data
