// Sweeps (runexp -m): `key=a,b,c` specs expanded into the cartesian product of override lists.
//
// A spec's value list is split on the commas that are outside brackets, braces and quotes, so
// YAML flow values keep theirs: `network.hidden=[64,64],[128,128]` has two values. Points are
// numbered in a deterministic order: the first axis varies slowest (like nested loops written
// in the order the specs are given).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion {

/// A malformed sweep spec or an out-of-range point index (runexp exits 2).
struct SweepError : Error {
  using Error::Error;
};

/// One swept key and its values (YAML text, one override each).
struct SweepAxis {
  std::string key;
  std::vector<std::string> values;
};

/// Split a value list on its top-level commas (outside [], {} and quotes); values are trimmed.
/// Throws SweepError for an empty list, an empty value or unbalanced brackets/quotes.
std::vector<std::string> split_sweep_values(const std::string& list, const std::string& spec = "");

/// Parse `key=a,b,c`. Throws SweepError naming the spec when there is no '=', the key is empty
/// or the value list is empty or malformed.
SweepAxis parse_sweep_spec(const std::string& spec);

/// True when the spec's value holds a top-level comma (more than one value) — how runexp -m
/// tells a swept override from a plain one.
bool is_sweep_spec(const std::string& spec);

/// Number of points of the product (1 for no axes).
std::size_t sweep_size(const std::vector<SweepAxis>& axes);

/// The overrides (`key=value`, one per axis, in axis order) of point `index`; the first axis
/// varies slowest. Throws SweepError when index >= sweep_size(axes).
std::vector<std::string> sweep_point(const std::vector<SweepAxis>& axes, std::size_t index);

/// Every point, in index order.
std::vector<std::vector<std::string>> sweep_points(const std::vector<SweepAxis>& axes);

/// Throws SweepError when two axes sweep the same key.
void check_distinct_keys(const std::vector<SweepAxis>& axes);

/// `DIR/stem.ext` -> `DIR/stem_<index>.ext` (a path without extension gets `.h5`).
std::string sweep_result_path(const std::string& out, std::size_t index);

/// `DIR/stem.ext` -> `DIR/stem_index.tsv`.
std::string sweep_index_path(const std::string& out);

/// The index file: a header line `index<TAB>results<TAB>overrides`, then one line per point with
/// its results file (name only, it sits next to the index) and its overrides separated by
/// spaces.
std::string format_sweep_index(const std::vector<SweepAxis>& axes, const std::string& out);

/// Parse a point index (`--array-index`, SLURM_ARRAY_TASK_ID): decimal digits only, < size.
std::size_t parse_sweep_index(const std::string& text, std::size_t size, const std::string& what);

}  // namespace diffusion
