#include "diffusion/io/file_seal.hpp"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

namespace diffusion {
namespace {

constexpr char kMagic[] = "diffusion seal 1\n";
// The HDF5 signature, which an unsealed file (superblock at 0) starts with.
constexpr unsigned char kHdf5Signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

std::string seal_text(std::uint32_t crc, std::size_t size) {
  std::string s = std::string(kMagic) + "crc32 " + hex32(crc) + "\nbytes " + std::to_string(size) + "\n";
  s.resize(kSealBytes, '\0');
  return s;
}

/// The digits after `prefix` up to the next '\n' of `text` from `pos`; advances pos past it.
bool field(const std::string& text, std::size_t& pos, const char* prefix, std::string& value) {
  const std::size_t n = std::strlen(prefix);
  if (text.compare(pos, n, prefix) != 0) return false;
  const std::size_t end = text.find('\n', pos + n);
  if (end == std::string::npos) return false;
  value = text.substr(pos + n, end - pos - n);
  pos = end + 1;
  return !value.empty() && value.size() <= 20;
}

}  // namespace

std::uint32_t crc32_of(const void* data, std::size_t n) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  // zlib takes 32-bit lengths.
  while (n > 0) {
    const std::size_t chunk = std::min<std::size_t>(n, std::numeric_limits<uInt>::max());
    crc = ::crc32(crc, p, static_cast<uInt>(chunk));
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

std::string seal_for(const void* image, std::size_t size) { return seal_text(crc32_of(image, size), size); }

namespace {

/// The stored CRC and size of a seal (its first kSealBytes bytes, or all of a shorter file);
/// start 0 for an unsealed HDF5 file.
struct SealFields {
  std::size_t start = 0;
  std::uint32_t crc = 0;
  std::size_t bytes = 0;
};

/// head: the file's first min(size, kSealBytes + 8) bytes.
SealFields parse_seal(const char* head, std::size_t n, std::size_t file_size) {
  SealFields f;
  const auto signature_at = [&](std::size_t at) {
    return n >= at + sizeof kHdf5Signature && std::memcmp(head + at, kHdf5Signature, sizeof kHdf5Signature) == 0;
  };
  if (signature_at(0)) return f;
  // Sealed, if it has the seal's first line or HDF5 after one; damage to one of the two leaves
  // the other. Anything else is not a file of this toolkit at all.
  const std::size_t magic = std::strlen(kMagic);
  if (!(n >= magic && std::memcmp(head, kMagic, magic) == 0) && !signature_at(kSealBytes))
    throw Error("it is not an HDF5 file");
  if (n < kSealBytes)
    throw CorruptFile("it has " + std::to_string(file_size) + " bytes, fewer than its seal alone (" +
                      std::to_string(kSealBytes) + "): truncated, or not a file this toolkit wrote");
  const std::string text(head, kSealBytes);
  std::size_t pos = std::strlen(kMagic);
  std::string crc_hex, count;
  const bool parsed = text.compare(0, pos, kMagic) == 0 && field(text, pos, "crc32 ", crc_hex) &&
                      field(text, pos, "bytes ", count) && crc_hex.size() == 8 &&
                      crc_hex.find_first_not_of("0123456789abcdef") == std::string::npos &&
                      count.find_first_not_of("0123456789") == std::string::npos;
  if (!parsed)
    throw CorruptFile("its seal (the first " + std::to_string(kSealBytes) +
                      " bytes) is damaged, or it is not a file this toolkit wrote");
  f.start = kSealBytes;
  f.crc = static_cast<std::uint32_t>(std::stoul(crc_hex, nullptr, 16));
  f.bytes = static_cast<std::size_t>(std::stoull(count));
  // Exactly the text its fields give: a change anywhere in the seal (padding included) is found.
  if (seal_text(f.crc, f.bytes) != text)
    throw CorruptFile("its seal (the first " + std::to_string(kSealBytes) + " bytes) is damaged");
  if (file_size - kSealBytes != f.bytes)
    throw CorruptFile("it has " + std::to_string(file_size - kSealBytes) + " bytes after its seal, the seal says " +
                      std::to_string(f.bytes) + (file_size - kSealBytes < f.bytes ? " (truncated)" : " (extended)"));
  return f;
}

void compare_crc(std::uint32_t actual, std::uint32_t stored) {
  if (actual != stored)
    throw CorruptFile("its CRC-32 is " + hex32(actual) + ", its seal says " + hex32(stored) +
                      ": the file changed after it was written (damaged on disk or in a copy, or edited)");
}

}  // namespace

std::size_t check_seal(const void* file_bytes, std::size_t size) {
  const auto* bytes = static_cast<const char*>(file_bytes);
  const SealFields f = parse_seal(bytes, std::min(size, kSealBytes + 8), size);
  if (f.start > 0) compare_crc(crc32_of(bytes + kSealBytes, f.bytes), f.crc);
  return f.start;
}

std::size_t check_seal_of_fd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(std::string("cannot stat: ") + std::strerror(errno));
  const std::size_t size = static_cast<std::size_t>(st.st_size);
  std::vector<char> buf(std::size_t(1) << 20);
  // pread until n bytes at offset are in buf (or the file ends); returns the count read.
  const auto read_at = [&](std::size_t offset, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t k = ::pread(fd, buf.data() + done, n - done, static_cast<off_t>(offset + done));
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) throw Error(std::string("cannot read: ") + std::strerror(errno));
      if (k == 0) break;
      done += static_cast<std::size_t>(k);
    }
    return done;
  };
  const SealFields f = parse_seal(buf.data(), read_at(0, std::min(size, kSealBytes + 8)), size);
  if (f.start == 0) return 0;
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (std::size_t offset = kSealBytes; offset < size;) {
    const std::size_t n = read_at(offset, std::min(buf.size(), size - offset));
    if (n == 0) throw CorruptFile("it ended while being read (truncated meanwhile?)");
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
    offset += n;
  }
  compare_crc(static_cast<std::uint32_t>(crc), f.crc);
  return f.start;
}

}  // namespace diffusion
