#pragma once
// HDF5 files built in memory and written to disk in one piece (the results file, checkpoints).
//
// HDF5 handles a failed disk write badly: once a write or a close has failed (a full disk, a
// file size limit), closing the file or its groups fails too and leaves dangling handles that
// crash the process when the library shuts down. A file held by the core driver without a
// backing store never touches the disk, so nothing HDF5 does can fail that way; its finished
// image is written with plain write(2) calls whose errors are reported like any other.
//
// Every image is written sealed (file_seal.hpp): a CRC-32 of it in a 512-byte HDF5 user block in
// front, and h5_open_verified reads such a file back only if its bytes still match.
#include <string>

#include <H5Cpp.h>

namespace diffusion {

/// A new, empty HDF5 file in memory. `name` (usually the path it will be saved to) names it in
/// messages; nothing is created on disk.
H5::H5File h5_create_in_memory(const std::string& name);

/// Write the current image of an in-memory file (h5_create_in_memory) to `path`, created or
/// truncated, sealed (file_seal.hpp), and fsync it. On failure the partial file is removed and Error says
/// "<path>: <what failed>: <reason>"; the in-memory file is unchanged and can still be closed.
void h5_save_image(H5::H5File& file, const std::string& path);

/// A file opened read-only whose seal was checked (file_seal.hpp) on the very file HDF5 holds
/// open. `sealed` is false for a file without a seal (written before seals existed), which is
/// read unchecked.
struct VerifiedH5File {
  H5::H5File file;
  bool sealed = false;
};
/// Throws CorruptFile "<path>: <what does not match>" when the file differs from its seal, and
/// Error "<path>: <reason>" when it cannot be read or HDF5 cannot open it.
VerifiedH5File h5_open_verified(const std::string& path);

/// fsync a folder, so that a file just renamed into it (a saved image) survives a crash.
/// Best effort: a folder that cannot be opened is skipped.
void fsync_folder(const std::string& folder);

}  // namespace diffusion
