// The image_data plugin's readers and epochs (plugins/image_data/), tested directly on tiny files
// the tests write: IDX parsing (magic numbers, sizes, values; gzip-compressed or not; a truncated
// or damaged file is an error naming the file and what was expected), sklearn's digits CSV, HDF5
// images with named datasets and layouts, the fixed train/test split, and the epochs: every
// epoch a permutation of the rows, reproducible from the stream, continued bit-identically by a
// stream restored from its saved state (what a resumed run does); the data set's training
// draws and its held-out (test split) draws.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <set>

#include "e2e/scratch_dir.hpp"
#include "image_data/digits_csv.hpp"
#include "image_data/epoch_order.hpp"
#include "image_data/gz_file.hpp"
#include "image_data/hdf5_images.hpp"
#include "image_data/idx_file.hpp"
#include "image_data/image_dataset.hpp"
#include "image_data/image_set.hpp"
#include "plugins/test_image_data_files.hpp"

using namespace diffusion;
using namespace diffusion::image_data;
using diffusion::testing::idx_bytes;
using diffusion::testing::ScratchDir;
using diffusion::testing::write_bytes;
using diffusion::testing::write_gzip;
using diffusion::testing::write_h5;
using Catch::Contains;

namespace {

/// Three 2x3 images with pixel values 40 i + 7 j (image i, pixel j), labels 2, 0, 1.
std::vector<std::uint8_t> tiny_pixels() {
  std::vector<std::uint8_t> p;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 6; ++j) p.push_back(static_cast<std::uint8_t>(40 * i + 7 * j));
  return p;
}
const std::vector<std::uint8_t> kTinyLabels{2, 0, 1};

/// The message of the Error `f` throws ("" if it throws none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("image data: IDX files give their sizes and bytes whether gzip-compressed or not", "[image_data]") {
  ScratchDir d("idx");
  const auto images = idx_bytes({3, 2, 3}, tiny_pixels()), labels = idx_bytes({3}, kTinyLabels);
  write_bytes(d / "images", images);
  write_bytes(d / "labels", labels);
  write_gzip(d / "images.gz", images);
  write_gzip(d / "labels.gz", labels);
  // The compressed file really is compressed (zlib's gzip magic 1f 8b), and reads back the same.
  REQUIRE(diffusion::testing::read_bytes(d / "images.gz")[0] == 0x1f);
  REQUIRE(read_maybe_gzip(d / "images.gz") == images);
  for (const std::string suffix : {"", ".gz"}) {
    CAPTURE(suffix);
    const IdxArray a = read_idx(d / ("images" + suffix), 3);
    CHECK(a.dims == std::vector<std::uint32_t>{3, 2, 3});
    CHECK(a.data == tiny_pixels());
    const ImageSet s = read_idx_images(d / ("images" + suffix), d / ("labels" + suffix));
    CHECK(s.size() == 3);
    CHECK(s.channels == 1);
    CHECK(s.height == 2);
    CHECK(s.width == 3);
    CHECK(s.labels == std::vector<int>{2, 0, 1});
    CHECK(s.classes() == 3);
    // Pixel b reads as 2 b / 255 - 1: 0 -> -1, 255 -> +1 exactly; a flip mirrors each row.
    const ImageSet ends = [] {
      ImageSet e;
      e.channels = 1, e.height = 1, e.width = 2, e.bytes = {0, 255};
      return e;
    }();
    float lo_hi[2];
    ends.copy_image(0, lo_hi, false);
    CHECK(lo_hi[0] == -1.0f);
    CHECK(lo_hi[1] == 1.0f);
    float out[6], flipped[6];
    s.copy_image(2, out, false);
    s.copy_image(2, flipped, true);
    for (int j = 0; j < 6; ++j) CHECK(out[j] == float(2.0 * (80 + 7 * j) / 255.0 - 1.0));
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) CHECK(flipped[y * 3 + x] == out[y * 3 + 2 - x]);
  }
}

