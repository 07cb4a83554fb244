#include "hdf5_images.hpp"

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/tensor/tensor.hpp>

#include "gz_file.hpp"

namespace diffusion::image_data {
namespace {

H5::H5File open_file(const std::string& path) {
  if (!file_exists(path)) throw Error(path + ": no such file (expected an HDF5 file of images)");
  H5::Exception::dontPrint();
  try {
    if (!H5::H5File::isHdf5(path)) throw Error(path + ": not an HDF5 file");
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    throw Error(path + ": unreadable as HDF5 (" + e.getDetailMsg() + ")");
  }
}

/// The dataset at `key`, or Error naming the file, the key and what the file holds there.
H5::DataSet open_dataset(const H5::H5File& file, const std::string& path, const std::string& key, const char* role) {
  const H5::Group root = file.openGroup("/");
  if (!h5_exists(root, key)) {
    const std::size_t slash = key.find_last_of('/');
    const std::string parent = slash == std::string::npos ? "" : key.substr(0, slash);
    std::string held;
    if (parent.empty() || h5_exists(root, parent)) {
      const H5::Group g = parent.empty() ? root : root.openGroup(parent);
      for (hsize_t i = 0; i < g.getNumObjs(); ++i) held += (held.empty() ? "" : ", ") + g.getObjnameByIdx(i);
    }
    throw Error(path + ": no dataset '" + key + "' for the " + role + " (" +
                (held.empty() ? std::string("nothing there") : "the file has: " + held) + ")");
  }
  try {
    return root.openDataSet(key);
  } catch (const H5::Exception&) {
    throw Error(path + ": '" + key + "' is not a dataset (a group?); expected the " + role);
  }
}

std::vector<std::size_t> dims_of(const H5::DataSet& ds) {
  const H5::DataSpace space = ds.getSpace();
  std::vector<hsize_t> d(static_cast<std::size_t>(std::max(space.getSimpleExtentNdims(), 0)));
  if (!d.empty()) space.getSimpleExtentDims(d.data());
  return std::vector<std::size_t>(d.begin(), d.end());
}

std::string dims_str(const std::vector<std::size_t>& d) {
  std::ostringstream s;
  s << "(";
  for (std::size_t i = 0; i < d.size(); ++i) s << (i ? ", " : "") << d[i];
  s << ")";
  return s.str();
}

}  // namespace

bool hdf5_has_dataset(const std::string& path, const std::string& key) {
  const H5::H5File f = open_file(path);
  return h5_exists(f.openGroup("/"), key);
}

ImageSet read_hdf5_images(const std::string& path, const Hdf5ImageKeys& keys) {
  const H5::H5File file = open_file(path);
  const std::string where = path + ":/" + keys.images;
  const H5::DataSet ds = open_dataset(file, path, keys.images, "images");
  const std::vector<std::size_t> dims = dims_of(ds);
  if (dims.size() != 3 && dims.size() != 4)
    throw Error(where + ": the images have shape " + dims_str(dims) + "; expected (N, H, W) or " +
                (keys.channels_last ? "(N, H, W, C)" : "(N, C, H, W)"));
  const std::size_t n = dims[0];
  const std::size_t c = dims.size() == 3 ? 1 : keys.channels_last ? dims[3] : dims[1];
  const std::size_t h = dims.size() == 3 ? dims[1] : keys.channels_last ? dims[1] : dims[2];
  const std::size_t w = dims.size() == 3 ? dims[2] : keys.channels_last ? dims[2] : dims[3];
  if (n == 0 || c == 0 || h == 0 || w == 0) throw Error(where + ": no images (shape " + dims_str(dims) + ")");

  const H5T_class_t cls = ds.getTypeClass();
  if (cls != H5T_INTEGER && cls != H5T_FLOAT)
    throw Error(where + ": the images are not numbers (expected an integer or floating-point dataset)");
  bool u8 = false;
  std::pair<double, double> range{0.0, 1.0};
  if (cls == H5T_INTEGER) {
    const H5::IntType t = ds.getIntType();
    const bool is_unsigned = t.getSign() == H5T_SGN_NONE;
    u8 = is_unsigned && t.getSize() == 1;
    if (is_unsigned && t.getSize() <= 2)
      range = {0.0, t.getSize() == 1 ? 255.0 : 65535.0};
    else if (!keys.range)
      throw Error(where + ": " + std::to_string(8 * t.getSize()) + "-bit " + (is_unsigned ? "unsigned" : "signed") +
                  " integer images: give range: [lo, hi], the values that map to -1 and +1");
  }
  if (keys.range) range = *keys.range;
  if (!(range.second > range.first)) throw Error(where + ": range: [lo, hi] needs hi > lo");

  ImageSet s;
  s.channels = c, s.height = h, s.width = w;
  const std::size_t total = n * c * h * w;
  std::vector<float> raw;
  H5::Exception::dontPrint();
  try {
    if (u8 && range.first == 0.0 && range.second == 255.0) {
      s.bytes.resize(total);
      ds.read(s.bytes.data(), H5::PredType::NATIVE_UINT8);
    } else {
      raw.resize(total);
      ds.read(raw.data(), H5::PredType::NATIVE_FLOAT);
    }
  } catch (const H5::Exception& e) {
    throw Error(where + ": unreadable (" + e.getDetailMsg() + ")");
  }
  if (!raw.empty()) {
    const auto [lo, hi] = std::minmax_element(raw.begin(), raw.end());
    if (!std::isfinite(*lo) || !std::isfinite(*hi) || *lo < range.first || *hi > range.second) {
      std::ostringstream msg;
      msg << where << ": values from " << *lo << " to " << *hi << " lie outside the range [" << range.first << ", "
          << range.second << "] that maps to [-1, 1]; set range: [lo, hi]";
      throw Error(msg.str());
    }
    s.values.resize(total);
    const double scale = 2.0 / (range.second - range.first);
    for (std::size_t i = 0; i < total; ++i) s.values[i] = float((raw[i] - range.first) * scale - 1.0);
  }
  if (keys.channels_last && c > 1) {  // (N, H, W, C) -> (N, C, H, W)
    const auto to_chw = [&](auto& buf) {
      auto out = buf;
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t y = 0; y < h; ++y)
          for (std::size_t x = 0; x < w; ++x)
            for (std::size_t k = 0; k < c; ++k)
              out[((i * c + k) * h + y) * w + x] = buf[((i * h + y) * w + x) * c + k];
      buf.swap(out);
    };
    if (!s.bytes.empty()) to_chw(s.bytes);
    else to_chw(s.values);
  }

