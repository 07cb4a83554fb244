#pragma once
// Tensors and attributes in HDF5 files (the results file, checkpoints, EMA weights).
//
// Tensors are stored as float32 datasets of their own rank (a 0-d tensor becomes a scalar
// dataspace), so h5py reads them back as numpy arrays of the same shape. Strings are stored as
// variable-length UTF-8 attributes, which h5py returns as `str`. Every read error names the
// file, the object path and, for shape mismatches, the expected and the found shape.
#include <cstdint>
#include <string>
#include <vector>

#include <H5Cpp.h>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// "run.h5:/model/layers.0.weight": where an object lives, for messages. name may be empty.
std::string h5_location(const H5::H5Object& obj, const std::string& name = "");

/// True if `path` (relative, "a/b/c" allowed) names a link under g; false if any
/// component is missing (never raises, never prints the HDF5 error stack).
bool h5_exists(const H5::Group& g, const std::string& path);

/// Open the group at `path` ("a/b/c"; leading and doubled '/' ignored) under parent, creating
/// each missing component. Throws Error if a component exists but is not a group.
H5::Group h5_require_group(const H5::Group& parent, const std::string& path);

/// Open an existing group at `path`; throws Error naming the file and path if missing.
H5::Group h5_open_group(const H5::Group& parent, const std::string& path);

/// Names of the datasets directly inside g, in HDF5's (alphabetical) link order.
std::vector<std::string> h5_dataset_names(const H5::Group& g);

/// The path ("/model/net.layers.0.weight") of the first floating-point dataset under g, in
/// depth-first link order, that holds a NaN or an infinity; "" if none. Reads every such dataset
/// in full.
std::string h5_first_nonfinite(const H5::Group& g);

/// Write t as a float32 dataset `name` (any rank, 0-d as a scalar dataset). An existing dataset
/// of that name is replaced (overwritten in place when its shape matches).
void write_tensor(const H5::Group& g, const std::string& name, const Tensor& t);

/// Read dataset `name` as float32 (integer and float64 datasets are converted by HDF5).
/// Throws Error naming file and path if it is missing or not numeric.
Tensor read_tensor(const H5::Group& g, const std::string& name);

/// As read_tensor, but the dataset must have the given shape; the error names file, dataset
/// path, and the expected vs found shape.
Tensor read_tensor(const H5::Group& g, const std::string& name, const Shape& expected);

/// The shape of dataset `name` without reading it.
Shape read_shape(const H5::Group& g, const std::string& name);

/// Attributes on a file, group or dataset; an existing attribute of the same name is replaced.
void write_attribute(const H5::H5Object& obj, const std::string& name, const std::string& value);
/// (Keeps string literals from converting to the numeric overloads.)
inline void write_attribute(const H5::H5Object& obj, const std::string& name, const char* value) {
  write_attribute(obj, name, std::string(value));
}
/// A scalar float64 attribute.
void write_attribute(const H5::H5Object& obj, const std::string& name, double value);
/// A scalar int64 attribute.
void write_attribute(const H5::H5Object& obj, const std::string& name, std::int64_t value);
/// (An int as int64.)
inline void write_attribute(const H5::H5Object& obj, const std::string& name, int value) {
  write_attribute(obj, name, static_cast<std::int64_t>(value));
}
/// A 1-D float64 attribute (e.g. timings).
void write_attribute(const H5::H5Object& obj, const std::string& name,
                     const std::vector<double>& value);

/// True if obj carries an attribute of that name.
bool has_attribute(const H5::H5Object& obj, const std::string& name);
/// Read a string attribute (fixed or variable length). Throws Error if missing or not a string.
std::string read_string_attribute(const H5::H5Object& obj, const std::string& name);
/// Read a scalar numeric attribute as double (integers converted). Throws Error if missing.
double read_double_attribute(const H5::H5Object& obj, const std::string& name);
/// Read a scalar integer attribute. Throws Error if missing or not an integer.
std::int64_t read_int_attribute(const H5::H5Object& obj, const std::string& name);
/// Read a 1-D (or scalar) numeric attribute as doubles.
std::vector<double> read_double_vector_attribute(const H5::H5Object& obj, const std::string& name);

/// 1-D datasets of float64, int64 or uint64 (loss logs, checkpoint state); an empty vector
/// gives a dataset of length 0.
void write_double_vector(const H5::Group& g, const std::string& name, const std::vector<double>& v);
void write_int64_vector(const H5::Group& g, const std::string& name, const std::vector<std::int64_t>& v);
void write_uint64_vector(const H5::Group& g, const std::string& name, const std::vector<std::uint64_t>& v);
/// Read them back; Error naming the dataset if it is not 1-D.
std::vector<double> read_double_vector(const H5::Group& g, const std::string& name);
std::vector<std::int64_t> read_int64_vector(const H5::Group& g, const std::string& name);
std::vector<std::uint64_t> read_uint64_vector(const H5::Group& g, const std::string& name);

}  // namespace diffusion
