// HDF5 tensor and attribute I/O: bit-exact round trips of every rank, overwrites, nested groups,
// and error messages that name file, path and shapes.
#include <catch2/catch.hpp>

#include "nn_test_helpers.hpp"

#include <cstring>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/tensor/random.hpp"

using namespace diffusion;
using namespace diffusion::testing;

namespace {

// Runs f and returns the Error's message (empty if nothing was thrown).
}  // namespace

TEST_CASE("tensors of every rank round-trip bit-exactly", "[nn][hdf5]") {
  const Shape shape = GENERATE(Shape{}, Shape{7}, Shape{3, 4}, Shape{2, 3, 5}, Shape{2, 1, 3, 2},
                               Shape{0, 3});
  CAPTURE(shape_str(shape));
  TempH5 file("ranks");
  Rng rng(42);
  Tensor t = rng.normal(shape);
  if (t.size() > 1) {
    t.data()[0] = -0.0f;     // the sign of zero survives
    t.data()[1] = 1.0e-41f;  // and subnormals
  }
  {
    H5::H5File f(file.path, H5F_ACC_TRUNC);
    write_tensor(f, "x", t);
  }
  H5::H5File f(file.path, H5F_ACC_RDONLY);
  CHECK(read_shape(f, "x") == shape);
  const Tensor back = read_tensor(f, "x");
  CHECK(bitwise_equal(back, t));
  CHECK(bitwise_equal(read_tensor(f, "x", shape), t));
}

TEST_CASE("a dataset is replaced when rewritten, in place or with a new shape", "[nn][hdf5]") {
  TempH5 file("overwrite");
  H5::H5File f(file.path, H5F_ACC_TRUNC);
  write_tensor(f, "w", ones({2, 2}));
  write_tensor(f, "w", full({2, 2}, 3.0f));  // same shape: in place
  CHECK(bitwise_equal(read_tensor(f, "w"), full({2, 2}, 3.0f)));
  write_tensor(f, "w", full({5}, -1.0f));  // new shape: replaced
  CHECK(bitwise_equal(read_tensor(f, "w"), full({5}, -1.0f)));
  CHECK(h5_dataset_names(f) == std::vector<std::string>{"w"});
}

TEST_CASE("nested groups are created by path and reopened", "[nn][hdf5]") {
  TempH5 file("groups");
  H5::H5File f(file.path, H5F_ACC_TRUNC);
  H5::Group c = h5_require_group(f, "a/b/c");
  write_tensor(c, "layers.0.weight", ones({3}));
  CHECK(h5_exists(f, "a"));
  CHECK(h5_exists(f, "a/b/c/layers.0.weight"));
  CHECK_FALSE(h5_exists(f, "a/x/c"));
  CHECK_FALSE(h5_exists(f, "a/b/c/layers.0.weight/deeper"));  // through a dataset: absent
  H5::Group again = h5_require_group(f, "/a//b/c/");            // existing: reopened
  CHECK(h5_dataset_names(again) == std::vector<std::string>{"layers.0.weight"});
  CHECK(h5_location(again, "layers.0.weight") == file.path + ":/a/b/c/layers.0.weight");
  CHECK_THAT(error_of([&] { h5_require_group(f, "a/b/c/layers.0.weight"); }),
             Catch::Matchers::Contains("not a group"));
  CHECK_THAT(error_of([&] { h5_open_group(f, "a/missing"); }),
             Catch::Matchers::Contains("a/missing") && Catch::Matchers::Contains("no such group"));
}

TEST_CASE("read errors name the file, the dataset path and the shapes", "[nn][hdf5]") {
  TempH5 file("errors");
  H5::H5File f(file.path, H5F_ACC_TRUNC);
  H5::Group model = h5_require_group(f, "model");
  write_tensor(model, "layers.0.weight", zeros({4, 3}));

  const std::string missing = error_of([&] { read_tensor(model, "layers.1.weight"); });
  CHECK_THAT(missing, Catch::Matchers::Contains(file.path) &&
                          Catch::Matchers::Contains("/model/layers.1.weight") &&
                          Catch::Matchers::Contains("no such dataset"));

  const std::string shape = error_of([&] { read_tensor(model, "layers.0.weight", {4, 2}); });
  CHECK_THAT(shape, Catch::Matchers::Contains(file.path + ":/model/layers.0.weight") &&
                        Catch::Matchers::Contains("expected shape (4, 2)") &&
                        Catch::Matchers::Contains("found (4, 3)"));

  CHECK_THAT(error_of([&] { read_tensor(f, "model"); }), Catch::Matchers::Contains("not a dataset"));
}

TEST_CASE("string and numeric attributes round-trip and can be replaced", "[nn][hdf5]") {
  TempH5 file("attrs");
  {
    H5::H5File f(file.path, H5F_ACC_TRUNC);
    H5::Group g = h5_require_group(f, "samples/ddim");
    write_attribute(f, "status", "running");
    write_attribute(f, "status", std::string("complete"));  // replaced
    write_attribute(f, "config", std::string("name: ddim_moons\nseed: 0\n"));
    write_attribute(g, "seconds", 1.25);
    write_attribute(g, "nfe", std::int64_t{50});
    write_attribute(g, "count", 3);
    write_attribute(g, "timings", std::vector<double>{0.5, 1.5, 2.5});
    write_tensor(g, "x", ones({2, 2}));
    H5::DataSet ds = g.openDataSet("x");
    write_attribute(ds, "units", "data coordinates");  // attributes on a dataset too
  }
  H5::H5File f(file.path, H5F_ACC_RDONLY);
  H5::Group g = f.openGroup("samples/ddim");
  CHECK(read_string_attribute(f, "status") == "complete");
  CHECK(read_string_attribute(f, "config") == "name: ddim_moons\nseed: 0\n");
  CHECK(read_double_attribute(g, "seconds") == 1.25);
  CHECK(read_int_attribute(g, "nfe") == 50);
  CHECK(read_double_attribute(g, "nfe") == 50.0);  // integers read as double too
  CHECK(read_int_attribute(g, "count") == 3);
  CHECK(read_double_vector_attribute(g, "timings") == std::vector<double>{0.5, 1.5, 2.5});
  CHECK(read_string_attribute(g.openDataSet("x"), "units") == "data coordinates");
  CHECK(has_attribute(g, "nfe"));
  CHECK_FALSE(has_attribute(g, "missing"));
  CHECK_THAT(error_of([&] { read_int_attribute(g, "seconds"); }),
             Catch::Matchers::Contains("not an integer"));
  CHECK_THAT(error_of([&] { read_string_attribute(g, "nfe"); }),
             Catch::Matchers::Contains("not a string"));
  CHECK_THAT(error_of([&] { read_double_attribute(g, "missing"); }),
             Catch::Matchers::Contains("/samples/ddim") && Catch::Matchers::Contains("missing"));
}
