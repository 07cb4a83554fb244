#pragma once
// Tensors: xtensor float32 arrays, row-major, batch first ((N, D) points, (N, C, H, W) images).
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include "diffusion/tensor/memory_pool.hpp"

namespace diffusion {

/// The toolkit's array type: dynamic-rank, row-major float32. Its buffers come from the
/// core's memory pool, so a training step reuses the previous step's buffers.
using Tensor = xt::xarray<float, xt::layout_type::row_major, PoolAllocator<float>>;
/// A tensor shape, outermost dimension first: xtensor's own shape type, a vector that holds up
/// to four dimensions inline, so shapes cost no heap allocation.
using Shape = Tensor::shape_type;

/// Every error the toolkit raises on bad input or misuse.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The shape of a tensor as a Shape.
Shape shape_of(const Tensor& t);
/// "(256, 2)": shapes in messages.
std::string shape_str(const Shape& s);
inline std::string shape_str(const Tensor& t) { return shape_str(shape_of(t)); }
/// Number of elements of a shape (1 for a scalar's empty shape).
std::size_t numel(const Shape& s);

/// A tensor of the given shape filled with one value.
Tensor full(const Shape& s, float value);
inline Tensor zeros(const Shape& s) { return full(s, 0.0f); }
inline Tensor ones(const Shape& s) { return full(s, 1.0f); }
/// A 0-d tensor holding one value.
Tensor scalar(float value);

}  // namespace diffusion
