#pragma once
// The seal of every file the toolkit writes (results files and checkpoints): a CRC-32 of the
// file's HDF5 image, stored in front of it in HDF5's user block, so that any change made to the
// file after it was written (a flipped bit on disk or in a copy, a truncation, an edit) is found
// when it is read back.
//
// HDF5 alone does not find these: with the default (earliest) format, no part of a file carries
// a checksum, and even the newer formats checksum only their metadata, never the data, the
// padding or attribute values. A flipped bit in a weight, in the stored config or in a step
// counter reads back without complaint. CRC-32 (zlib's, as in gzip, PNG and the zip records of
// PyTorch checkpoints) detects every single-bit error and every burst of up to 32 bits, and any
// other damage with probability 1 - 2^-32.
//
// Layout of a sealed file:
//   bytes [0, 512)           the seal: ASCII lines, then NUL bytes up to 512:
//                              "diffusion seal 1\ncrc32 <8 lower-case hex digits>\nbytes <decimal>\n"
//   bytes [512, 512 + bytes) the HDF5 file; its superblock at 512, so HDF5 (h5py too) reads it
//                            as a file with a 512-byte user block
// The CRC is zlib's crc32 of those `bytes` bytes; in Python:
//   zlib.crc32(open(path, "rb").read()[512:])
// Every byte is covered: the seal itself must be exactly the text its fields give, so a change
// in it (in the digits, the count or the padding) is found as well.
#include <cstddef>
#include <cstdint>
#include <string>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// The size of the seal (HDF5's smallest user block).
constexpr std::size_t kSealBytes = 512;

/// A file whose contents do not match its seal.
struct CorruptFile : Error {
  using Error::Error;
};

/// zlib's CRC-32 of n bytes.
std::uint32_t crc32_of(const void* data, std::size_t n);

/// The kSealBytes bytes that seal `image`, an HDF5 file image whose superblock is at 0.
std::string seal_for(const void* image, std::size_t size);

/// Where a file's HDF5 image starts: kSealBytes for a sealed file whose seal matches, 0 for an
/// HDF5 file without a user block (written before seals existed: it is read unchecked). Throws
/// CorruptFile saying what does not match (without the path; the caller adds it), and Error
/// "it is not an HDF5 file" for a file with neither a seal nor HDF5 at its start (a text file).
std::size_t check_seal(const void* file_bytes, std::size_t size);
/// The same for the open file `fd`, read with pread (its offset is not moved) in pieces, so
/// that a large file is never held in memory whole. Error if it cannot be read.
std::size_t check_seal_of_fd(int fd);

}  // namespace diffusion
