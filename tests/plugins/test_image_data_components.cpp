// The image_data plugin's data sets as an experiment composes them (digits, mnist and
// fashion_mnist from IDX folders, hdf5): shapes and classes, samples in [-1, 1], one epoch
// covering the training split once, labels in the Condition matching their images, random
// flips, and the errors a missing or malformed file gives before any training, naming the file
// or the key and what was expected.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "e2e/scratch_dir.hpp"
#include "image_data/digits_csv.hpp"
#include "image_data/gz_file.hpp"
#include "image_data/image_set.hpp"
#include "plugins/test_image_data_files.hpp"

using namespace diffusion;
using diffusion::testing::ScratchDir;
using Catch::Contains;

namespace {

std::shared_ptr<Dataset> make_data(const std::string& yaml) {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_image_data.so");
  BuildContext ctx;
  return registries().datasets.create(Config::load_string(yaml, "data.yaml").root(), ctx);
}

std::string error_of(const std::string& yaml) {
  try {
    make_data(yaml);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// The images of a set as float rows (C H W values in [-1, 1]).
std::vector<std::vector<float>> rows_of(const image_data::ImageSet& s) {
  std::vector<std::vector<float>> out(s.size(), std::vector<float>(s.pixels()));
  for (std::size_t i = 0; i < s.size(); ++i) s.copy_image(i, out[i].data(), false);
  return out;
}

std::vector<std::vector<float>> rows_of(const Tensor& x) {
  const std::size_t n = x.shape()[0], p = x.size() / n;
  std::vector<std::vector<float>> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i].assign(x.data() + i * p, x.data() + (i + 1) * p);
  return out;
}

/// The training split of the digits, as the plugin makes it (test_fraction 0.2, split_seed 0).
image_data::ImageSet digits_train() {
  const image_data::ImageSet all = image_data::read_digits_csv(image_data::kDigitsPath);
  return all.subset(image_data::split_rows(all.size(), 0.2, 0).train);
}

/// A folder with the four MNIST IDX files, gzip-compressed: n_train and n_test images h x w.
void write_idx_folder(const std::string& dir, std::size_t n_train, std::size_t n_test, std::uint32_t h, std::uint32_t w) {
  using diffusion::testing::idx_bytes;
  const auto pixels = [&](std::size_t n, int offset) {
    std::vector<std::uint8_t> p(n * h * w);
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::uint8_t>((i * 37 + offset) % 256);
    return p;
  };
  const auto labels = [](std::size_t n) {
    std::vector<std::uint8_t> l(n);
    for (std::size_t i = 0; i < n; ++i) l[i] = static_cast<std::uint8_t>(i % 10);
    return l;
  };
  diffusion::testing::write_gzip(dir + "/train-images-idx3-ubyte.gz", idx_bytes({std::uint32_t(n_train), h, w}, pixels(n_train, 0)));
  diffusion::testing::write_gzip(dir + "/train-labels-idx1-ubyte.gz", idx_bytes({std::uint32_t(n_train)}, labels(n_train)));
  diffusion::testing::write_gzip(dir + "/t10k-images-idx3-ubyte.gz", idx_bytes({std::uint32_t(n_test), h, w}, pixels(n_test, 5)));
  diffusion::testing::write_gzip(dir + "/t10k-labels-idx1-ubyte.gz", idx_bytes({std::uint32_t(n_test)}, labels(n_test)));
}

}  // namespace

TEST_CASE("image data: digits are (1, 8, 8) between -1 and 1 with 10 classes and one epoch covers the training split once",
          "[image_data]") {
  const auto data = make_data("{type: digits}");
  CHECK(data->sample_shape() == Shape{1, 8, 8});
  CHECK(data->num_classes() == 10);
  const image_data::ImageSet train = digits_train();
  REQUIRE(train.size() == 1438);
  // One epoch from a fresh stream: every training image exactly once (as a multiset: the
  // digits hold a few duplicate images), nothing from the test split.
  Rng rng(11);
  Condition c;
  const Tensor x = data->sample(train.size(), rng, &c);
  REQUIRE(shape_of(x) == Shape{1438, 1, 8, 8});
  for (const float v : x) {
    REQUIRE(v >= -1.0f);
    REQUIRE(v <= 1.0f);
    const float level = (v + 1.0f) * 8.0f;  // pixel 0..16 -> 2 b / 16 - 1
    REQUIRE(level == std::round(level));
  }
  auto drawn = rows_of(x), expected = rows_of(train);
  std::sort(drawn.begin(), drawn.end());
  std::sort(expected.begin(), expected.end());
  CHECK(drawn == expected);
  // Labels into the condition, each its image's: (image, label) pairs are the training split's.
  REQUIRE(c.has_labels());
  REQUIRE(c.labels().size() == 1438);
  std::vector<std::pair<std::vector<float>, int>> pairs, truth;
  const auto x_rows = rows_of(x);
  for (std::size_t i = 0; i < 1438; ++i) pairs.emplace_back(x_rows[i], c.labels()[i]);
  const auto train_rows = rows_of(train);
  for (std::size_t i = 0; i < 1438; ++i) truth.emplace_back(train_rows[i], train.labels[i]);
  std::sort(pairs.begin(), pairs.end());
  std::sort(truth.begin(), truth.end());
  CHECK(pairs == truth);
  // Without a condition to fill, the same images.
  Rng again(11);
  const Tensor y = data->sample(train.size(), again);
  CHECK(std::equal(x.begin(), x.end(), y.begin()));

  // flatten: the same values as points (N, 64), for networks that take points.
  const auto flat = make_data("{type: digits, flatten: true}");
  CHECK(flat->sample_shape() == Shape{64});
  Rng r3(11);
  const Tensor f = flat->sample(5, r3);
  CHECK(shape_of(f) == Shape{5, 64});
  CHECK(std::equal(f.begin(), f.end(), x.begin()));
}

TEST_CASE("image data: flip mirrors about half the training images left to right", "[image_data]") {
  const auto plain = make_data("{type: digits}");
  const auto flipped = make_data("{type: digits, flip: true}");
  const std::size_t n = 2000;  // more than an epoch
  Rng a(21), b(21);
  const Tensor x = plain->sample(n, a), y = flipped->sample(n, b);
  std::size_t mirrored = 0, symmetric = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bool same = true, mirror = true;
    for (std::size_t r = 0; r < 8; ++r)
      for (std::size_t col = 0; col < 8; ++col) {
        same &= y(i, 0, r, col) == x(i, 0, r, col);
        mirror &= y(i, 0, r, col) == x(i, 0, r, 7 - col);
      }
    REQUIRE((same || mirror));  // the same image, as it is or mirrored
    if (same && mirror) ++symmetric;
    else if (mirror) ++mirrored;
  }
  REQUIRE(symmetric < 10);
  // Binomial(n - symmetric, 1/2): within 4 standard errors.
  const double m = double(n - symmetric), p = double(mirrored) / m;
  CHECK(std::fabs(p - 0.5) < 4 * std::sqrt(0.25 / m));
}

