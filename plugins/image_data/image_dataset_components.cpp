// The image data sets under their YAML names. Every file is read when the experiment is
// composed, so a missing or malformed one is an error before any training, naming the file and
// what was expected (the Debian package to install, the IDX magic number found, the HDF5
// dataset missing and the ones the file has).
//
//   dataset: {type: fashion_mnist}            Fashion-MNIST (Xiao et al. 2017), 60000 + 10000 28x28,
//                                             10 classes; path: (default /usr/share/datasets/
//                                             fashion-mnist, Debian's dataset-fashion-mnist)
//   dataset: {type: mnist, path: DIR}         MNIST from DIR (Debian does not package it)
//                                             Both: the four IDX files train-images-idx3-ubyte,
//                                             train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
//                                             t10k-labels-idx1-ubyte, each gzip-compressed (.gz)
//                                             or not; t10k is the test split.
//   dataset: {type: digits}                   scikit-learn's 8x8 digits (1797, 10 classes; path:
//                                             default python3-sklearn's digits.csv.gz); split
//                                             test_fraction: 0.2, split_seed: 0
//   dataset: {type: hdf5, path: FILE}         a user's images: images: (dataset name, default
//                                             images; (N, H, W) or (N, C, H, W)), layout: nchw |
//                                             nhwc, range: [lo, hi] (the values of -1 and +1;
//                                             default [0, 255] for uint8, [0, 65535] for uint16,
//                                             [0, 1] for floats), labels: (a dataset of integers;
//                                             default "labels" when the file has one, null for
//                                             none); the test split either test_images: (and
//                                             test_labels:) or test_fraction: 0.1, split_seed: 0
//   every type: flip: false (mirror training images left to right at random), flatten: false
//               (samples (N, C H W) for networks that take points)
//
// Samples are float32 in [-1, 1]; image experiments take `codec: {type: identity}`
// (image_dataset.hpp says why). The split of digits and of an HDF5 file without test datasets
// is fixed by split_seed, not by the run's seed: every run holds out the same images.
#include <diffusion/plugin.hpp>

#include "digits_csv.hpp"
#include "gz_file.hpp"
#include "hdf5_images.hpp"
#include "idx_file.hpp"
#include "image_dataset.hpp"

