// Tensors and attributes in HDF5. Existence and type are checked before every open, so a
// missing name becomes one clear Error instead of HDF5's printed error stack.
#include "diffusion/io/hdf5_io.hpp"

#include <cmath>
#include <sstream>

namespace diffusion {
namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(path);
  while (std::getline(in, part, '/'))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

// A Group handle on the same object as g. Copy-constructing a Group from an H5File slices away
// the file's own id (H5File keeps it separately), so reopen "." instead of copying.
H5::Group same_group(const H5::Group& g) { return g.openGroup("."); }

std::string join(const std::string& base, const std::string& name) {
  if (name.empty()) return base;
  if (base.empty() || base.back() == '/') return base + name;
  return base + "/" + name;
}

// Runs an HDF5 call and turns its exception into an Error that says where it happened.
template <class F>
auto guarded(const std::string& where, const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const H5::Exception& e) {
    throw Error(where + ": " + what + " failed: " + e.getDetailMsg());
  }
}

// Shape of a simple or scalar dataspace; scalar gives the empty shape.
Shape shape_of_space(const H5::DataSpace& space, const std::string& where) {
  const H5S_class_t cls = space.getSimpleExtentType();
  if (cls == H5S_SCALAR) return {};
  if (cls != H5S_SIMPLE) throw Error(where + ": dataspace has no elements (null dataspace)");
  const int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  space.getSimpleExtentDims(dims.data());
  return Shape(dims.begin(), dims.end());
}

H5::DataSpace space_of_shape(const Shape& s) {
  if (s.empty()) return H5::DataSpace(H5S_SCALAR);
  std::vector<hsize_t> dims(s.begin(), s.end());
  return H5::DataSpace(static_cast<int>(dims.size()), dims.data());
}

H5::DataSet open_dataset(const H5::Group& g, const std::string& name) {
  const std::string where = h5_location(g, name);
  if (!h5_exists(g, name)) throw Error(where + ": no such dataset");
  if (g.childObjType(name) != H5O_TYPE_DATASET) throw Error(where + ": not a dataset");
  return g.openDataSet(name);
}

H5::Attribute open_attribute(const H5::H5Object& obj, const std::string& name) {
  if (!obj.attrExists(name))
    throw Error(h5_location(obj) + ": no attribute '" + name + "'");
  return obj.openAttribute(name);
}

void remove_attribute_if_present(const H5::H5Object& obj, const std::string& name) {
  if (obj.attrExists(name)) obj.removeAttr(name);
}

}  // namespace

std::string h5_location(const H5::H5Object& obj, const std::string& name) {
  std::string file, path;
  try {
    file = obj.getFileName();
    path = obj.getObjName();
  } catch (const H5::Exception&) {
    return "<hdf5>:" + name;  // an invalid handle: say what we can
  }
  return file + ":" + join(path, name);
}

bool h5_exists(const H5::Group& g, const std::string& path) {
  const auto parts = split_path(path);
  if (parts.empty()) return true;  // the group itself
  H5::Group cur = same_group(g);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (!cur.nameExists(parts[i])) return false;
    if (i + 1 == parts.size()) return true;
    // Walking into a dataset would make H5Lexists fail noisily; a non-group means "absent".
    if (cur.childObjType(parts[i]) != H5O_TYPE_GROUP) return false;
    cur = cur.openGroup(parts[i]);
  }
  return true;
}

H5::Group h5_require_group(const H5::Group& parent, const std::string& path) {
  H5::Group cur = same_group(parent);
  for (const auto& part : split_path(path)) {
    if (cur.nameExists(part)) {
      if (cur.childObjType(part) != H5O_TYPE_GROUP)
        throw Error(h5_location(cur, part) + ": exists and is not a group");
      cur = cur.openGroup(part);
    } else {
      cur = guarded(h5_location(cur, part), "creating the group",
                    [&] { return cur.createGroup(part); });
    }
  }
  return cur;
}

H5::Group h5_open_group(const H5::Group& parent, const std::string& path) {
  if (!h5_exists(parent, path)) throw Error(h5_location(parent, path) + ": no such group");
  if (!split_path(path).empty() && parent.childObjType(path) != H5O_TYPE_GROUP)
    throw Error(h5_location(parent, path) + ": not a group");
  return parent.openGroup(path.empty() ? "." : path);
}

std::vector<std::string> h5_dataset_names(const H5::Group& g) {
  std::vector<std::string> names;
  const hsize_t n = g.getNumObjs();
  for (hsize_t i = 0; i < n; ++i) {
    std::string name = g.getObjnameByIdx(i);
    if (g.childObjType(name) == H5O_TYPE_DATASET) names.push_back(std::move(name));
  }
  return names;
}