TEST_CASE("image data: a malformed IDX file is an error naming the file and what was expected", "[image_data]") {
  ScratchDir d("idx-bad");
  const auto images = idx_bytes({3, 2, 3}, tiny_pixels());

  SECTION("truncated: the bytes the header promises against those present") {
    std::vector<std::uint8_t> cut(images.begin(), images.end() - 8);  // 10 of the 18 pixel bytes
    write_bytes(d / "cut", cut);
    const std::string e = error_of([&] { read_idx(d / "cut", 3); });
    CHECK_THAT(e, Contains(d / "cut") && Contains("truncated") && Contains("3 x 2 x 3") && Contains("18 bytes") &&
                      Contains("16-byte header") && Contains("found 10"));
  }
  SECTION("truncated inside the header") {
    write_bytes(d / "short", std::vector<std::uint8_t>(images.begin(), images.begin() + 9));
    CHECK_THAT(error_of([&] { read_idx(d / "short", 3); }), Contains(d / "short") && Contains("header") && Contains("16 bytes"));
  }
  SECTION("a gzip file cut short") {
    write_gzip(d / "full.gz", std::vector<std::uint8_t>(4000, 7));
    const auto gz = diffusion::testing::read_bytes(d / "full.gz");
    write_bytes(d / "cut.gz", std::vector<std::uint8_t>(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2)));
    CHECK_THAT(error_of([&] { read_maybe_gzip(d / "cut.gz"); }), Contains(d / "cut.gz") && Contains("truncated"));
  }
  SECTION("the magic number found and the one expected") {
    write_bytes(d / "labels-as-images", idx_bytes({3}, kTinyLabels));
    CHECK_THAT(error_of([&] { read_idx(d / "labels-as-images", 3); }),
               Contains(d / "labels-as-images") && Contains("0x00000801") && Contains("0x00000803") && Contains("rank 1"));
    write_bytes(d / "floats", idx_bytes({3, 2, 3}, tiny_pixels(), 0x0D));
    CHECK_THAT(error_of([&] { read_idx(d / "floats", 3); }), Contains("0x00000D03") && Contains("type 0x0D"));
    write_bytes(d / "png", {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a});
    CHECK_THAT(error_of([&] { read_idx(d / "png", 3); }),
               Contains(d / "png") && Contains("not an IDX file") && Contains("0x89504E47"));
  }
  SECTION("bytes beyond what the header describes") {
    std::vector<std::uint8_t> longer = images;
    longer.push_back(0);
    CHECK_THAT(error_of([&] { read_idx(d / "long", 3); }), Contains("cannot open"));  // not written yet
    write_bytes(d / "long", longer);
    CHECK_THAT(error_of([&] { read_idx(d / "long", 3); }), Contains(d / "long") && Contains("1 bytes more"));
  }
  SECTION("image and label counts that differ") {
    write_bytes(d / "images", images);
    write_bytes(d / "labels", idx_bytes({2}, {0, 1}));
    CHECK_THAT(error_of([&] { read_idx_images(d / "images", d / "labels"); }),
               Contains(d / "images") && Contains("3 images") && Contains(d / "labels") && Contains("2 labels"));
  }
}

