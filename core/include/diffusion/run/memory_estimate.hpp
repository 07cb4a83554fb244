#pragma once
// What a run will ask of the machine, checked before anything runs: the memory it needs
// (estimate_memory, against what the machine has or --max-memory) and the sample sizes each
// metric will be given (check_metric_sizes, against what each metric can finish). A run that
// cannot fit or cannot finish is refused with the key to change, not killed by the kernel at
// 24 GB or left computing an exact W2 of 10^7 points.
//
// The estimate is a simple model, on purpose, so a refusal can be checked by hand:
//   held for the whole run: the process itself (64 MiB), each network's parameters (the
//     trained one with its gradient, Adam's two moments and one gradient per shard), the
//     reference data and the floor's draws, every sampler's samples (encoded and decoded);
//   one stage at a time (the largest counts):
//     training   batch x A x 2 floats (each layer's input and output, and their gradients) plus
//                batch x D x 8 floats (x0, noise, x_t, target, ...) plus a forward pass
//                (batch x A floats) of each other network the loss reads;
//     sampling   n x A floats (one forward pass of the whole set) plus n x D x (8 + 2 x frames)
//                floats (the sampler's state, the kept trajectory and its decoded copy);
//     metrics    what each metric says it needs at its sizes (Metric::memory_bytes: exact W2's
//                n x n matrix above dim 3, ...).
// A is the network's activations per row: the sum of each weight's input and output widths
// (a weight of shape (out, in, ...) counts out + in), each counted once per spatial position
// of the data (an upper bound for a network that downsamples); D is a sample's size in floats.
// On the flagship it is 6.5 kB per training row against 5.6 kB measured (growth of the peak RSS
// from 131072 to 524288 rows), and 3.4 kB per sample with its 10 trajectory frames against
// 1.9 kB (n = 10^5).
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "diffusion/run/experiment.hpp"

namespace diffusion {

/// One part of the estimate.
struct MemoryTerm {
  std::string what;      ///< "training activations"
  std::string key;       ///< the config key that sets its size ("train.batch_size", "sampler.n")
  std::string formula;   ///< how it was counted ("100000000 rows x 6496 bytes")
  double bytes = 0;      ///< in double: 10^8 rows x 10^4 bytes overflows no integer here, but stays readable
  double per_unit = 0;   ///< bytes per unit of `key` (per row, per sample), 0 when it does not scale with it
};

struct MemoryEstimate {
  std::vector<MemoryTerm> held;    ///< held for the whole run
  std::vector<MemoryTerm> stages;  ///< working sets of the stages, one at a time
  /// The held terms plus the largest stage.
  double total() const;
  /// The largest of the held terms and the largest stage: the key to change.
  const MemoryTerm& largest() const;
  /// One line per term, the largest stage marked, for logs and messages.
  std::string describe() const;
};

/// The estimate of a composed experiment (see the model above).
MemoryEstimate estimate_memory(const Experiment& ex);

/// The memory this process may still take: MemAvailable of /proc/meminfo, or the cgroup's
/// limit less its use when that is smaller (a container or a Slurm job).
struct AvailableMemory {
  double bytes = 0;
  std::string source;  ///< where the figure came from, for messages
};
AvailableMemory available_memory();

/// "8G", "500M", "1.5G", "64K", "2T" or plain bytes, binary units (1G = 2^30 bytes), an optional
/// trailing "B" or "iB"; anything else, or zero, is a ConfigError naming `option` (e.g.
/// "--max-memory") as given on the command line.
std::uint64_t parse_memory_size(const std::string& text, const std::string& option = "--max-memory");

/// "643.2 GiB", "12.5 MiB".
std::string format_bytes(double bytes);

/// Refuses (ConfigError at the key that drives the estimate, saying what fits) a run whose
/// estimate exceeds `max_memory` bytes, or what the machine has available when max_memory is
/// 0. With `log`, writes the estimate in one line.
void check_memory(const Experiment& ex, std::uint64_t max_memory, std::ostream* log = nullptr);

/// One set of comparisons the evaluation stage makes: every sample metric on `n` points of
/// `group` (a sampler, or "data" for the metric floor) against n reference points.
struct MetricComparison {
  std::string group;
  std::size_t n = 0;
  std::string key;  ///< the config key that sets n ("sampler.n", "samplers.1.n", "reference.n")
};

/// The comparisons evaluate_samples makes, in its order: each sampler on min(n, reference n)
/// points, then the floor on the largest of those (the whole reference without samplers).
std::vector<MetricComparison> metric_comparisons(const Experiment& ex);

/// Refuses (ConfigError at the key that sets the size) a comparison a metric cannot take or
/// finish (Metric::check_sizes): `sampler.n: 1` with mmd, exact W2 of 10^7 points. Called by
/// compose_experiment, so it fails before training.
void check_metric_sizes(const Experiment& ex);

}  // namespace diffusion
