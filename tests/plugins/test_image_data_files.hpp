#pragma once
// Tiny synthetic data files for the image data tests: IDX files (plain or gzip-compressed)
// and HDF5 files, written by the test itself.
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <H5Cpp.h>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::testing {

/// An IDX file's bytes: magic 0x00 0x00 0x08 <rank>, big-endian sizes, then `data`.
inline std::vector<std::uint8_t> idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& data,
                                           std::uint8_t type = 0x08) {
  std::vector<std::uint8_t> out{0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (const std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(d >> shift));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw Error("cannot write " + path);
}

/// The bytes gzip-compressed (as Debian ships the IDX files), through zlib's gz writer.
inline void write_gzip(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  if (!f) throw Error("cannot write " + path);
  if (!bytes.empty() && gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) != int(bytes.size()))
    throw Error("gzwrite failed for " + path);
  gzclose(f);
}

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

/// A dataset of the given HDF5 type and shape in file f, from `data` of the matching C type.
template <class T>
void write_h5(H5::H5File& f, const std::string& name, const H5::PredType& type, const std::vector<hsize_t>& dims,
              const std::vector<T>& data) {
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DataSet ds = f.createDataSet(name, type, space);
  ds.write(data.data(), type);
}

}  // namespace diffusion::testing
