#include "diffusion/run/train_loop.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "diffusion/tensor/rows.hpp"

namespace diffusion {
namespace {

std::unique_ptr<EMA> make_ema(Experiment& ex) {
  if (!ex.models.has("ema") || ex.train.ema_decay <= 0) return nullptr;
  // EMA starts as a copy of the model; an EMA loaded by `init:` is kept instead.
  Network& shadow = ex.models.get("ema");
  std::vector<Tensor> kept;
  if (ex.init_ema)
    for (const auto& e : shadow.named_state()) kept.push_back(e.second.value());
  auto ema = std::make_unique<EMA>(ex.network(), ex.models.shared("ema"), ex.train.ema_decay, ex.train.ema_warmup);
  const auto state = shadow.named_state();
  for (std::size_t i = 0; i < kept.size(); ++i) {
    Var v = state[i].second;
    std::copy(kept[i].begin(), kept[i].end(), v.value().begin());
  }
  return ema;
}

bool all_finite(const Module& m) {
  for (const auto& e : m.named_parameters())
    for (const float v : e.second.value())
      if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TrainLoop::TrainLoop(Experiment& ex, const Rng& master)
    : ex_(ex),
      data_rng_(master.split("data")),
      train_rng_(master.split("train")),
      plan_root_(master.split("plan")),
      dropout_root_(master.split("label_dropout")),
      ema_(make_ema(ex)),
      params_(ex.network().trainable_parameters()),
      sharded_(params_, static_cast<std::size_t>(ex.train.shards)),
      log_(ex.train.log_every, ex.train.steps, static_cast<std::size_t>(ex.train.loss_by_t_bins), ex.path->t_min(),
           ex.path->t_max()),
      conditional_(ex.network().class_conditional() && ex.dataset->num_classes() > 0),
      shard_losses_(static_cast<std::size_t>(ex.train.shards)),
      shard_times_(static_cast<std::size_t>(ex.train.shards)) {
  ctx_.total_steps = ex.train.steps;
  ctx_.path = ex.path.get();
  ctx_.source = ex.source.get();
  ctx_.models = &ex.models;
  ctx_.rng = &train_rng_;
  ctx_.batch_size = ex.train.batch_size;
  batches_per_plan_ = ex.loss->batches_per_plan(ctx_);
  if (batches_per_plan_ < 1) throw Error("loss: batches_per_plan() must be at least 1");
}

void TrainLoop::restore(const std::string& path) {
  TrainingState st;
  read_checkpoint(path, st, ex_.models, ema_.get(), *ex_.optimizer);
  // The two streams the loop draws from; every other stream is split from the master seed and
  // is untouched by training, so it needs no saving.
  data_rng_.set_state(st.data_rng);
  train_rng_.set_state(st.train_rng);
  log_.restore(std::move(st.log));
  step_ = st.step;
  block_ = -1;  // a resume inside a plan block redraws and re-plans the block
}

void TrainLoop::next_batch(Tensor& x0, Condition& c) {
  const std::size_t batch = static_cast<std::size_t>(ex_.train.batch_size), k = batches_per_plan_;
  const auto prepare = [&](Tensor& x, Condition& cond, std::int64_t block) {
    // No heap allocation here unless the loss makes one: the flagship's step allocates nothing.
    const std::size_t rows = x.shape()[0];
    Rng plan_rng = plan_root_.split(static_cast<std::uint64_t>(block)).split("prepare");
    ctx_.step = block * static_cast<std::int64_t>(k);
    ex_.loss->prepare_batch(x, cond, ctx_, plan_rng);
    if (x.dimension() == 0 || x.shape()[0] != rows) throw Error("loss: prepare_batch changed the batch's row count");
    if (!cond.empty()) cond.check_rows(rows, "loss: prepare_batch");
  };
  if (k == 1) {
    // The data stream as without the hook; the loss's prepare_batch (a no-op unless it
    // overrides it) draws from its own stream, so a loss without one trains exactly as before.
    x0 = ex_.codec->encode(ex_.dataset->sample(batch, data_rng_, conditional_ ? &c : nullptr));
    prepare(x0, c, step_);
    return;
  }
  // Block b's rows are a function of (seed, b): a resumed run draws the same block.
  const std::int64_t block = step_ / static_cast<std::int64_t>(k);
  if (block != block_) {
    Rng block_data = plan_root_.split(static_cast<std::uint64_t>(block)).split("data");
    block_c_ = Condition();
    block_x0_ = ex_.codec->encode(ex_.dataset->sample(k * batch, block_data, conditional_ ? &block_c_ : nullptr));
    prepare(block_x0_, block_c_, block);
    block_ = block;
  }
  const std::size_t i = static_cast<std::size_t>(step_ % static_cast<std::int64_t>(k));
  x0 = row_range(block_x0_, i * batch, (i + 1) * batch);
  c = block_c_.empty() ? Condition() : block_c_.slice(i * batch, (i + 1) * batch);
}

void TrainLoop::drop_labels(Condition& c) const {
  // Ho & Salimans 2022, Algorithm 1: c <- null with probability p_uncond. The stream is a
  // function of the seed and the step, so a resumed run drops the same rows.
  Rng rng = dropout_root_.split(static_cast<std::uint64_t>(step_));
  std::vector<std::uint8_t> mask(c.rows());
  for (std::size_t i = 0; i < mask.size(); ++i) {
    const bool kept_null = c.is_null(i);  // a row the loss's prepare_batch dropped stays dropped
    mask[i] = rng.uniform_double() < ex_.train.label_dropout || kept_null ? 1 : 0;
  }
  c.set_null_mask(std::move(mask));
}

double TrainLoop::step() {
  const TrainSettings& ts = ex_.train;
  ex_.optimizer->set_lr(ts.schedule.lr_at(step_));
  Condition c;
  Tensor x0;
  next_batch(x0, c);
  if (conditional_ && ts.label_dropout > 0) drop_labels(c);
  ctx_.step = step_;
  Network& net = ex_.network();
  const double loss = sharded_.run(x0, c, train_rng_, [&](const Tensor& x, const Condition& cs, Rng& r, std::size_t s) {
    const LossValues v = ex_.loss->loss(net, x, cs, ctx_, r);
    const std::size_t n = x.shape()[0];
    if (v.per_sample.size() != n || v.per_sample.dim() != 1 || v.times.size() != n)
      throw Error("loss: expected one value and one time per sample (" + std::to_string(n) + "), got shapes " +
                  shape_str(v.per_sample.value()) + " and " + shape_str(v.times));
    shard_losses_[s] = v.per_sample.value();
    shard_times_[s] = v.times;
    return mean(v.per_sample);
  });
  if (!std::isfinite(loss)) {
    std::ostringstream msg;
    msg << "training diverged: loss is " << loss << " at step " << step_ + 1 << " (last finite loss "
        << log_.last_finite() << "); try a smaller learning rate";
    throw Error(msg.str());
  }
  log_.note_finite(loss);
  if (ts.grad_clip > 0) clip_grad_norm(params_, ts.grad_clip);
  ex_.optimizer->step();
  if (ema_) ema_->update();
  ex_.loss->after_step(ctx_);
  ++step_;
  for (std::size_t s = 0; s < shard_losses_.size(); ++s) log_.add_samples(shard_losses_[s], shard_times_[s]);
  log_.add(step_, loss);
  return loss;
}

std::string TrainLoop::checkpoint(const std::string& dir, int keep) const {
  // The loss is checked before each update, so an update can leave non-finite weights behind a
  // finite loss; never store those, so the newest checkpoint is always usable.
  for (const ModelSlot& s : ex_.models.slots())
    if (!s.frozen && !all_finite(*s.network))
      throw Error("training diverged: non-finite weights after step " + std::to_string(step_) +
                  (s.name == "model" ? std::string() : " (in the named model " + s.name + ")"));
  TrainingState st;
  st.step = step_;
  st.data_rng = data_rng_.state();
  st.train_rng = train_rng_.state();
  st.log = log_.state();
  return write_checkpoint(dir, st, ex_.models, ema_.get(), *ex_.optimizer, ex_.config, keep);
}

}  // namespace diffusion
