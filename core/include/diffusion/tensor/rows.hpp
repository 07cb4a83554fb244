#pragma once
// Rows of a batch-first tensor, copied out: the first n samples a metric compares, the piece of a
// batch one network evaluation takes.
#include <cstddef>

#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// Rows [begin, end) of t (shape (N, ...)) as a new tensor (end - begin, ...); Error unless
/// begin <= end <= N.
Tensor row_range(const Tensor& t, std::size_t begin, std::size_t end);

/// Copies `rows` (shape (end - begin, ...)) into rows [begin, end) of `into`; Error on a shape
/// mismatch.
void set_row_range(Tensor& into, std::size_t begin, const Tensor& rows);

/// The first min(n, N) rows of t (shape (N, ...)): t itself when n >= N, else a copy.
Tensor first_rows(const Tensor& t, std::size_t n);

}  // namespace diffusion
