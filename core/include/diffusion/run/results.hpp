#pragma once
// The results file of one run (layout in docs/results-format.md). It is built in memory (h5_memory_file.hpp),
// written to a temporary file in the output's folder and renamed into place only when the run
// ends, so the output path never holds a half-written file, a file whose status says "complete"
// is complete, and a full disk (or `ulimit -f`) is an error message rather than a crash. A run
// killed before the rename leaves the temporary file; the next run in the folder removes it
// (stale_temp_files.hpp).
#include <cstdint>
#include <string>

#include <H5Cpp.h>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// Version of the results layout, stored as the root attribute `version`.
constexpr const char* kResultsVersion = "2";

/// Refuse an output path whose folder does not exist or is not writable, or that is a folder:
/// Error "output <path>: folder <dir> does not exist" (is not writable, ...). Run before
/// training, so a run cannot fail on its output after hours of work.
void check_output_path(const std::string& out_path);

/// `error` with the file size limit spelt out when it reports a write that failed with EFBIG
/// ("File too large"): the process's RLIMIT_FSIZE (`ulimit -f`; runexp ignores SIGXFSZ, so a
/// write past the limit fails like one on a full disk instead of killing the run), or else the
/// largest file the file system holds. Other errors are returned as they are.
std::string explain_file_size_limit(const std::string& error);

class ResultsWriter {
 public:
  /// Checks that the output folder exists and is writable, creates the (empty) temporary file
  /// `<folder>/.<name>.<pid>.tmp` and starts the file with status=running. Throws Error naming
  /// the path otherwise.
  explicit ResultsWriter(const std::string& out_path);
  /// A writer that was never finished removes its temporary file.
  ~ResultsWriter();
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  H5::H5File& file() { return file_; }
  /// The root group "/" (pass this, not the H5File, where an H5::Group is expected: in HDF5
  /// 1.10 an H5File sliced to its Group base has no valid id).
  H5::Group root() { return file_.openGroup("/"); }
  const std::string& out_path() const { return out_path_; }
  const std::string& temp_path() const { return temp_path_; }

  /// Set the root attribute status (complete | failed | interrupted), write the file to the
  /// temporary path, fsync it and rename it over the output path. If writing fails (e.g. a
  /// full disk) the partial temporary file is removed, Error names both paths, the output path
  /// is left as it was, and the writer stays usable (finish again, or abandon).
  void finish(const std::string& status);
  /// Remove the temporary file without producing an output.
  void abandon();

 private:
  void close_handles();

  std::string out_path_, temp_path_;
  H5::H5File file_;
  bool done_ = false;
};

}  // namespace diffusion