TEST_CASE("image data: mnist and fashion_mnist read an IDX folder and missing or malformed files are clear errors",
          "[image_data]") {
  ScratchDir d("idx-folder");
  write_idx_folder(d.path().string(), 30, 12, 4, 5);
  const auto data = make_data("{type: mnist, path: " + d.path().string() + "}");
  CHECK(data->sample_shape() == Shape{1, 4, 5});
  CHECK(data->num_classes() == 10);
  Rng rng(2);
  Condition c;
  const Tensor x = data->sample(30, rng, &c);
  // Image i's first pixel is (i * 20 * 37) % 256 and its label i % 10.
  for (std::size_t j = 0; j < 30; ++j) {
    const int b = static_cast<int>(std::lround((x(j, 0, 0, 0) + 1.0f) * 127.5f));
    bool found = false;
    for (std::size_t i = 0; i < 30; ++i) found |= b == int((i * 20 * 37) % 256) && c.labels()[j] == int(i % 10);
    CHECK(found);
  }
  const auto fashion = make_data("{type: fashion_mnist, path: " + d.path().string() + "}");
  CHECK(fashion->sample_shape() == Shape{1, 4, 5});

  SECTION("a folder without the files: the file expected and the Debian package") {
    ScratchDir empty("idx-empty");
    const std::string e = error_of("{type: fashion_mnist, path: " + empty.path().string() + "}");
    CHECK_THAT(e, Contains("data.yaml:1") && Contains(empty.path().string() + "/train-images-idx3-ubyte.gz not found") &&
                      Contains("apt-get install dataset-fashion-mnist") && Contains("/usr/share/datasets/fashion-mnist"));
    CHECK_THAT(error_of("{type: mnist}"), Contains("give path:") && Contains("train-images-idx3-ubyte"));
  }
  SECTION("a truncated IDX file: the file and the bytes expected") {
    const auto gz = diffusion::testing::read_bytes(d / "t10k-images-idx3-ubyte.gz");
    std::vector<std::uint8_t> raw;
    {
      // the uncompressed file, cut after 100 of its 240 pixel bytes
      const auto full = diffusion::testing::idx_bytes({12, 4, 5}, std::vector<std::uint8_t>(240, 1));
      raw.assign(full.begin(), full.begin() + 16 + 100);
    }
    std::filesystem::remove(d / "t10k-images-idx3-ubyte.gz");
    diffusion::testing::write_bytes(d / "t10k-images-idx3-ubyte", raw);
    const std::string e = error_of("{type: mnist, path: " + d.path().string() + "}");
    CHECK_THAT(e, Contains("path") && Contains(d / "t10k-images-idx3-ubyte") && Contains("truncated") &&
                      Contains("240 bytes") && Contains("found 100"));
  }
}

