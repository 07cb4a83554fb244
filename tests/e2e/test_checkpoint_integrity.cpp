// Checkpoints are verified on load (issue 17, acceptance 3): one small checkpoint is written by
// runexp, then copied with one bit flipped, 100 times at random places of the file and at the
// places HDF5 itself never checks (a weight's bytes, a random stream's state, the stored config
// text, the seal's own padding); every copy is skipped by find_latest_checkpoint with a message
// naming it, and refused by read_checkpoint_info. The intact copy loads. A checkpoint whose seal
// is intact but whose weights are not finite is skipped naming the dataset. And, exhaustively,
// every one of the single-bit flips of a small sealed file breaks its seal.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/file_seal.hpp>
#include <diffusion/io/h5_memory_file.hpp>
#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/run/checkpoint.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"
#include "sealed_file_edit.hpp"

namespace fs = std::filesystem;
using diffusion::testing::file_bytes;
using diffusion::testing::ScratchDir;

namespace {

const char* const kConfig =
    "name: integrity\n"
    "seed: 4\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [16, 16], activation: silu, time_embedding: {type: sinusoidal, dim: 8}}\n"
    "sde:     {type: ddpm, timesteps: 100}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 20, batch_size: 32, optimizer: {type: adam, lr: 1.0e-3}, ema: 0.9, checkpoint_every: 20}\n"
    "sampler: {type: ddim, steps: 5, n: 50}\n";

/// One checkpoint written by runexp, shared by the test cases.
struct Written {
  ScratchDir dir{"integrity"};
  std::string checkpoint;
  std::int64_t step = -1;
  std::string err;
  Written() {
    const std::string yaml = dir / "x.yaml", out = dir / "run.h5";
    std::ofstream(yaml) << kConfig;
    const auto r = diffusion::testing::run_runexp({yaml, "--out", out}, dir / "run");
    err = r.err;
    const auto all = diffusion::list_checkpoints(diffusion::checkpoint_dir_for(out));
    if (r.status == 0 && !all.empty()) checkpoint = all.back().second, step = all.back().first;
  }
};

Written& written() {
  static Written w;
  return w;
}

/// The first bit of a dataset's raw data in the file (contiguous layout), checked against its
/// values so that the offset is known to be right.
std::size_t data_bit(const std::string& path, const std::string& group, const std::string& name) {
  H5::H5File f(path, H5F_ACC_RDONLY);
  const H5::DataSet ds = diffusion::h5_open_group(f.openGroup("/"), group).openDataSet(name);
  const std::size_t offset = static_cast<std::size_t>(ds.getOffset());
  const std::size_t bytes = static_cast<std::size_t>(ds.getStorageSize());
  std::vector<char> stored(bytes);
  ds.read(stored.data(), ds.getDataType());
  const std::vector<char> file = file_bytes(path);
  REQUIRE(offset + bytes <= file.size());
  REQUIRE(std::memcmp(file.data() + offset, stored.data(), bytes) == 0);
  return 8 * (offset + bytes / 2) + 3;  // the middle of the data
}

/// The first bit of `text` in the file (e.g. inside the stored config attribute).
std::size_t text_bit(const std::string& path, const std::string& text) {
  const std::vector<char> file = file_bytes(path);
  const auto it = std::search(file.begin(), file.end(), text.begin(), text.end());
  REQUIRE(it != file.end());
  return 8 * static_cast<std::size_t>(it - file.begin()) + 1;
}

}  // namespace

