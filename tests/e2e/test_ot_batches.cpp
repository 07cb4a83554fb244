// OT plans spanning several training batches (Loss::batches_per_plan, the cfm loss's ot_batch)
// through the training loop itself (TrainLoop, as runexp trains):
//   - a run with ot_batch = 4 x train.batch_size (two shards) checkpointed in the middle of a
//     plan block and resumed ends bit-identical (weights, EMA, every step's loss) to the
//     uninterrupted run: the block's data and plan are a function of the seed and the block;
//   - the plan block changes training (ot_batch 4B differs from one batch per plan);
//   - an ot_batch that is not a multiple of train.batch_size is refused, naming both keys.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>
#include <diffusion/run/experiment.hpp>
#include <diffusion/run/train_loop.hpp>

#include "scratch_dir.hpp"

using namespace diffusion;

namespace {

void load_plugins() {
  for (const char* p : {"flow_matching", "score_sde", "mlp", "toy_data"})
    load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_" + p + ".so");
}

// 12 steps of 16 rows on two shards; with ot_batch 64 a plan block is 4 steps.
std::unique_ptr<Experiment> compose(const std::string& loss) {
  load_plugins();
  Config c = Config::load_string(
      "name: ot_batches\n"
      "seed: 5\n"
      "dataset: {type: moons, noise: 0.05}\n"
      "source:  {type: eight_gaussians}\n"
      "network: {type: mlp, hidden: [32, 32], activation: silu, time_embedding: {type: sinusoidal, dim: 8}}\n"
      "sde:     {type: linear}\n"
      "loss:    " + loss + "\n"
      "train:   {steps: 12, batch_size: 16, shards: 2, optimizer: {type: adam, lr: 1.0e-2},\n"
      "          lr_schedule: {type: cosine}, ema: 0.9}\n"
      "sampler: {type: ode, method: euler, steps: 1, n: 10}\n");
  auto ex = std::make_unique<Experiment>(compose_experiment(c));
  ex->codec->fit(*ex->dataset, Rng(ex->seed).split("normalize"));  // as the run's first stage does
  return ex;
}

struct Run {
  std::vector<double> losses;           // every step's loss
  std::vector<std::vector<float>> weights;  // model, then EMA
};

std::vector<std::vector<float>> weights_of(const Experiment& ex) {
  std::vector<std::vector<float>> w;
  for (const char* slot : {"model", "ema"})
    for (const auto& e : ex.models.get(slot).named_state()) w.emplace_back(e.second.value().begin(), e.second.value().end());
  return w;
}

Run train(const std::string& loss) {
  auto ex = compose(loss);
  TrainLoop loop(*ex, Rng(ex->seed));
  Run r;
  while (loop.steps_done() < 12) r.losses.push_back(loop.step());
  r.weights = weights_of(*ex);
  return r;
}

const char* const kOt4 = "{type: cfm, coupling: minibatch_ot, ot_batch: 64}";

}  // namespace

TEST_CASE("ot batches: a run resumed inside a plan block ends bit-identical", "[e2e][flow_matching][resume]") {
  const Run ref = train(kOt4);
  testing::ScratchDir dir("ot-batches");
  Run resumed;
  std::string ckpt;
  {
    auto ex = compose(kOt4);
    TrainLoop loop(*ex, Rng(ex->seed));
    while (loop.steps_done() < 6) resumed.losses.push_back(loop.step());  // step 6: inside block 1 (steps 4-7)
    ckpt = loop.checkpoint(dir.path().string(), 2);
  }
  {
    auto ex = compose(kOt4);
    TrainLoop loop(*ex, Rng(ex->seed));
    loop.restore(ckpt);
    REQUIRE(loop.steps_done() == 6);
    while (loop.steps_done() < 12) resumed.losses.push_back(loop.step());
    resumed.weights = weights_of(*ex);
  }
  REQUIRE(resumed.losses.size() == 12);
  for (std::size_t i = 0; i < 12; ++i) {
    CAPTURE(i);
    REQUIRE(std::memcmp(&resumed.losses[i], &ref.losses[i], sizeof(double)) == 0);
  }
  REQUIRE(resumed.weights == ref.weights);

  // The block matters: one batch per plan trains differently.
  const Run one = train("{type: cfm, coupling: minibatch_ot}");
  REQUIRE(one.weights != ref.weights);
}

TEST_CASE("ot batches: an ot_batch that is not a multiple of the batch is refused naming the key",
          "[e2e][flow_matching]") {
  // Refused when the experiment is composed, before anything is trained.
  try {
    compose("{type: cfm, coupling: minibatch_ot, ot_batch: 40}");
    FAIL("an ot_batch of 40 with train.batch_size 16 was accepted");
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    CAPTURE(what);
    REQUIRE(what.find("loss.ot_batch") != std::string::npos);
    REQUIRE(what.find("train.batch_size 16") != std::string::npos);
  }
}
