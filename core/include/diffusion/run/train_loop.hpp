#pragma once
// The training loop's step, as runexp runs it and the benchmark times it: one update of the
// model from a fresh batch.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/run/checkpoint.hpp"
#include "diffusion/run/data_parallel.hpp"
#include "diffusion/run/experiment.hpp"
#include "diffusion/run/loss_log.hpp"

namespace diffusion {

class TrainLoop {
 public:
  /// Streams `data` and `train` split from the run's master stream; the EMA (train.ema > 0)
  /// starts as the `ema` slot holds it.
  TrainLoop(Experiment& ex, const Rng& master);
  TrainLoop(const TrainLoop&) = delete;  // the context points into it
  TrainLoop& operator=(const TrainLoop&) = delete;

  /// Continue from a checkpoint: streams, weights, optimiser, EMA, changed named models, log.
  void restore(const std::string& checkpoint_path);

  /// One update: the learning rate of this step, a batch drawn and encoded (and prepared by the
  /// loss, once per plan block: loss.hpp), its labels dropped with train.label_dropout, the loss and its gradients (sharded), clipping, the
  /// optimiser, the EMA, the loss's after_step and the log.
  /// Returns the batch's loss; Error (and no update) when it is not finite.
  double step();

  std::int64_t steps_done() const { return step_; }
  const LossLog& log() const { return log_; }

  /// Write a checkpoint of the state after steps_done() updates into dir, keeping the newest
  /// `keep`; Error instead when a weight is not finite. Returns the file written.
  std::string checkpoint(const std::string& dir, int keep) const;

 private:
  Experiment& ex_;
  /// The batch of this step: drawn from data_rng_ (one batch per plan) or taken from the plan
  /// block's rows (several), after the loss's prepare_batch.
  void next_batch(Tensor& x0, Condition& c);
  /// Classifier-free guidance's label dropout (train.label_dropout): the null mask of the batch.
  void drop_labels(Condition& c) const;

  Rng data_rng_, train_rng_;
  Rng plan_root_;  // block b's prepare_batch stream (and its data, k > 1): plan_root_.split(b)
  Rng dropout_root_;  // step k's label dropout: dropout_root_.split(k)
  std::unique_ptr<EMA> ema_;
  std::vector<Var> params_;
  ShardedStep sharded_;
  LossLog log_;
  TrainContext ctx_;
  bool conditional_;
  std::int64_t step_ = 0;
  // Plans of several batches (loss.hpp, batches_per_plan): the block whose rows are held.
  std::size_t batches_per_plan_ = 1;
  std::int64_t block_ = -1;
  Tensor block_x0_;
  Condition block_c_;
  // Each shard's per-sample losses and times of the current step.
  std::vector<Tensor> shard_losses_, shard_times_;
};

}  // namespace diffusion