TEST_CASE("image data: sklearn's digits are 1797 8x8 images valued 0..16 with its class counts", "[image_data]") {
  REQUIRE(file_exists(kDigitsPath));  // tools/install_deps.sh installs python3-sklearn
  const ImageSet s = read_digits_csv(kDigitsPath);
  REQUIRE(s.size() == 1797);
  CHECK(s.channels == 1);
  CHECK(s.height == 8);
  CHECK(s.width == 8);
  CHECK(s.byte_max == 16.0f);
  CHECK(*std::max_element(s.bytes.begin(), s.bytes.end()) == 16);
  // sklearn's load_digits: np.bincount(target)
  std::vector<int> counts(10, 0);
  for (const int l : s.labels) ++counts.at(static_cast<std::size_t>(l));
  CHECK(counts == std::vector<int>{178, 182, 177, 183, 181, 182, 181, 179, 174, 180});
  // The first line of the file: a zero.
  const std::vector<std::uint8_t> first{0, 0, 5,  13, 9,  1,  0, 0, 0, 0, 13, 15, 10, 15, 5,  0, 0, 3,  15, 2, 0, 11,
                                        8, 0, 0,  4,  12, 0,  0, 8, 8, 0, 0,  5,  8,  0,  0,  9, 8, 0,  0,  4, 11, 0,
                                        1, 12, 7, 0,  0,  2,  14, 5, 10, 12, 0,  0,  0,  0,  6,  13, 10, 0, 0,  0};
  CHECK(std::vector<std::uint8_t>(s.bytes.begin(), s.bytes.begin() + 64) == first);
  CHECK(s.labels[0] == 0);
  float out[64];
  s.copy_image(0, out, false);
  CHECK(out[2] == 5.0f / 8.0f - 1.0f);  // 2 * 5 / 16 - 1
}

TEST_CASE("image data: a malformed digits CSV names the file and the line", "[image_data]") {
  ScratchDir d("digits-bad");
  std::string good, bad;
  for (int j = 0; j < 64; ++j) good += std::to_string(j % 17) + ",";
  good += "3\n";
  for (int j = 0; j < 64; ++j) bad += std::to_string(j == 10 ? 17 : 0) + ",";
  bad += "3\n";
  const std::string two_lines = good + good;
  write_gzip(d / "digits.csv.gz", std::vector<std::uint8_t>(two_lines.begin(), two_lines.end()));
  const ImageSet two = read_digits_csv(d / "digits.csv.gz");
  CHECK(two.size() == 2);
  CHECK(two.labels == std::vector<int>{3, 3});
  const std::string text = good + bad;
  write_gzip(d / "bad.csv.gz", std::vector<std::uint8_t>(text.begin(), text.end()));
  CHECK_THAT(error_of([&] { read_digits_csv(d / "bad.csv.gz"); }),
             Contains(d / "bad.csv.gz" + ":2") && Contains("pixel 11 is 17") && Contains("65 comma-separated"));
  const std::string short_line = good + "1,2,3\n";
  write_gzip(d / "short.csv.gz", std::vector<std::uint8_t>(short_line.begin(), short_line.end()));
  CHECK_THAT(error_of([&] { read_digits_csv(d / "short.csv.gz"); }), Contains(":2") && Contains("only 3 values"));
}

