// Consistency models end to end with runexp: a distillation run (a teacher trained with the score
// SDE's continuous DSM on the VE path, loaded frozen into the `teacher` slot; the EMA target slot
// `target` changed by the loss) and an iCT run (its curriculum doubles N at steps 20 and 40 of
// 60). Each is resumed from an earlier checkpoint and must end bit-identical to the uninterrupted
// run: the target is checkpointed and every other state of the losses is a function of the step.
// The samplers report their NFE: 1 for one step, 1 + the number of intermediate levels.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/run/checkpoint.hpp>

#include "e2e/runexp_child.hpp"
#include "e2e/scratch_dir.hpp"

namespace fs = std::filesystem;
using namespace diffusion;
using diffusion::testing::Child;
using diffusion::testing::run_runexp;
using diffusion::testing::ScratchDir;

namespace {

const char* const kTeacher =
    "name: teacher\n"
    "seed: 1\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [32, 32]}\n"
    "sde:     {type: ve, sigma_min: 0.002, sigma_max: 80}\n"
    "loss:    {type: continuous_dsm}\n"
    "train:   {steps: 50, batch_size: 64, optimizer: {type: adam, lr: 1.0e-3}}\n"
    "sampler: {type: ode, method: euler, steps: 5, n: 50}\n"
    "metrics: []\n";

std::string distillation(const std::string& teacher) {
  return "name: cd\n"
         "seed: 2\n"
         "init: " + teacher + "\n"
         "dataset: {type: moons, noise: 0.05}\n"
         "network: {type: mlp, hidden: [32, 32]}\n"
         "sde:     {type: ve, sigma_min: 0.002, sigma_max: 80}\n"
         "models:\n"
         "  teacher: {init: " + teacher + "}\n"
         "  target:  {init: " + teacher + ", frozen: false}\n"
         "loss:    {type: consistency_distillation, teacher_preconditioning: eps, levels: 10, mu: 0.9}\n"
         "train:   {steps: 40, batch_size: 64, optimizer: {type: adam, lr: 1.0e-3}, lr_schedule: {type: cosine},\n"
         "          ema: 0.99, checkpoint_every: 10, keep_checkpoints: 10}\n"
         "samplers:\n"
         "  - {type: consistency, name: one, n: 50}\n"
         "  - {type: consistency, name: three, sigmas: [2.0, 0.5], n: 50}\n"
         "metrics: []\n";
}

const char* const kTraining =
    "name: ct\n"
    "seed: 3\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [32, 32]}\n"
    "sde:     {type: ve, sigma_min: 0.002, sigma_max: 80}\n"
    "loss:    {type: consistency_training, s0: 2, s1: 8}\n"
    "train:   {steps: 60, batch_size: 64, optimizer: {type: adam, lr: 1.0e-3}, lr_schedule: {type: cosine},\n"
    "          ema: 0.99, checkpoint_every: 10, keep_checkpoints: 10}\n"
    "samplers:\n"
    "  - {type: consistency, name: one, n: 50}\n"
    "  - {type: consistency, name: two, sigmas: [0.8], n: 50}\n"
    "metrics: []\n";

struct H5Read {
  explicit H5Read(const std::string& path) : file(path, H5F_ACC_RDONLY), root(file.openGroup("/")) {}
  H5::H5File file;
  H5::Group root;
};

/// Every dataset of `group` of a agrees bit for bit with `other` (default the same group) of b.
bool same_group(const H5Read& a, const H5Read& b, const std::string& group, const std::string& other = "") {
  const auto ga = h5_open_group(a.root, group), gb = h5_open_group(b.root, other.empty() ? group : other);
  const auto names = h5_dataset_names(ga);
  if (names.empty() || names != h5_dataset_names(gb)) return false;
  for (const auto& n : names) {
    const Tensor x = read_tensor(ga, n), y = read_tensor(gb, n);
    if (shape_of(x) != shape_of(y) || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) != 0) return false;
  }
  return true;
}

/// Resume a copy of the complete run `ref` from its checkpoint at step `from`; it must end as `ref`.
void require_resume_matches(const std::string& ref, std::int64_t from, const std::vector<std::string>& groups) {
  ScratchDir d("cm-resume");
  const std::string path = d / "r.h5";
  fs::copy_file(ref, path);
  fs::copy(ref + ".ckpt", path + ".ckpt", fs::copy_options::recursive);
  for (const auto& c : list_checkpoints(path + ".ckpt"))
    if (c.first > from) fs::remove(c.second);
  const Child r = run_runexp({"--resume", path}, d / "resume");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const H5Read a(ref), b(path);
  for (const std::string& g : groups) {
    CAPTURE(g);
    CHECK(same_group(a, b, g));
  }
}

}  // namespace

TEST_CASE("consistency e2e: distillation keeps its target and resumes bit-identical", "[consistency][e2e]") {
  ScratchDir d("cm-cd");
  std::ofstream(d / "teacher.yaml") << kTeacher;
  const Child t = run_runexp({d / "teacher.yaml", "--out", d / "teacher.h5"}, d / "teacher");
  CAPTURE(t.err);
  REQUIRE(t.status == 0);
  std::ofstream(d / "cd.yaml") << distillation(d / "teacher.h5");
  const std::string ref = d / "cd.h5";
  const Child r = run_runexp({d / "cd.yaml", "--out", ref}, d / "cd");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  {
    const H5Read f(ref);
    CHECK(read_int_attribute(h5_open_group(f.root, "samples/one"), "nfe") == 1);
    CHECK(read_int_attribute(h5_open_group(f.root, "samples/three"), "nfe") == 3);
    // The target moved away from the teacher's weights it started from; the teacher is frozen
    // (not in the checkpoints).
    const H5Read teacher(d / "teacher.h5");
    CHECK_FALSE(same_group(f, teacher, "models/target", "model"));
    const auto ckpts = list_checkpoints(checkpoint_dir_for(ref));
    REQUIRE(!ckpts.empty());
    const H5Read last(ckpts.back().second);
    CHECK(h5_exists(last.root, "models/target"));
    CHECK_FALSE(h5_exists(last.root, "models/teacher"));
  }
  require_resume_matches(ref, 20, {"model", "ema", "models/target", "samples/one", "samples/three", "train"});
}

TEST_CASE("consistency e2e: iCT's curriculum is a function of the step: a resumed run ends bit-identical",
          "[consistency][e2e]") {
  ScratchDir d("cm-ct");
  std::ofstream(d / "ct.yaml") << kTraining;
  const std::string ref = d / "ct.h5";
  const Child r = run_runexp({d / "ct.yaml", "--out", ref}, d / "ct");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  // Resume before the first doubling of N (step 20) and between the two (step 30).
  for (const std::int64_t from : {10, 30}) {
    CAPTURE(from);
    require_resume_matches(ref, from, {"model", "ema", "samples/one", "samples/two", "train"});
  }
}
