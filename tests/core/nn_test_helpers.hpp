#pragma once
// Helpers shared by the core tests.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "diffusion/tensor/parallel.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion::testing {

/// A file in the temp directory, unique per process and tag, removed when the test ends.
struct TempH5 {
  std::string path;
  explicit TempH5(const std::string& tag)
      : path((std::filesystem::temp_directory_path() /
              ("diffusion_test_" + tag + "_" + std::to_string(::getpid()) + ".h5"))
                 .string()) {}
  ~TempH5() { std::filesystem::remove(path); }
};

/// The message of the Error f throws, or "" if it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// Sets the core's thread count for a test's scope, then restores it.
struct ThreadCount {
  int saved = num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;
};

/// Same shape and the same bytes (so -0 differs from 0 and NaNs compare by payload).
inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return shape_of(a) == shape_of(b) &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace diffusion::testing