TEST_CASE("image data: HDF5 images and labels from named datasets, in either layout", "[image_data]") {
  ScratchDir d("h5-images");
  // 4 RGB images 2x3, channels last, float in [0, 1]: value (i, y, x, c) = (i + y + x + c) / 8.
  std::vector<float> hwc;
  for (int i = 0; i < 4; ++i)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        for (int c = 0; c < 3; ++c) hwc.push_back(float(i + y + x + c) / 8.0f);
  std::vector<std::uint8_t> gray(4 * 2 * 3);
  std::iota(gray.begin(), gray.end(), std::uint8_t(200));
  {
    H5::H5File f(d / "user.h5", H5F_ACC_TRUNC);
    f.createGroup("train");
    write_h5(f, "train/x", H5::PredType::NATIVE_FLOAT, {4, 2, 3, 3}, hwc);
    write_h5(f, "train/y", H5::PredType::NATIVE_INT64, {4}, std::vector<std::int64_t>{1, 0, 3, 1});
    write_h5(f, "gray", H5::PredType::NATIVE_UINT8, {4, 2, 3}, gray);
    write_h5(f, "signed", H5::PredType::NATIVE_INT32, {4, 2, 3}, std::vector<std::int32_t>(24, -3));
    write_h5(f, "three_labels", H5::PredType::NATIVE_INT64, {3}, std::vector<std::int64_t>{0, 1, 2});
    write_h5(f, "half_labels", H5::PredType::NATIVE_DOUBLE, {4}, std::vector<double>{0, 1.5, 2, 0});
  }
  Hdf5ImageKeys keys;
  keys.images = "train/x";
  keys.labels = "train/y";
  keys.channels_last = true;
  const ImageSet s = read_hdf5_images(d / "user.h5", keys);
  REQUIRE(s.size() == 4);
  CHECK(s.channels == 3);
  CHECK(s.height == 2);
  CHECK(s.width == 3);
  CHECK(s.labels == std::vector<int>{1, 0, 3, 1});
  std::vector<float> img(18);
  s.copy_image(3, img.data(), false);
  for (int c = 0; c < 3; ++c)  // (N, H, W, C) -> (C, H, W); [0, 1] -> [-1, 1]
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) CHECK(img[(c * 2 + y) * 3 + x] == Approx(2.0 * (3 + y + x + c) / 8.0 - 1.0).margin(1e-6));

  Hdf5ImageKeys g;
  g.images = "gray";
  const ImageSet u8 = read_hdf5_images(d / "user.h5", g);
  CHECK(u8.channels == 1);
  CHECK(u8.bytes == gray);  // kept as bytes: 8-bit unsigned maps [0, 255] to [-1, 1]
  CHECK_FALSE(u8.labelled());

  SECTION("a missing dataset names the file, the key and what the file holds") {
    Hdf5ImageKeys k;
    k.images = "images";
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "user.h5", k); }),
               Contains(d / "user.h5") && Contains("no dataset 'images'") && Contains("gray") && Contains("train"));
    k.images = "train/pixels";
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "user.h5", k); }), Contains("'train/pixels'") && Contains("x, y"));
    k.images = "gray";
    k.labels = "labels";
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "user.h5", k); }), Contains("no dataset 'labels' for the labels"));
  }
  SECTION("labels that are not one whole number per image") {
    Hdf5ImageKeys k = g;
    k.labels = "three_labels";
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "user.h5", k); }), Contains("(3)") && Contains("one per image, (4)"));
    k.labels = "half_labels";
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "user.h5", k); }), Contains("label 1 is 1.5"));
  }
  SECTION("values outside the range, and integer types without one") {
    Hdf5ImageKeys k = keys;
    k.range = std::make_pair(0.0, 0.5);
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "user.h5", k); }),
               Contains("train/x") && Contains("outside the range [0, 0.5]") && Contains("range:"));
    Hdf5ImageKeys sgn;
    sgn.images = "signed";
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "user.h5", sgn); }), Contains("32-bit signed") && Contains("range:"));
    sgn.range = std::make_pair(-3.0, 5.0);
    const ImageSet r = read_hdf5_images(d / "user.h5", sgn);
    CHECK(r.values.front() == -1.0f);  // -3 is the range's low end
  }
  SECTION("not an HDF5 file, or no file") {
    write_bytes(d / "text.h5", {'h', 'i', '\n'});
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "text.h5", g); }), Contains(d / "text.h5") && Contains("not an HDF5 file"));
    CHECK_THAT(error_of([&] { read_hdf5_images(d / "none.h5", g); }), Contains(d / "none.h5") && Contains("no such file"));
  }
}

