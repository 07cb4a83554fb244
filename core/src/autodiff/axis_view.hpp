#pragma once
// Internal to the ops: a tensor seen as (outer, n, inner) around one axis, so axis-wise ops
// (softmax, concat, slice) run as three plain nested loops.
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

struct AxisView {
  std::size_t outer = 1, n = 1, inner = 1;
};

inline AxisView axis_view(const Shape& s, std::size_t axis) {
  AxisView v;
  for (std::size_t i = 0; i < axis; ++i) v.outer *= s[i];
  v.n = s[axis];
  for (std::size_t i = axis + 1; i < s.size(); ++i) v.inner *= s[i];
  return v;
}

}  // namespace diffusion
