#pragma once
// Damaging and editing sealed files (file_seal.hpp) in end-to-end tests: flip one bit, or change
// a file through HDF5 and seal it again (to test the checks that come after the seal's).
#include <cstddef>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <diffusion/io/file_seal.hpp>

namespace diffusion::testing {

inline std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw Error("cannot write " + path);
}

/// Flip bit `bit` (0 = the lowest bit of the first byte) of the file.
inline void flip_bit(const std::string& path, std::size_t bit) {
  std::vector<char> b = file_bytes(path);
  if (bit / 8 >= b.size()) throw Error("flip_bit: " + path + " has fewer bits");
  b[bit / 8] = static_cast<char>(b[bit / 8] ^ (1 << (bit % 8)));
  write_bytes(path, b);
}

/// Seal the file again after it was changed through HDF5 (which keeps the 512-byte user block).
inline void reseal(const std::string& path) {
  std::vector<char> b = file_bytes(path);
  if (b.size() < kSealBytes) throw Error("reseal: " + path + " is too short");
  const std::string seal = seal_for(b.data() + kSealBytes, b.size() - kSealBytes);
  std::copy(seal.begin(), seal.end(), b.begin());
  write_bytes(path, b);
}

}  // namespace diffusion::testing