TEST_CASE("image data: Fashion-MNIST from Debian's dataset-fashion-mnist", "[image_data]") {
  if (!image_data::file_exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed: skipped");
    return;
  }
  const auto data = make_data("{type: fashion_mnist}");
  CHECK(data->sample_shape() == Shape{1, 28, 28});
  CHECK(data->num_classes() == 10);
  Rng rng(0);
  Condition c;
  const Tensor x = data->sample(600, rng, &c);
  // Fashion-MNIST's classes are balanced (6000 each in training): each label's count in 600
  // draws without replacement within 4 standard errors of 60.
  std::vector<int> counts(10, 0);
  for (const int l : c.labels()) ++counts.at(static_cast<std::size_t>(l));
  for (const int k : counts) CHECK(std::fabs(k - 60.0) < 4 * std::sqrt(600 * 0.1 * 0.9));
  // Its pixel mean is 72.94 of 255 (the usual normalisation constant 0.2860): in [-1, 1],
  // 2 * 0.2860 - 1 = -0.428, within 0.03 for 600 images.
  double mean = 0;
  for (const float v : x) mean += v;
  mean /= double(x.size());
  CHECK(mean == Approx(-0.428).margin(0.03));
}

TEST_CASE("image data: hdf5 reads named datasets and splits off a test set", "[image_data]") {
  ScratchDir d("h5-component");
  std::vector<std::uint8_t> images(40 * 2 * 3 * 4);
  for (std::size_t i = 0; i < images.size(); ++i) images[i] = static_cast<std::uint8_t>(i % 251);
  std::vector<std::int64_t> labels(40);
  for (std::size_t i = 0; i < 40; ++i) labels[i] = std::int64_t(i % 4);
  {
    H5::H5File f(d / "mine.h5", H5F_ACC_TRUNC);
    diffusion::testing::write_h5(f, "pixels", H5::PredType::NATIVE_UINT8, {40, 2, 3, 4}, images);
    diffusion::testing::write_h5(f, "classes", H5::PredType::NATIVE_INT64, {40}, labels);
    diffusion::testing::write_h5(f, "labels", H5::PredType::NATIVE_INT64, {40}, labels);
    diffusion::testing::write_h5(f, "test_pixels", H5::PredType::NATIVE_UINT8, {8, 2, 3, 4},
                                 std::vector<std::uint8_t>(images.begin(), images.begin() + 8 * 24));
  }
  const std::string file = d / "mine.h5";
  const auto data = make_data("{type: hdf5, path: " + file + ", images: pixels, labels: classes, test_fraction: 0.25}");
  CHECK(data->sample_shape() == Shape{2, 3, 4});
  CHECK(data->num_classes() == 4);
  Rng rng(1);
  const Tensor x = data->sample(30, rng);  // one epoch of the 30 training images
  REQUIRE(shape_of(x) == Shape{30, 2, 3, 4});
  // "labels" is found without being named; labels: null ignores it.
  CHECK(make_data("{type: hdf5, path: " + file + ", images: pixels}")->num_classes() == 4);
  CHECK(make_data("{type: hdf5, path: " + file + ", images: pixels, labels: null}")->num_classes() == 0);

  CHECK_THAT(error_of("{type: hdf5, path: " + file + "}"),
             Contains("data.yaml:1") && Contains("path") && Contains(file) && Contains("no dataset 'images'") &&
                 Contains("pixels"));
  CHECK_THAT(error_of("{type: hdf5, path: " + file + ", images: pixels, labels: targets}"),
             Contains(file) && Contains("no dataset 'targets' for the labels"));
  CHECK_THAT(error_of("{type: hdf5, path: " + file + ", images: pixels, labels: classes, test_images: test_pixels}"),
             Contains("test_labels"));
  CHECK_THAT(error_of("{type: hdf5, path: " + file + ", images: pixels, test_fraction: 1.5}"), Contains("test_fraction"));
  CHECK_THAT(error_of("{type: hdf5, path: " + file + ", images: pixels, range: [1, 0]}"), Contains("range"));
  CHECK_THAT(error_of("{type: hdf5, path: " + d / "missing.h5" + "}"), Contains(d / "missing.h5") && Contains("no such file"));
  CHECK_THAT(error_of("{type: hdf5, path: " + file + ", images: pixels, flips: true}"), Contains("flips") && Contains("flip"));
}
