#pragma once
// One seeded random stream per run, split per component, so a run is reproducible from its
// seed. The generator is xoshiro256** (Blackman & Vigna 2018); streams are split by hashing
// (SplitMix64) the parent's seed with a name or index, so adding a component never changes the
// numbers another component draws.
#include <array>
#include <cstdint>
#include <string_view>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Rng {
 public:
  /// The full generator state, for checkpoints.
  struct State {
    std::array<std::uint64_t, 4> s;
    std::uint64_t seed;
  };

  explicit Rng(std::uint64_t seed = 0);

  /// An independent stream derived from this one's seed and a name ("dataset", "sampler").
  /// Does not advance this stream.
  Rng split(std::string_view name) const;
  /// An independent stream derived from this one's seed and an index (per rank, per worker).
  Rng split(std::uint64_t index) const;

  /// 64 uniformly random bits.
  std::uint64_t next_u64();
  /// Uniform in [0, 1) with 24 random bits (exactly representable in float).
  float uniform();
  /// Uniform double in [0, 1) with 53 random bits.
  double uniform_double();
  /// Standard normal (Box-Muller on two uniform doubles).
  float normal();
  /// Uniform integer in [0, n), without modulo bias. n must be positive.
  std::uint64_t integer(std::uint64_t n);

  /// Fill with N(mean, std^2).
  void fill_normal(Tensor& t, float mean = 0.0f, float std = 1.0f);
  /// Fill with U[lo, hi).
  void fill_uniform(Tensor& t, float lo = 0.0f, float hi = 1.0f);
  /// Fill with integers drawn uniformly from [0, n).
  void fill_integer(Tensor& t, std::uint64_t n);

  Tensor normal(const Shape& shape, float mean = 0.0f, float std = 1.0f);
  Tensor uniform(const Shape& shape, float lo = 0.0f, float hi = 1.0f);
  Tensor integer(const Shape& shape, std::uint64_t n);

  std::uint64_t seed() const { return seed_; }
  State state() const { return {s_, seed_}; }
  void set_state(const State& st) { s_ = st.s, seed_ = st.seed; }

 private:
  std::array<std::uint64_t, 4> s_;
  std::uint64_t seed_;
};

}  // namespace diffusion
