#pragma once
// An experiment: the components a YAML file names, composed through the registries, and the
// settings of training, sampling and evaluation. compose_experiment() reads and checks the
// whole file before anything runs, so a typo fails in a second, not after training.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/components.hpp"
#include "diffusion/io/config.hpp"
#include "diffusion/optim/optim.hpp"
#include "diffusion/plugin/registries.hpp"

namespace diffusion {

/// One entry of `sampler:` / `samplers:`.
struct SamplerSpec {
  std::string name;                  ///< results group /samples/<name> (default: its type)
  std::string type;                  ///< registry name of the sampler
  std::shared_ptr<Sampler> sampler;
  std::size_t n = 2000;              ///< number of samples
  std::size_t trajectory = 0;        ///< frames of the trajectory to keep (0: none)
  bool use_ema = true;               ///< sample with the EMA weights when there are some
  std::size_t repeats = 1;           ///< independent runs of the sampler; metrics are their mean and spread
  std::size_t batch = 0;             ///< rows per network evaluation (0: all n at once); same samples
  std::shared_ptr<Guidance> guidance;  ///< `guidance:` (classifier-free, classifier); null: none
  /// `labels:` the classes the samples are asked for: kLabelsFromData (`data`, the default: as
  /// the data set draws them), kLabelsBalanced (`balanced`: row i gets class i mod K), or one class.
  static constexpr int kLabelsFromData = -1, kLabelsBalanced = -2;
  int labels = kLabelsFromData;
  bool labels_given = false;         ///< `labels:` or `guidance:` set: draw labels even for an unconditional network
};

/// One entry of `metrics:`.
struct MetricSpec {
  std::string name;
  std::shared_ptr<Metric> metric;
};

/// The `train:` section.
struct TrainSettings {
  std::int64_t steps = 1000;         ///< 0 (only with `init:`): no training, sample the loaded model
  std::int64_t batch_size = 256;
  /// Equal shards of each batch, run at once on the core's threads (data_parallel.hpp); the
  /// numbers depend on this, never on the thread count. 1: the whole batch as one.
  std::int64_t shards = 1;
  std::int64_t log_every = 100;      ///< rows of /train/loss: the mean loss of each window
  std::int64_t loss_by_t_bins = 20;  ///< time bins of /train/loss_by_t
  double ema_decay = 0.0;            ///< 0: no EMA
  bool ema_warmup = true;            ///< decay min(ema, (1+n)/(10+n)): short runs stay usable
  double grad_clip = 0.0;            ///< max global gradient norm; 0: no clipping
  /// Write a checkpoint (<out>.ckpt/step_<k>.h5) every this many steps; 0: only on interrupt.
  /// Default max(1000, steps / 10): about ten per run, never more often than every 1000 steps.
  std::int64_t checkpoint_every = 1000;
  std::int64_t keep_checkpoints = 2;  ///< how many of the newest checkpoints to keep (>= 1)
  std::vector<std::string> freeze;    ///< modules or parameters of the model that are not trained
  /// Probability that a row's label is dropped (the null label) in training: classifier-free
  /// guidance's joint conditional/unconditional model (Ho & Salimans 2022, Algorithm 1, p_uncond).
  double label_dropout = 0.0;
  LrSchedule schedule;
};

/// The reference data the metrics compare samples with, and the metric floor.
struct EvaluationSettings {
  std::size_t reference_n = 0;   ///< reference samples (default: the largest sampler's n)
  std::size_t floor_draws = 5;   ///< fresh independent draws of the data scored as the floor
};

struct Experiment {
  explicit Experiment(Config c) : config(std::move(c)) {}
  Config config;
  std::string name;
  std::uint64_t seed = 0;
  std::shared_ptr<Dataset> dataset;
  std::shared_ptr<Codec> codec;       ///< data <-> model space (default: standardize per coordinate)
  std::shared_ptr<Source> source;     ///< default: the standard Gaussian
  std::shared_ptr<Path> path;         ///< the `sde:` key
  std::shared_ptr<Loss> loss;
  /// `model` (trained), `ema` when train.ema > 0 or loaded by `init:`, and the `models:` slots.
  Models models;
  std::unique_ptr<Optimizer> optimizer;
  TrainSettings train;
  std::vector<SamplerSpec> samplers;
  std::vector<MetricSpec> metrics;
  EvaluationSettings evaluation;

  /// `init: results/x.h5`: the results file the weights were loaded from ("" without init).
  /// compose_experiment() loads /model into the model, the codec from /data, and the EMA: with
  /// train.ema > 0 it starts from the file's /ema (from /model when the file has none); with
  /// train.ema 0 and train.steps 0 the file's /ema becomes the `ema` slot (so samplers with
  /// use_ema sample with it); with train.ema 0 and steps > 0 the file's /ema, stale once
  /// fine-tuning starts, is not used.
  std::string init;
  bool init_ema = false;       ///< the `ema` slot holds the file's /ema
  bool codec_loaded = false;   ///< the codec came from the init file (not fitted again)

  Network& network() const { return models.get("model"); }
  /// The `ema` slot's network, or null.
  std::shared_ptr<Network> ema_network() const { return models.has("ema") ? models.shared("ema") : nullptr; }
  /// The denoiser of a network: the loss's preconditioning on the path.
  std::shared_ptr<NetworkDenoiser> denoiser(std::shared_ptr<Network> network) const;
};

/// Build every component named by the config (plugins must be loaded already) and check the
/// whole document, unknown keys included. Throws ConfigError on any bad input.
struct ComposeOptions {
  /// Load an `init:` file trained with another architecture (runexp --force; see
  /// init_architecture.hpp), refused by default.
  bool allow_architecture_change = false;
};
Experiment compose_experiment(const Config& config, Registries& regs = registries(), const ComposeOptions& options = {});

}  // namespace diffusion
