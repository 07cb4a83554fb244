#pragma once
// Which rows of a finite set a stream of draws visits: epochs, each a fresh permutation of all
// rows, one after the other, so a training run sees every image once per epoch (random
// reshuffling) instead of drawing with replacement.
//
// The data set keeps no state of its own: a checkpoint stores the training loop's data stream
// (its xoshiro state and seed, run/checkpoint.hpp) and nothing of the data set, so where a
// stream is in its epochs must follow from the stream alone. It does:
//
//   * each draw of n rows takes exactly one value from the stream, so the number k of values
//     the stream has given since it began (Rng(stream.seed()) is its first state) counts the
//     draws made from it, and the draw covers rows [k n, (k + 1) n) of the endless sequence;
//   * epoch e of that sequence is the permutation drawn (Fisher-Yates) from the stream's seed
//     and e: Rng(seed).split("epoch").split(e).
//
// k is found by replaying the stream from its first state until it matches (xoshiro256** is a
// bijection on its state, so the match is unique); a cache of each stream's last (state, k)
// makes that O(1) per draw while training, and one replay of k steps after a resume (a few
// nanoseconds a step: 30 ms for a million steps). The result is a function of the stream's state, never of the
// cache, so a resumed run draws exactly the batches the uninterrupted run drew.
//
// A stream other components also draw from (a loss drawing noise before it draws data) counts
// their values too: its draws are still a deterministic function of its state, only not
// consecutive within an epoch. Beyond kReplayLimit values (4 million draws of a training run; a
// stream shared with a long run's noise) a draw is taken without replacement from a permutation
// of its own; finding that out costs one replay of at most kReplayLimit steps (about 0.1 s).
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include <diffusion/tensor/random.hpp>

namespace diffusion::image_data {

class EpochOrder {
 public:
  /// Streams that have given more values than this draw fresh permutations (see above).
  static constexpr std::uint64_t kReplayLimit = std::uint64_t(1) << 22;

  explicit EpochOrder(std::size_t rows) : rows_(rows) {}
  std::size_t rows() const { return rows_; }

  /// Draw n rows from `stream`, taking one value from it: rows[i] is the row index, in 0..rows-1;
  /// `call_value` receives the value taken (the caller seeds per-draw choices such as flips with it).
  std::vector<std::size_t> draw(std::size_t n, Rng& stream, std::uint64_t* call_value = nullptr) const;

  /// The values `stream` has given since it began, if at most kReplayLimit.
  std::optional<std::uint64_t> position(const Rng& stream) const;
  /// Rows [first, first + n) of the endless sequence of epochs of the stream with seed `seed`.
  std::vector<std::size_t> rows_at(std::uint64_t seed, std::uint64_t first, std::size_t n) const;
  /// Epoch e's permutation of the rows for stream seed `seed`.
  std::vector<std::uint32_t> permutation(std::uint64_t seed, std::uint64_t epoch) const;

 private:
  struct Seen {
    Rng::State state;
    std::uint64_t k;
  };
  std::size_t rows_;
  mutable std::mutex mutex_;
  mutable std::map<std::uint64_t, Seen> seen_;  ///< per stream seed: its state after our last draw
  /// The last few permutations built, (seed, epoch) -> rows: a draw spans at most two epochs
  /// unless n > rows.
  mutable std::vector<std::pair<std::pair<std::uint64_t, std::uint64_t>, std::vector<std::uint32_t>>> recent_;
};

}  // namespace diffusion::image_data
