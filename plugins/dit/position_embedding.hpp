#pragma once
// The fixed 2-D sine-cosine position embedding of ViT-style networks (MAE, He et al. 2022;
// DiT, Peebles & Xie 2023, sec. 3.2 "Patchify").
#include <cstddef>

#include <diffusion/tensor/tensor.hpp>

namespace diffusion::dit {

/// The embedding of a grid_h x grid_w grid of tokens, shape (grid_h grid_w, dim), token
/// i grid_w + j at row i, column j. As MAE's get_2d_sincos_pos_embed (which DiT uses), the first
/// dim / 2 features encode the column j and the last dim / 2 the row i, each half as
///   [sin(pos w_k), cos(pos w_k)],  w_k = 10000^(-k / (dim / 4)),  k = 0 .. dim / 4 - 1.
/// dim must be a positive multiple of 4.
Tensor sincos_position_embedding_2d(std::size_t dim, std::size_t grid_h, std::size_t grid_w);

}  // namespace diffusion::dit
