#include "diffusion/results.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "diffusion/hdf5_io.hpp"

namespace diffusion {
namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

H5::DataSet make_extendable(const H5::Group& g, const std::string& name, const H5::PredType& type) {
  const hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {1024};
  H5::DataSpace space(1, dims, maxdims);
  H5::DSetCreatPropList props;
  props.setChunk(1, chunk);
  return g.createDataSet(name, type, space, props);
}

void append_value(H5::DataSet& ds, hsize_t row, const void* value, const H5::PredType& type) {
  const hsize_t size[1] = {row + 1}, offset[1] = {row}, count[1] = {1};
  ds.extend(size);
  H5::DataSpace file_space = ds.getSpace();
  file_space.selectHyperslab(H5S_SELECT_SET, count, offset);
  H5::DataSpace mem_space(1, count);
  ds.write(value, type, mem_space, file_space);
}

}  // namespace

ResultsWriter::ResultsWriter(const std::string& out_path) : out_path_(out_path) {
  const fs::path out(out_path);
  fs::path dir = out.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir))
    throw Error("output " + out_path + ": folder " + dir.string() + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    throw Error("output " + out_path + ": folder " + dir.string() + " is not writable");
  if (fs::is_directory(out)) throw Error("output " + out_path + " is a folder, expected a file path");
  temp_path_ = (dir / ("." + out.filename().string() + "." + std::to_string(::getpid()) + ".tmp")).string();
  try {
    H5::Exception::dontPrint();
    file_ = H5::H5File(temp_path_, H5F_ACC_TRUNC);
    write_attribute(file_, "status", "running");
    write_attribute(file_, "version", kResultsVersion);
    H5::Group train = h5_require_group(root(), "train");
    steps_ = make_extendable(train, "step", H5::PredType::NATIVE_INT64);
    losses_ = make_extendable(train, "loss", H5::PredType::NATIVE_DOUBLE);
  } catch (const H5::Exception& e) {
    std::remove(temp_path_.c_str());
    throw Error("output " + out_path + ": cannot create " + temp_path_ + ": " + e.getDetailMsg());
  }
}

ResultsWriter::~ResultsWriter() {
  if (!done_) abandon();
}

void ResultsWriter::append_train(std::int64_t step, double loss) {
  append_value(steps_, rows_, &step, H5::PredType::NATIVE_INT64);
  append_value(losses_, rows_, &loss, H5::PredType::NATIVE_DOUBLE);
  ++rows_;
}

void ResultsWriter::finish(const std::string& status) {
  try {
    write_attribute(file_, "status", status);
    steps_.close();
    losses_.close();
    file_.flush(H5F_SCOPE_GLOBAL);
    file_.close();
  } catch (const H5::Exception& e) {
    done_ = true;  // keep the temporary file for inspection
    throw Error("output " + out_path_ + ": writing " + temp_path_ + " failed: " + e.getDetailMsg() +
                " (the temporary file is kept)");
  }
  fsync_path(temp_path_, O_RDONLY);
  if (std::rename(temp_path_.c_str(), out_path_.c_str()) != 0)
    throw Error("output " + out_path_ + ": cannot rename " + temp_path_ + " into place");
  fs::path dir = fs::path(out_path_).parent_path();
  fsync_path(dir.empty() ? "." : dir.string(), O_RDONLY | O_DIRECTORY);
  done_ = true;
}

void ResultsWriter::abandon() {
  try {
    steps_.close();
    losses_.close();
    file_.close();
  } catch (...) {
  }
  std::remove(temp_path_.c_str());
  done_ = true;
}

}  // namespace diffusion