std::string h5_first_nonfinite(const H5::Group& g) {
  const std::string here = g.getObjName();
  std::vector<double> values;
  for (hsize_t i = 0; i < g.getNumObjs(); ++i) {
    const std::string name = g.getObjnameByIdx(i);
    const H5O_type_t type = g.childObjType(name);
    if (type == H5O_TYPE_GROUP) {
      if (std::string bad = h5_first_nonfinite(g.openGroup(name)); !bad.empty()) return bad;
    } else if (type == H5O_TYPE_DATASET) {
      H5::DataSet ds = g.openDataSet(name);
      if (ds.getTypeClass() != H5T_FLOAT) continue;
      values.resize(static_cast<std::size_t>(ds.getSpace().getSimpleExtentNpoints()));
      if (values.empty()) continue;
      ds.read(values.data(), H5::PredType::NATIVE_DOUBLE);
      for (const double v : values)
        if (!std::isfinite(v)) return (here == "/" ? here : here + "/") + name;
    }
  }
  return "";
}

void write_tensor(const H5::Group& g, const std::string& name, const Tensor& t) {
  const std::string where = h5_location(g, name);
  const Shape shape = shape_of(t);
  guarded(where, "writing the dataset", [&] {
    H5::DataSet ds;
    bool reuse = false;
    if (h5_exists(g, name)) {
      // Checkpoints rewrite the same names every save: overwrite in place when the layout
      // allows it, otherwise replace the link.
      if (g.childObjType(name) == H5O_TYPE_DATASET) {
        ds = g.openDataSet(name);
        reuse = ds.getTypeClass() == H5T_FLOAT && ds.getFloatType().getSize() == 4 &&
                ds.getSpace().getSimpleExtentType() != H5S_NULL &&
                shape_of_space(ds.getSpace(), where) == shape;
      }
      if (!reuse) g.unlink(name);
    }
    if (!reuse) ds = g.createDataSet(name, H5::PredType::IEEE_F32LE, space_of_shape(shape));
    // HDF5 rejects a null buffer even for zero elements; there is nothing to write then.
    if (t.size() > 0) ds.write(t.data(), H5::PredType::NATIVE_FLOAT);
    return 0;
  });
}

Shape read_shape(const H5::Group& g, const std::string& name) {
  const std::string where = h5_location(g, name);
  H5::DataSet ds = open_dataset(g, name);
  return guarded(where, "reading the shape", [&] { return shape_of_space(ds.getSpace(), where); });
}

Tensor read_tensor(const H5::Group& g, const std::string& name) {
  const std::string where = h5_location(g, name);
  H5::DataSet ds = open_dataset(g, name);
  const H5T_class_t cls = ds.getTypeClass();
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    throw Error(where + ": expected a numeric dataset");
  const Shape shape = shape_of_space(ds.getSpace(), where);
  Tensor t = Tensor::from_shape(shape);
  if (t.size() > 0)
    guarded(where, "reading the dataset", [&] {
      ds.read(t.data(), H5::PredType::NATIVE_FLOAT);
      return 0;
    });
  return t;
}

Tensor read_tensor(const H5::Group& g, const std::string& name, const Shape& expected) {
  const Shape found = read_shape(g, name);
  if (found != expected)
    throw Error(h5_location(g, name) + ": expected shape " + shape_str(expected) + ", found " +
                shape_str(found));
  return read_tensor(g, name);
}

void write_attribute(const H5::H5Object& obj, const std::string& name, const std::string& value) {
  guarded(h5_location(obj) + "@" + name, "writing the attribute", [&] {
    remove_attribute_if_present(obj, name);
    // Variable-length UTF-8: h5py returns it as str, and long YAML configs need no size cap.
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    H5::Attribute a = obj.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
    a.write(type, value);
    return 0;
  });
}

void write_attribute(const H5::H5Object& obj, const std::string& name, double value) {
  guarded(h5_location(obj) + "@" + name, "writing the attribute", [&] {
    remove_attribute_if_present(obj, name);
    H5::Attribute a =
        obj.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR));
    a.write(H5::PredType::NATIVE_DOUBLE, &value);
    return 0;
  });
}

void write_attribute(const H5::H5Object& obj, const std::string& name, std::int64_t value) {
  guarded(h5_location(obj) + "@" + name, "writing the attribute", [&] {
    remove_attribute_if_present(obj, name);
    H5::Attribute a =
        obj.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR));
    a.write(H5::PredType::NATIVE_INT64, &value);
    return 0;
  });
}