namespace diffusion::image_data {
namespace {

constexpr const char* kFashionMnistPath = "/usr/share/datasets/fashion-mnist";

ImageDataset::Options read_options(const ConfigNode& c) {
  ImageDataset::Options o;
  o.flip = c.get_bool("flip", false);
  o.flatten = c.get_bool("flatten", false);
  return o;
}

/// Run `load`, turning its Error into one at `where` (the YAML key that named the file).
template <class F>
auto at_node(const ConfigNode& where, const std::string& prefix, F load) -> decltype(load()) {
  try {
    return load();
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    where.error(prefix + e.what());
  }
}

/// A fixed train/test split of one set (digits, an HDF5 file without test datasets).
std::shared_ptr<Dataset> split_dataset(const ConfigNode& c, ImageSet all, double default_fraction,
                                       const std::string& what) {
  const double fraction = c.get_double("test_fraction", default_fraction, Interval::open(0, 1));
  const auto seed = static_cast<std::uint64_t>(c.get_int("split_seed", 0, 0));
  const Split s = split_rows(all.size(), fraction, seed);
  if (s.train.empty() || s.test.empty())
    c.at(c.has("test_fraction") ? "test_fraction" : "type")
        .error(what + " has " + std::to_string(all.size()) + " images: test_fraction " + std::to_string(fraction) +
               " leaves one split empty");
  auto train = std::make_shared<const ImageSet>(all.subset(s.train));
  auto test = std::make_shared<const ImageSet>(all.subset(s.test));
  return std::make_shared<ImageDataset>(std::move(train), std::move(test), read_options(c));
}

/// The IDX file `base` (or `base`.gz) in `folder`; "" if neither exists.
std::string find_idx(const std::string& folder, const std::string& base) {
  for (const std::string& name : {base + ".gz", base})
    if (file_exists(folder + "/" + name)) return folder + "/" + name;
  return "";
}

/// MNIST's four IDX files in `folder`: train-{images-idx3,labels-idx1}-ubyte[.gz] and t10k-...
std::shared_ptr<Dataset> idx_dataset(const ConfigNode& c, const std::string& folder, const std::string& name,
                                     const std::string& missing_hint) {
  const ConfigNode where = c.has("path") ? c.at("path") : c;
  std::string files[4];
  const char* const bases[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                "t10k-labels-idx1-ubyte"};
  for (int i = 0; i < 4; ++i) {
    files[i] = find_idx(folder, bases[i]);
    if (files[i].empty())
      where.error(name + ": " + folder + "/" + bases[i] + ".gz not found (nor " + bases[i] + " uncompressed)" +
                  missing_hint);
  }
  auto train = at_node(where, name + ": ", [&] { return std::make_shared<const ImageSet>(read_idx_images(files[0], files[1])); });
  auto test = at_node(where, name + ": ", [&] { return std::make_shared<const ImageSet>(read_idx_images(files[2], files[3])); });
  if (train->height != test->height || train->width != test->width)
    where.error(name + ": " + files[0] + " holds " + std::to_string(train->height) + "x" + std::to_string(train->width) +
                " images but " + files[2] + " " + std::to_string(test->height) + "x" + std::to_string(test->width));
  return std::make_shared<ImageDataset>(std::move(train), std::move(test), read_options(c));
}

std::shared_ptr<Dataset> make_fashion_mnist(const ConfigNode& c, const BuildContext&) {
  const std::string folder = c.get_string("path", kFashionMnistPath);
  // Named whatever the folder, so that an error for a copy elsewhere says where Debian puts them.
  const std::string hint = std::string("; Debian's dataset-fashion-mnist puts them in ") + kFashionMnistPath +
                           " (apt-get install dataset-fashion-mnist); or set path: to a folder holding the four IDX files";
  return idx_dataset(c, folder, "fashion_mnist", hint);
}

std::shared_ptr<Dataset> make_mnist(const ConfigNode& c, const BuildContext&) {
  if (!c.has("path"))
    c.error("mnist: give path: a folder holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] (Debian does not package MNIST)");
  return idx_dataset(c, c.get_string("path"), "mnist", "; set path: to the folder holding the four IDX files");
}

std::shared_ptr<Dataset> make_digits(const ConfigNode& c, const BuildContext&) {
  const std::string path = c.get_string("path", kDigitsPath);
  const ConfigNode where = c.has("path") ? c.at("path") : c;
  if (!file_exists(path))
    where.error("digits: " + path + " not found" +
                (c.has("path") ? std::string(" (expected scikit-learn's digits.csv.gz)")
                               : std::string("; install Debian's python3-sklearn (apt-get install python3-sklearn), "
                                             "which ships the 8x8 digits, or set path: to a copy of digits.csv.gz")));
  ImageSet all = at_node(where, "digits: ", [&] { return read_digits_csv(path); });
  return split_dataset(c, std::move(all), 0.2, "digits");
}

std::shared_ptr<Dataset> make_hdf5(const ConfigNode& c, const BuildContext&) {
  if (!c.has("path")) c.error("hdf5: give path: an HDF5 file with a dataset of images (N, H, W) or (N, C, H, W)");
  const std::string path = c.get_string("path");
  const ConfigNode where = c.at("path");
  Hdf5ImageKeys keys;
  keys.images = c.get_string("images", "images");
  keys.channels_last = c.get_choice("layout", "nchw", {"nchw", "nhwc"}) == "nhwc";
  if (c.has("range")) {
    const auto r = c.get_double_list("range");
    if (r.size() != 2 || !(r[1] > r[0])) c.at("range").fail("[lo, hi] with hi > lo (the pixel values of -1 and +1)");
    keys.range = std::make_pair(r[0], r[1]);
  }
  // Labels: the named dataset, which must exist; without the key, "labels" if the file has one.
  const bool labels_given = c.has("labels") && !c.at("labels").is_null();
  if (labels_given) keys.labels = c.get_string("labels");
  else if (!c.has("labels") && at_node(where, "hdf5: ", [&] { return hdf5_has_dataset(path, "labels"); }))
    keys.labels = "labels";
  // Errors name the file and the key; they are reported at path:.
  const auto load = [&](const Hdf5ImageKeys& k) { return at_node(where, "hdf5: ", [&] { return read_hdf5_images(path, k); }); };
  if (c.has("test_images")) {
    if (c.has("test_fraction")) c.at("test_fraction").error("give either test_images (a held-out dataset) or test_fraction");
    ImageSet train = load(keys);
    Hdf5ImageKeys test_keys = keys;
    test_keys.images = c.get_string("test_images");
    test_keys.labels = keys.labels.empty() ? "" : c.get_string("test_labels", "test_labels");
    if (!keys.labels.empty() && !c.has("test_labels"))
      c.at("test_images").error("hdf5: the training images have labels (" + keys.labels +
                                "): give test_labels: the dataset of the test images' labels");
    ImageSet test = load(test_keys);
    if (test.channels != train.channels || test.height != train.height || test.width != train.width)
      c.at("test_images").error("hdf5: " + path + ": the test images are " + std::to_string(test.channels) + "x" +
                                std::to_string(test.height) + "x" + std::to_string(test.width) + ", the training images " +
                                std::to_string(train.channels) + "x" + std::to_string(train.height) + "x" +
                                std::to_string(train.width));
    return std::make_shared<ImageDataset>(std::make_shared<const ImageSet>(std::move(train)),
                                          std::make_shared<const ImageSet>(std::move(test)), read_options(c));
  }
  ImageSet all = load(keys);
  return split_dataset(c, std::move(all), 0.1, "hdf5: " + path);
}

}  // namespace

DIFFUSION_REGISTER(datasets, "fashion_mnist", make_fashion_mnist);
DIFFUSION_REGISTER(datasets, "mnist", make_mnist);
DIFFUSION_REGISTER(datasets, "digits", make_digits);
DIFFUSION_REGISTER(datasets, "hdf5", make_hdf5);

}  // namespace diffusion::image_data
