#pragma once
// The 8x8 handwritten digits shipped with scikit-learn (the UCI "Optical Recognition of
// Handwritten Digits" test set: 1,797 images of 32x32 bitmaps counted in 4x4 blocks, so each
// pixel is 0..16): digits.csv.gz, one image per line, 64 pixel values row by row, then the
// label 0..9.
#include <string>

#include "image_set.hpp"

namespace diffusion::image_data {

/// Where Debian's python3-sklearn puts the file.
inline const char* const kDigitsPath = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

/// The images as a one-channel 8x8 set with byte_max 16 and their labels. Error
/// "<path>:<line>: ..." for a line that is not 65 integers (pixels 0..16, a label 0..9).
ImageSet read_digits_csv(const std::string& path);

}  // namespace diffusion::image_data
