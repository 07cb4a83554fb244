#include "idx_file.hpp"

#include <cstdio>

#include <diffusion/tensor/tensor.hpp>

#include "gz_file.hpp"

namespace diffusion::image_data {
namespace {

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

std::uint32_t big_endian32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}

constexpr std::uint8_t kUnsignedByte = 0x08;

}  // namespace

IdxArray parse_idx(const std::vector<std::uint8_t>& bytes, const std::string& path, std::size_t rank) {
  const std::uint32_t expected_magic = 0x0800u | std::uint32_t(rank);
  const std::string expect = "expected the IDX magic number " + hex32(expected_magic) + " (unsigned bytes, rank " +
                             std::to_string(rank) + ")";
  if (bytes.size() < 4)
    throw Error(path + ": not an IDX file: " + std::to_string(bytes.size()) + " bytes, too short for the magic number; " + expect);
  const std::uint32_t magic = big_endian32(bytes.data());
  if (bytes[0] != 0 || bytes[1] != 0) throw Error(path + ": not an IDX file: magic number " + hex32(magic) + ", " + expect);
  if (bytes[2] != kUnsignedByte || bytes[3] != rank)
    throw Error(path + ": IDX magic number " + hex32(magic) + " (type 0x" + hex32(bytes[2]).substr(8) + ", rank " +
                std::to_string(bytes[3]) + "), " + expect);
  const std::size_t header = 4 + 4 * rank;
  if (bytes.size() < header)
    throw Error(path + ": truncated IDX file: the header of a rank-" + std::to_string(rank) + " file is " +
                std::to_string(header) + " bytes, found " + std::to_string(bytes.size()));
  IdxArray a;
  std::size_t count = 1;
  std::string dims;
  for (std::size_t d = 0; d < rank; ++d) {
    a.dims.push_back(big_endian32(bytes.data() + 4 + 4 * d));
    count *= a.dims.back();
    dims += (d ? " x " : "") + std::to_string(a.dims.back());
  }
  const std::size_t body = bytes.size() - header;
  if (body < count)
    throw Error(path + ": truncated IDX file: the header gives " + dims + " unsigned bytes (" + std::to_string(count) +
                " bytes after the " + std::to_string(header) + "-byte header), found " + std::to_string(body));
  if (body > count)
    throw Error(path + ": the header gives " + dims + " unsigned bytes (" + std::to_string(count) + " bytes after the " +
                std::to_string(header) + "-byte header), but the file has " + std::to_string(body - count) +
                " bytes more: not the file its header describes");
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

IdxArray read_idx(const std::string& path, std::size_t rank) { return parse_idx(read_maybe_gzip(path), path, rank); }

ImageSet read_idx_images(const std::string& images_path, const std::string& labels_path) {
  IdxArray images = read_idx(images_path, 3);
  IdxArray labels = read_idx(labels_path, 1);
  if (images.dims[0] != labels.dims[0])
    throw Error(images_path + " holds " + std::to_string(images.dims[0]) + " images but " + labels_path + " " +
                std::to_string(labels.dims[0]) + " labels");
  if (images.dims[0] == 0 || images.dims[1] == 0 || images.dims[2] == 0) throw Error(images_path + ": no images");
  ImageSet s;
  s.channels = 1, s.height = images.dims[1], s.width = images.dims[2], s.byte_max = 255.0f;
  s.bytes = std::move(images.data);
  s.labels.assign(labels.data.begin(), labels.data.end());
  s.check(images_path);
  return s;
}

}  // namespace diffusion::image_data
