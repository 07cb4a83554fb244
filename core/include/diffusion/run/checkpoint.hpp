#pragma once
// Training checkpoints: everything needed to continue a run so that it ends bit-identical to a
// run that was never stopped. A checkpoint is one HDF5 file `<out>.ckpt/step_<k>.h5` next to the
// results file:
//
//   /                 attributes: step, config (resolved YAML), config_hash (hex FNV-1a 64 of the
//                     canonical config), window, window_n, last_finite, final_loss,
//                     version (2), complete=1 (written last: a file without it is not a checkpoint)
//   /model, /ema      Module::save / EMA::save
//   /models/<slot>    every named model that the run changes (unfrozen slots but model and ema)
//   /optimizer        Optimizer::save_state
//   /rng/data, /rng/train   uint64[5]: the xoshiro state s[0..3] and the stream's seed
//   /train/step, /train/loss, /train/loss_by_t   the loss log's rows so far (LossLog)
//   /train/bin_sum, /train/bin_count            the current window's loss-by-time sums
//
// Files are written to a temporary name in the same folder, fsync'ed and renamed, so a crash
// never leaves a half-written file under a step_<k>.h5 name. Each is sealed (file_seal.hpp: a
// CRC-32 of the whole file in its user block) and read only through h5_open_verified, so a file
// damaged afterwards (a flipped bit anywhere, a truncation by a full disk or an interrupted
// copy) fails validation, as one with non-finite weights does, and is skipped in favour of an
// older one.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "diffusion/io/config.hpp"
#include "diffusion/model/models.hpp"
#include "diffusion/nn/module.hpp"
#include "diffusion/optim/optim.hpp"
#include "diffusion/run/loss_log.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

/// FNV-1a, 64 bit: a stable hash (unlike std::hash) to store in files.
std::uint64_t fnv1a64(std::string_view text);

/// The document as sorted `key.path=value` lines (lists by index). Formatting, key order and
/// comments do not matter, so a config dumped and re-read has the same canonical form.
std::string canonical_config(const Config& config);
/// fnv1a64 of canonical_config.
std::uint64_t config_hash(const Config& config);

struct ConfigDifference {
  std::string key;     ///< dotted path
  std::string before;  ///< value in the first config ("(absent)" if missing)
  std::string after;   ///< value in the second
};
/// Keys whose values differ (numbers compare by value: 1e-3 equals 0.001), sorted by key.
std::vector<ConfigDifference> config_differences(const Config& before, const Config& after);
/// The same for the values below two nodes (of two configs, possibly at different paths), each
/// key named by its path below `after`.
std::vector<ConfigDifference> config_differences(const ConfigNode& before, const ConfigNode& after);
/// "train.steps (3000 -> 4000), seed (0 -> 1)".
std::string describe(const std::vector<ConfigDifference>& diffs);

/// The checkpoint folder of a results file: "<out>.ckpt".
std::string checkpoint_dir_for(const std::string& out_path);

/// The step_<k>.h5 files of a folder (none if it does not exist), sorted by step.
std::vector<std::pair<std::int64_t, std::string>> list_checkpoints(const std::string& dir);

/// What a checkpoint says about itself, without the weights.
struct CheckpointInfo {
  std::string path;
  std::int64_t step = 0;
  std::string config_text;
  std::uint64_t config_hash = 0;
};

/// The newest checkpoint in `dir` whose seal matches its bytes, that carries complete=1, whose
/// every dataset reads back and whose weights and optimiser state are finite; each file skipped
/// on the way is described in *skipped ("path: reason", "path: corrupt: ..." for a broken seal).
/// nullopt if none.
std::optional<CheckpointInfo> find_latest_checkpoint(const std::string& dir,
                                                     std::vector<std::string>* skipped = nullptr);

/// Step and config of one checkpoint file, validated as find_latest_checkpoint does; Error
/// "checkpoint <path>: <reason>" if it fails.
CheckpointInfo read_checkpoint_info(const std::string& path);

/// The training loop's own state (the weights and optimiser are passed separately).
struct TrainingState {
  std::int64_t step = 0;                ///< updates done
  Rng::State data_rng{}, train_rng{};   ///< the only streams the training loop draws from
  LossLog::State log;                   ///< the loss log so far
};

/// Write `<dir>/step_<state.step>.h5` atomically (creating dir), then delete all but the newest
/// `keep` checkpoints. The models' `model` slot and unfrozen slots other than `ema` are saved;
/// ema (may be null) is the EMA of the model. Returns the path written.
std::string write_checkpoint(const std::string& dir, const TrainingState& state, const Models& models,
                             const EMA* ema, const Optimizer& optimizer, const Config& config, int keep);

/// Restore a checkpoint into state, the models (as write_checkpoint saved them), ema (may be
/// null) and optimizer, after validating it as find_latest_checkpoint does. Throws Error naming
/// the file on any mismatch.
CheckpointInfo read_checkpoint(const std::string& path, TrainingState& state, Models& models, EMA* ema,
                               Optimizer& optimizer);

/// A fresh run's first checkpoint replaces an earlier run's in the same folder, and only once it
/// is written: set_aside_checkpoints moves every file of the folder (checkpoints, leftover
/// temporary files) into <dir>/.replaced by renames, the new checkpoint is written, then
/// discard_set_aside_checkpoints deletes them. A run that dies before its first checkpoint
/// leaves the earlier run's checkpoints where they were.
void set_aside_checkpoints(const std::string& dir);
void discard_set_aside_checkpoints(const std::string& dir);

/// Remove checkpoints with a step > after_step (all with -1) and leftover temporary files, so a
/// fresh run (or a resumed one) never mixes in files from another history.
void remove_checkpoints(const std::string& dir, std::int64_t after_step = -1);

}  // namespace diffusion
