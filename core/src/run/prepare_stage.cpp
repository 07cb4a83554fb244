// Stage 1: the data. The codec is fitted once (or comes from the `init` file), /data holds what
// it learnt, and the reference the metrics compare with is drawn from its own stream.
#include <ostream>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/run/stages.hpp"

namespace diffusion {

void prepare_data(RunContext& run) {
  Experiment& ex = run.ex;
  const H5::Group root = run.root();
  write_attribute(root, "config", ex.config.dump());
  write_attribute(root, "name", ex.name);
  write_attribute(root, "seed", static_cast<std::int64_t>(ex.seed));
  // With `init:` the model was trained in the coordinates of the init file's codec.
  if (!ex.codec_loaded) ex.codec->fit(*ex.dataset, run.master.split("normalize"));
  if (!ex.init.empty() && run.options.log && !run.resuming())
    *run.options.log << "init: model" << (ex.init_ema ? " and EMA" : "") << " from " << ex.init
                     << (ex.train.steps == 0 ? " (no training)" : "") << "\n";
  ex.codec->save(h5_require_group(root, "data"));

  Rng ref_rng = run.master.split("reference");
  Condition labels;  // drawn with the data, as a labelled data set always draws them
  run.reference = ex.dataset->sample(ex.evaluation.reference_n, ref_rng, &labels);
  if (ex.evaluation.reference_n) write_tensor(h5_require_group(root, "data"), "reference", run.reference);
  if (labels.has_labels()) {  // for the metrics of class-conditional samples (Metric::needs_labels)
    run.reference_labels = labels.labels();
    write_int64_vector(h5_require_group(root, "data"), "reference_labels",
                       std::vector<std::int64_t>(run.reference_labels.begin(), run.reference_labels.end()));
  }
}

}  // namespace diffusion
