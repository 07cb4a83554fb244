#pragma once
// A fresh folder under the system temp dir for one end-to-end test, removed with everything in
// it when the test ends.
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::testing {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag = "test") {
    std::string pattern =
        (std::filesystem::temp_directory_path() / ("diffusion-" + tag + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw Error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace diffusion::testing
