#include "digits_csv.hpp"

#include <diffusion/tensor/tensor.hpp>

#include "gz_file.hpp"

namespace diffusion::image_data {

ImageSet read_digits_csv(const std::string& path) {
  constexpr std::size_t kSide = 8, kPixels = kSide * kSide;
  const std::vector<std::uint8_t> text = read_maybe_gzip(path);
  ImageSet s;
  s.channels = 1, s.height = kSide, s.width = kSide, s.byte_max = 16.0f;
  std::size_t line = 1, pos = 0;
  const auto fail = [&](const std::string& what) {
    throw Error(path + ":" + std::to_string(line) + ": " + what +
                "; expected 65 comma-separated integers per line: 64 pixels 0..16, then the label 0..9");
  };
  while (pos < text.size()) {
    if (text[pos] == '\n' || text[pos] == '\r') {  // blank lines (a trailing newline) are skipped
      line += text[pos] == '\n';
      ++pos;
      continue;
    }
    for (std::size_t field = 0; field <= kPixels; ++field) {
      if (field > 0) {
        if (pos >= text.size() || text[pos] != ',') fail("only " + std::to_string(field) + " values");
        ++pos;
      }
      // Whole numbers, possibly written as floats ("16.0"), as numpy.savetxt may.
      std::size_t start = pos;
      int v = 0;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && pos - start < 4) v = v * 10 + (text[pos++] - '0');
      if (pos == start) fail("value " + std::to_string(field + 1) + " is not a non-negative integer");
      if (pos < text.size() && text[pos] == '.') {
        ++pos;
        while (pos < text.size() && text[pos] == '0') ++pos;
      }
      if (pos < text.size() && text[pos] != ',' && text[pos] != '\n' && text[pos] != '\r')
        fail("value " + std::to_string(field + 1) + " is not a whole number");
      if (field < kPixels) {
        if (v > 16) fail("pixel " + std::to_string(field + 1) + " is " + std::to_string(v) + ", above 16");
        s.bytes.push_back(static_cast<std::uint8_t>(v));
      } else {
        if (v > 9) fail("the label is " + std::to_string(v) + ", above 9");
        s.labels.push_back(v);
      }
    }
    if (pos < text.size() && text[pos] != '\n' && text[pos] != '\r') fail("more than 65 values");
  }
  if (s.labels.empty()) throw Error(path + ": no images (an empty file)");
  s.check(path);
  return s;
}

}  // namespace diffusion::image_data