TEST_CASE("checkpoint integrity: one flipped bit anywhere in 100 checkpoints is found on load",
          "[e2e][checkpoint]") {
  Written& w = written();
  CAPTURE(w.err);
  REQUIRE(!w.checkpoint.empty());
  const std::string name = fs::path(w.checkpoint).filename().string();
  const std::size_t bits = 8 * fs::file_size(w.checkpoint);

  // The intact copy loads: the test below fails for the flip, not for the copy.
  {
    ScratchDir d("intact");
    fs::copy_file(w.checkpoint, d / name);
    std::vector<std::string> skipped;
    const auto found = diffusion::find_latest_checkpoint(d.path().string(), &skipped);
    CAPTURE(skipped);
    REQUIRE(found);
    CHECK(found->step == w.step);
  }

  // Where HDF5 has no checksum of its own, and the seal's own bytes.
  std::vector<std::pair<std::string, std::size_t>> flips = {
      {"a weight of /model", data_bit(w.checkpoint, "model", "net.layers.1.weight")},
      {"Adam's second moment", data_bit(w.checkpoint, "optimizer", "0/exp_avg_sq")},
      {"the data stream's state", data_bit(w.checkpoint, "rng", "data")},
      {"the stored config text", text_bit(w.checkpoint, "activation: silu")},
      {"the seal's CRC digits", 8 * 23},
      {"the seal's padding", 8 * 300 + 5},
      {"HDF5's signature", 8 * (diffusion::kSealBytes + 1)},
      {"the last byte", bits - 1},
  };
  std::mt19937_64 rng(17);
  for (int i = 0; i < 100; ++i) flips.push_back({"random bit", std::uniform_int_distribution<std::size_t>(0, bits - 1)(rng)});

  ScratchDir d("flips");
  int detected = 0;
  for (std::size_t i = 0; i < flips.size(); ++i) {
    const auto& [where, bit] = flips[i];
    CAPTURE(i, where, bit, bits);
    const fs::path trial = d.path() / std::to_string(i);
    fs::create_directory(trial);
    const std::string copy = (trial / name).string();
    fs::copy_file(w.checkpoint, copy);
    diffusion::testing::flip_bit(copy, bit);

    std::vector<std::string> skipped;
    const auto found = diffusion::find_latest_checkpoint(trial.string(), &skipped);
    CHECK_FALSE(found);
    REQUIRE(skipped.size() == 1);
    CHECK(skipped[0].rfind(copy + ": ", 0) == 0);  // names the file
    CHECK_THROWS_WITH(diffusion::read_checkpoint_info(copy), Catch::Contains(copy));
    detected += !found && skipped.size() == 1;
  }
  CHECK(detected == int(flips.size()));
}

TEST_CASE("checkpoint integrity: an intact seal over non-finite weights is skipped naming the dataset",
          "[e2e][checkpoint]") {
  Written& w = written();
  REQUIRE(!w.checkpoint.empty());
  ScratchDir d("nonfinite");
  const std::string copy = d / fs::path(w.checkpoint).filename().string();
  fs::copy_file(w.checkpoint, copy);
  {
    H5::H5File f(copy, H5F_ACC_RDWR);
    const H5::Group ema = diffusion::h5_open_group(f.openGroup("/"), "ema");
    diffusion::Tensor t = diffusion::read_tensor(ema, "net.layers.0.bias");
    t.flat(3) = std::nanf("");
    diffusion::write_tensor(ema, "net.layers.0.bias", t);
  }
  diffusion::testing::reseal(copy);
  std::vector<std::string> skipped;
  CHECK_FALSE(diffusion::find_latest_checkpoint(d.path().string(), &skipped));
  REQUIRE(skipped.size() == 1);
  CHECK(skipped[0].find(copy + ": non-finite values in /ema/net.layers.0.bias") == 0);
}

TEST_CASE("checkpoint integrity: every single-bit flip of a small sealed file breaks its seal", "[e2e][checkpoint]") {
  ScratchDir d("seal");
  const std::string path = d / "small.h5";
  {
    H5::H5File f = diffusion::h5_create_in_memory(path);
    diffusion::write_attribute(f, "config", "name: small\nseed: 3\n");
    diffusion::write_attribute(f, "step", std::int64_t{7});
    diffusion::write_tensor(f.openGroup("/"), "w", diffusion::Tensor{0.5f, -1.0f, 2.0f});
    diffusion::h5_save_image(f, path);
  }
  const std::vector<char> bytes = file_bytes(path);
  REQUIRE(bytes.size() > diffusion::kSealBytes);
  CHECK(diffusion::check_seal(bytes.data(), bytes.size()) == diffusion::kSealBytes);
  // h5py and HDF5 read it as a file with a 512-byte user block.
  {
    H5::H5File f(path, H5F_ACC_RDONLY);
    CHECK(diffusion::read_int_attribute(f, "step") == 7);
    CHECK(diffusion::h5_open_verified(path).sealed);
  }
  // Without its seal (a file from before seals) it is read unchecked.
  const std::vector<char> unsealed(bytes.begin() + diffusion::kSealBytes, bytes.end());
  CHECK(diffusion::check_seal(unsealed.data(), unsealed.size()) == 0);

  std::size_t missed = 0;
  std::vector<char> flipped = bytes;
  for (std::size_t bit = 0; bit < 8 * bytes.size(); ++bit) {
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    try {
      diffusion::check_seal(flipped.data(), flipped.size());
      ++missed;
    } catch (const diffusion::CorruptFile&) {
    }
    flipped[bit / 8] = bytes[bit / 8];
  }
  CAPTURE(bytes.size());
  CHECK(missed == 0);
  // Truncated by one byte, or one byte longer.
  CHECK_THROWS_AS(diffusion::check_seal(bytes.data(), bytes.size() - 1), diffusion::CorruptFile);
  std::vector<char> longer = bytes;
  longer.push_back(0);
  CHECK_THROWS_WITH(diffusion::check_seal(longer.data(), longer.size()), Catch::Contains("(extended)"));
}