TEST_CASE("image data: the train/test split is a fixed partition of the rows", "[image_data]") {
  const Split s = split_rows(1797, 0.2, 0);
  CHECK(s.test.size() == 359);  // round(0.2 * 1797)
  CHECK(s.train.size() == 1438);
  std::vector<std::size_t> all = s.train;
  all.insert(all.end(), s.test.begin(), s.test.end());
  std::sort(all.begin(), all.end());
  std::vector<std::size_t> expected(1797);
  std::iota(expected.begin(), expected.end(), std::size_t(0));
  CHECK(all == expected);  // disjoint and complete
  CHECK(std::is_sorted(s.train.begin(), s.train.end()));
  const Split again = split_rows(1797, 0.2, 0), other = split_rows(1797, 0.2, 1);
  CHECK(again.test == s.test);
  CHECK(other.test != s.test);
  // The held-out rows are spread over the file, not its end: their mean index is within 4
  // standard errors of the middle (a uniform subset of 359 of 1797: sd of the mean ~ 24).
  const double mean = std::accumulate(s.test.begin(), s.test.end(), 0.0) / double(s.test.size());
  const double se = std::sqrt((1797.0 * 1797.0 - 1) / 12.0 / 359.0 * (1797.0 - 359.0) / (1797.0 - 1));
  CHECK(std::fabs(mean - 898.0) < 4 * se);
}

TEST_CASE("image data: every epoch is a permutation of the rows, reproducible from the stream", "[image_data]") {
  const std::size_t rows = 37, batch = 8, draws = 20;  // 160 rows: four whole epochs and a part
  const EpochOrder order(rows);
  Rng stream = Rng(5).split("data");
  std::vector<std::size_t> seen;
  for (std::size_t k = 0; k < draws; ++k) {
    const auto b = order.draw(batch, stream);
    REQUIRE(b.size() == batch);
    seen.insert(seen.end(), b.begin(), b.end());
  }
  std::vector<std::vector<std::size_t>> epochs;
  for (std::size_t e = 0; (e + 1) * rows <= seen.size(); ++e) {
    std::vector<std::size_t> epoch(seen.begin() + e * rows, seen.begin() + (e + 1) * rows);
    epochs.push_back(epoch);
    std::sort(epoch.begin(), epoch.end());
    for (std::size_t i = 0; i < rows; ++i) REQUIRE(epoch[i] == i);  // each row exactly once
  }
  REQUIRE(epochs.size() == 4);
  CHECK(epochs[0] != epochs[1]);  // a fresh order each epoch
  CHECK(epochs[1] != epochs[2]);
  // The same stream in a fresh data set gives the same rows; another seed other rows.
  const EpochOrder fresh(rows);
  Rng same = Rng(5).split("data"), other = Rng(6).split("data");
  std::vector<std::size_t> again, different;
  for (std::size_t k = 0; k < draws; ++k) {
    const auto a = fresh.draw(batch, same), b = fresh.draw(batch, other);
    again.insert(again.end(), a.begin(), a.end());
    different.insert(different.end(), b.begin(), b.end());
  }
  CHECK(again == seen);
  CHECK(different != seen);
  // Each draw takes exactly one value from the stream.
  Rng reference = Rng(5).split("data");
  for (std::size_t k = 0; k < draws; ++k) reference.next_u64();
  CHECK(reference.state().s == stream.state().s);
  // The order within an epoch is uniform: over 2000 fresh streams, row 0 comes first with
  // probability 1/37, within 4 binomial standard errors.
  int first = 0;
  for (std::uint64_t s = 0; s < 2000; ++s) {
    Rng r = Rng(100 + s);
    first += fresh.draw(1, r)[0] == 0;
  }
  const double p = 1.0 / 37, se = std::sqrt(p * (1 - p) / 2000);
  CHECK(std::fabs(first / 2000.0 - p) < 4 * se);
}