void write_attribute(const H5::H5Object& obj, const std::string& name,
                     const std::vector<double>& value) {
  guarded(h5_location(obj) + "@" + name, "writing the attribute", [&] {
    remove_attribute_if_present(obj, name);
    const hsize_t n = value.size();
    H5::Attribute a =
        obj.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace(1, &n));
    if (n > 0) a.write(H5::PredType::NATIVE_DOUBLE, value.data());
    return 0;
  });
}

bool has_attribute(const H5::H5Object& obj, const std::string& name) {
  return obj.attrExists(name);
}

std::string read_string_attribute(const H5::H5Object& obj, const std::string& name) {
  const std::string where = h5_location(obj) + "@" + name;
  H5::Attribute a = open_attribute(obj, name);
  if (a.getTypeClass() != H5T_STRING) throw Error(where + ": not a string attribute");
  return guarded(where, "reading the attribute", [&] {
    std::string s;
    a.read(a.getStrType(), s);
    return s;
  });
}

namespace {
// Numeric attributes must hold exactly one element, whether scalar or shape (1,).
H5::Attribute open_scalar_numeric(const H5::H5Object& obj, const std::string& name,
                                  bool integer_only) {
  const std::string where = h5_location(obj) + "@" + name;
  H5::Attribute a = open_attribute(obj, name);
  const H5T_class_t cls = a.getTypeClass();
  if (cls != H5T_INTEGER && (integer_only || cls != H5T_FLOAT))
    throw Error(where + (integer_only ? ": not an integer attribute" : ": not a numeric attribute"));
  if (a.getSpace().getSimpleExtentNpoints() != 1)
    throw Error(where + ": expected a single value");
  return a;
}
}  // namespace

double read_double_attribute(const H5::H5Object& obj, const std::string& name) {
  H5::Attribute a = open_scalar_numeric(obj, name, false);
  double v = 0;
  a.read(H5::PredType::NATIVE_DOUBLE, &v);
  return v;
}

std::int64_t read_int_attribute(const H5::H5Object& obj, const std::string& name) {
  H5::Attribute a = open_scalar_numeric(obj, name, true);
  std::int64_t v = 0;
  a.read(H5::PredType::NATIVE_INT64, &v);
  return v;
}

std::vector<double> read_double_vector_attribute(const H5::H5Object& obj,
                                                 const std::string& name) {
  const std::string where = h5_location(obj) + "@" + name;
  H5::Attribute a = open_attribute(obj, name);
  const H5T_class_t cls = a.getTypeClass();
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) throw Error(where + ": not a numeric attribute");
  std::vector<double> v(static_cast<std::size_t>(a.getSpace().getSimpleExtentNpoints()));
  if (!v.empty()) a.read(H5::PredType::NATIVE_DOUBLE, v.data());
  return v;
}

namespace {

template <class T>
void write_vector(const H5::Group& g, const std::string& name, const std::vector<T>& v, const H5::PredType& type) {
  const hsize_t dims[1] = {v.size()};
  H5::DataSet ds = g.createDataSet(name, type, H5::DataSpace(1, dims));
  if (!v.empty()) ds.write(v.data(), type);
}

template <class T>
std::vector<T> read_vector(const H5::Group& g, const std::string& name, const H5::PredType& type) {
  H5::DataSet ds = g.openDataSet(name);
  H5::DataSpace space = ds.getSpace();
  if (space.getSimpleExtentNdims() != 1) throw Error(h5_location(g, name) + ": expected a 1-D dataset");
  hsize_t dims[1];
  space.getSimpleExtentDims(dims);
  std::vector<T> v(dims[0]);
  if (!v.empty()) ds.read(v.data(), type);
  return v;
}

}  // namespace

void write_double_vector(const H5::Group& g, const std::string& name, const std::vector<double>& v) {
  write_vector(g, name, v, H5::PredType::NATIVE_DOUBLE);
}
void write_int64_vector(const H5::Group& g, const std::string& name, const std::vector<std::int64_t>& v) {
  write_vector(g, name, v, H5::PredType::NATIVE_INT64);
}
void write_uint64_vector(const H5::Group& g, const std::string& name, const std::vector<std::uint64_t>& v) {
  write_vector(g, name, v, H5::PredType::NATIVE_UINT64);
}
std::vector<double> read_double_vector(const H5::Group& g, const std::string& name) {
  return read_vector<double>(g, name, H5::PredType::NATIVE_DOUBLE);
}
std::vector<std::int64_t> read_int64_vector(const H5::Group& g, const std::string& name) {
  return read_vector<std::int64_t>(g, name, H5::PredType::NATIVE_INT64);
}
std::vector<std::uint64_t> read_uint64_vector(const H5::Group& g, const std::string& name) {
  return read_vector<std::uint64_t>(g, name, H5::PredType::NATIVE_UINT64);
}

}  // namespace diffusion
