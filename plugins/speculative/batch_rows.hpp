#pragma once
// Rows of a batch (N, ...) by index: speculative sampling moves each chain at its own pace, so
// its batches are gathered from, and scattered back to, the rows that are still running.
#include <algorithm>
#include <cstddef>
#include <vector>

#include <diffusion/tensor/memory_pool.hpp>
#include <diffusion/tensor/tensor.hpp>

namespace diffusion::speculative {

/// Row indices, pooled: a warm round of sampling makes no heap allocation.
using RowIndex = std::vector<std::size_t, PoolAllocator<std::size_t>>;

/// Values per row of a batch (N, ...).
inline std::size_t row_size(const Tensor& t) { return t.shape()[0] ? t.size() / t.shape()[0] : 0; }

/// A batch shaped like `like` with n rows.
inline Tensor rows_like(const Tensor& like, std::size_t n) {
  Shape s = shape_of(like);
  s[0] = n;
  return Tensor::from_shape(s);
}

/// The rows `index` of src, in order, as a new batch.
inline Tensor gather_rows(const Tensor& src, const RowIndex& index) {
  Tensor out = rows_like(src, index.size());
  const std::size_t per = row_size(src);
  for (std::size_t r = 0; r < index.size(); ++r)
    std::copy_n(src.data() + index[r] * per, per, out.data() + r * per);
  return out;
}

/// Row r of src into row `to` of dst (the same row size).
inline void copy_row(const Tensor& src, std::size_t r, Tensor& dst, std::size_t to) {
  const std::size_t per = row_size(src);
  std::copy_n(src.data() + r * per, per, dst.data() + to * per);
}

}  // namespace diffusion::speculative
