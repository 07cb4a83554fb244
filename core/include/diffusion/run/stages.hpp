#pragma once
// The run in stages, each in its own file; run_experiment (runner.cpp) only sequences them.
//
//   prepare_data      fit (or load) the codec, write /data, draw the reference
//   train_model       the training loop, checkpoints; writes /model, /ema, /models, /train
//   draw_samples      every sampler (with its repeats); writes /samples
//   evaluate_samples  every metric of every sampler, and the metric floor; writes /metrics
//   write_results     timings and status; the file is complete
//
// A stage that sees a stop request throws RunInterrupted; errors are Error exceptions.
#include <memory>

#include "diffusion/run/run_context.hpp"

namespace diffusion {

void prepare_data(RunContext& run);
void train_model(RunContext& run);
void draw_samples(RunContext& run);
void evaluate_samples(RunContext& run);
void write_results(RunContext& run);

/// One run of one sampler on `model`, as draw_samples runs it (the benchmark times this):
/// the condition of its n samples, the request, the sampler; the output is in the model's space.
SampleOutput run_sampler(const Experiment& ex, const SamplerSpec& spec, const Denoiser& model, Rng& rng,
                         Trajectory* trajectory = nullptr);

/// The models, EMA and named slots into the results file (/model, /ema, /models/<slot>).
void save_models(const Experiment& ex, const H5::Group& root);

}  // namespace diffusion
