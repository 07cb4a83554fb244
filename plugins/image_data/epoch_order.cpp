#include "epoch_order.hpp"

#include <algorithm>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::image_data {
namespace {

bool same_state(const Rng::State& a, const Rng::State& b) { return a.s == b.s; }

/// Walk r (which has given k values) forward until its state is `target`, at most `steps`
/// values; the count of values given at the match.
std::optional<std::uint64_t> walk_to(Rng r, std::uint64_t k, const Rng::State& target, std::uint64_t steps) {
  for (std::uint64_t i = 0;; ++i) {
    if (same_state(r.state(), target)) return k + i;
    if (i == steps) return std::nullopt;
    r.next_u64();
  }
}

constexpr std::size_t kMaxStreams = 4096;  // cache entries; dropped all at once beyond this
constexpr std::size_t kRecentPermutations = 4;

}  // namespace

std::optional<std::uint64_t> EpochOrder::position(const Rng& stream) const {
  const Rng::State target = stream.state();
  std::optional<std::uint64_t> k;
  std::lock_guard<std::mutex> lock(mutex_);
  std::uint64_t behind = kReplayLimit;  // how far from its start a stream not found ahead can be
  if (const auto it = seen_.find(stream.seed()); it != seen_.end()) {
    // The common cases: nothing else drew since our last draw (training's data stream), or a
    // few values did (a stream shared with a loss's noise).
    Rng r(0);
    r.set_state(it->second.state);
    k = walk_to(r, it->second.k, target, kReplayLimit);
    behind = std::min(it->second.k, kReplayLimit);  // a copy behind is no further from its start
  }
  // A stream we have not seen (a resumed run's data stream), or a copy behind the one we saw.
  if (!k) k = walk_to(Rng(stream.seed()), 0, target, behind);
  if (!k) k = kReplayLimit + 1;  // not within the limit: beyond it
  if (seen_.size() >= kMaxStreams) seen_.clear();
  seen_[stream.seed()] = {target, *k};
  if (*k > kReplayLimit) return std::nullopt;
  return k;
}

std::vector<std::uint32_t> EpochOrder::permutation(std::uint64_t seed, std::uint64_t epoch) const {
  std::vector<std::uint32_t> p(rows_);
  for (std::size_t i = 0; i < rows_; ++i) p[i] = static_cast<std::uint32_t>(i);
  Rng rng = Rng(seed).split("epoch").split(epoch);
  for (std::size_t i = rows_; i > 1; --i) std::swap(p[i - 1], p[rng.integer(i)]);  // Fisher-Yates
  return p;
}

std::vector<std::size_t> EpochOrder::rows_at(std::uint64_t seed, std::uint64_t first, std::size_t n) const {
  if (rows_ == 0) throw Error("image data: no rows to draw from");
  std::vector<std::size_t> out(n);
  std::size_t j = 0;
  while (j < n) {
    const std::uint64_t r = first + j, epoch = r / rows_;
    const std::size_t at = static_cast<std::size_t>(r % rows_), take = std::min(n - j, rows_ - at);
    std::lock_guard<std::mutex> lock(mutex_);
    const std::pair<std::uint64_t, std::uint64_t> key{seed, epoch};
    std::size_t slot = recent_.size();
    for (std::size_t s = 0; s < recent_.size(); ++s)
      if (recent_[s].first == key) slot = s;
    if (slot == recent_.size()) {
      if (recent_.size() == kRecentPermutations) recent_.erase(recent_.begin());
      recent_.emplace_back(key, permutation(seed, epoch));
      slot = recent_.size() - 1;
    }
    const std::vector<std::uint32_t>& p = recent_[slot].second;
    for (std::size_t i = 0; i < take; ++i) out[j + i] = p[at + i];
    j += take;
  }
  return out;
}

std::vector<std::size_t> EpochOrder::draw(std::size_t n, Rng& stream, std::uint64_t* call_value) const {
  const std::uint64_t seed = stream.seed();
  const std::optional<std::uint64_t> k = position(stream);
  const std::uint64_t value = stream.next_u64();  // the one value this draw takes
  {
    std::lock_guard<std::mutex> lock(mutex_);
    seen_[seed] = {stream.state(), k ? *k + 1 : kReplayLimit + 1};
  }
  if (call_value) *call_value = value;
  // Draw k of the stream covers rows [k n, (k + 1) n); beyond the replay limit a draw is a
  // fresh permutation's first n rows, seeded by the value it took.
  return k ? rows_at(seed, *k * n, n) : rows_at(value, 0, n);
}

}  // namespace diffusion::image_data