  if (!keys.labels.empty()) {
    const std::string lwhere = path + ":/" + keys.labels;
    const H5::DataSet ls = open_dataset(file, path, keys.labels, "labels");
    const std::vector<std::size_t> ld = dims_of(ls);
    if (ld.size() != 1 || ld[0] != n)
      throw Error(lwhere + ": the labels have shape " + dims_str(ld) + "; expected one per image, (" + std::to_string(n) + ")");
    if (ls.getTypeClass() != H5T_INTEGER && ls.getTypeClass() != H5T_FLOAT)
      throw Error(lwhere + ": the labels are not numbers (expected integers 0, 1, ...)");
    std::vector<double> v(n);
    try {
      ls.read(v.data(), H5::PredType::NATIVE_DOUBLE);
    } catch (const H5::Exception& e) {
      throw Error(lwhere + ": unreadable (" + e.getDetailMsg() + ")");
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (!(v[i] >= 0) || v[i] != std::floor(v[i]) || v[i] > 1e6) {
        std::ostringstream msg;
        msg << lwhere << ": label " << i << " is " << v[i] << "; expected whole numbers 0, 1, ... (one class each)";
        throw Error(msg.str());
      }
      s.labels.push_back(static_cast<int>(v[i]));
    }
  }
  s.check(where);
  return s;
}

}  // namespace diffusion::image_data