TEST_CASE("image data: a stream restored from its saved state continues the epochs bit-identically", "[image_data]") {
  const std::size_t rows = 50, batch = 16;
  // The uninterrupted run: 12 draws (almost four epochs) from one data set.
  const EpochOrder run(rows);
  Rng stream = Rng(9).split("data");
  std::vector<std::vector<std::size_t>> full;
  Rng::State saved{};
  for (int k = 0; k < 12; ++k) {
    if (k == 5) saved = stream.state();  // a checkpoint after 5 draws (mid-epoch 2)
    full.push_back(run.draw(batch, stream));
  }
  // The resumed run: a new process (a fresh data set, nothing cached) with the stream restored.
  const EpochOrder resumed(rows);
  Rng restored(0);
  restored.set_state(saved);
  REQUIRE(resumed.position(restored) == std::optional<std::uint64_t>(5));
  for (int k = 5; k < 12; ++k) CHECK(resumed.draw(batch, restored) == full[static_cast<std::size_t>(k)]);
  // A copy of the stream behind the one the data set saw last is placed as well.
  Rng behind(0);
  behind.set_state(saved);
  CHECK(run.draw(batch, behind) == full[5]);
}

TEST_CASE("image data: a stream shared with other draws still draws a function of its state", "[image_data]") {
  const std::size_t rows = 20, batch = 6;
  // A loss drawing noise between draws of data from the same stream: draw j covers rows
  // [k n, (k + 1) n) where k counts every value the stream gave before it (a normal takes two).
  const auto history = [&](const EpochOrder& order) {
    Rng stream = Rng(4).split("train");
    std::vector<std::vector<std::size_t>> out;
    std::uint64_t k = 0;
    for (int j = 0; j < 8; ++j) {
      for (int i = 0; i < 3 + j; ++i) stream.normal();
      k += 2 * std::uint64_t(3 + j);
      out.push_back(order.draw(batch, stream));
      CHECK(out.back() == order.rows_at(stream.seed(), k * batch, batch));
      ++k;
    }
    return out;
  };
  const EpochOrder a(rows), b(rows);
  const auto ha = history(a);
  CHECK(history(b) == ha);
  CHECK(history(a) == ha);  // again on the data set that has seen it (its cache)
}

TEST_CASE("image data: training draws come from the training split, held-out draws from the test split unflipped",
          "[image_data]") {
  // Training images are constant 0..9 (bytes), test images constant 20..25, each a 2x4 image
  // whose left column is 255: a flip moves it to the right.
  const auto make = [](int first, int count) {
    auto s = std::make_shared<ImageSet>();
    s->channels = 1, s->height = 2, s->width = 4;
    for (int i = 0; i < count; ++i) {
      for (int p = 0; p < 8; ++p) s->bytes.push_back(static_cast<std::uint8_t>(p % 4 == 0 ? 255 : first + i));
      s->labels.push_back(i % 3);
    }
    return s;
  };
  ImageDataset::Options o;
  o.flip = true;
  const ImageDataset data(make(0, 10), make(20, 6), o);
  CHECK(data.sample_shape() == Shape{1, 2, 4});
  CHECK(data.num_classes() == 3);
  const auto id = [](const Tensor& x, std::size_t i) {  // the image's constant, from a middle pixel
    return int(std::lround((x(i, 0, 0, 1) + 1.0f) * 127.5f));
  };
  Rng rng(3);
  Condition c;
  const Tensor train = data.sample(10, rng, &c);
  std::set<int> ids;
  int flipped = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    const bool mirrored = train(i, 0, 0, 3) == 1.0f;
    flipped += mirrored;
    const int image = int(std::lround((train(i, 0, 0, mirrored ? 2 : 1) + 1.0f) * 127.5f));
    ids.insert(image);
    CHECK(c.labels()[i] == image % 3);  // each image's own label
  }
  CHECK(ids == std::set<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});  // one epoch: every training image once
  CHECK(flipped > 0);
  CHECK(flipped < 10);
  Rng held(4);
  Condition hc;
  const Tensor test = data.sample_independent(6, held, &hc);
  std::set<int> test_ids;
  for (std::size_t i = 0; i < 6; ++i) {
    CHECK(test(i, 0, 0, 0) == 1.0f);  // never flipped
    test_ids.insert(id(test, i));
    CHECK(hc.labels()[i] == (id(test, i) - 20) % 3);
  }
  CHECK(test_ids == std::set<int>{20, 21, 22, 23, 24, 25});
}
