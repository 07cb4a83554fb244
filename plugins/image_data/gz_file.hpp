#pragma once
// Whole files read through zlib's gzread, which inflates gzip files and passes any other file
// through unchanged: Debian ships the IDX files and sklearn's digits gzip-compressed, a user's
// copy may not be.
#include <cstdint>
#include <string>
#include <vector>

namespace diffusion::image_data {

/// The bytes of `path`, inflated if it is gzip-compressed. Error "<path>: ..." when it cannot be
/// opened or its compressed stream is damaged or ends early (a truncated download).
std::vector<std::uint8_t> read_maybe_gzip(const std::string& path);

/// True if `path` names an existing regular file (or a link to one).
bool file_exists(const std::string& path);

}  // namespace diffusion::image_data
