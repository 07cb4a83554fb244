#pragma once
// Autodiff ops for image and transformer networks (U-Net, DiT): convolution, resampling,
// group normalisation, multi-head attention, dropout, modulation, patches.
//
// Images are NCHW float32 (batch, channels, height, width), tokens (batch, tokens, features).
// Each op records one node whose backward is written out by hand (no chain of elementwise
// nodes), and the heavy ones (conv2d, attention) run through BLAS sgemm on the core's threads,
// cut into blocks by shape only, so results do not depend on the thread count.
//
// Kept out of autodiff.hpp on purpose: only the code that builds image networks includes it.
#include <cstddef>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

// ---- Convolution ----

/// How a 2-D convolution slides its kernel: the same stride and zero padding on both spatial
/// axes (PyTorch's int arguments), and `groups` independent channel groups.
struct Conv2dOptions {
  std::size_t stride = 1;
  std::size_t padding = 0;
  std::size_t groups = 1;
};

/// 2-D cross-correlation, as torch.nn.functional.conv2d: x (N, C, H, W), weight
/// (O, C / groups, kh, kw), bias (O) or undefined -> (N, O, Ho, Wo) with
/// Ho = (H + 2 padding - kh) / stride + 1 (and the same for W). C and O must be divisible by
/// groups. Computed as im2col + sgemm per group on pieces of the batch (several small images
/// side by side, or a band of rows of a large one); backward dW = dY cols^T and
/// dX = col2im(W^T dY).
Var conv2d(const Var& x, const Var& weight, const Var& bias, const Conv2dOptions& options = {});

// ---- Resampling ----

/// Nearest-neighbour upsampling by an integer factor: (N, C, H, W) -> (N, C, f H, f W), as
/// torch.nn.functional.interpolate(mode="nearest", scale_factor=f).
Var upsample_nearest(const Var& x, std::size_t factor);
/// Average pooling without padding: (N, C, H, W) -> (N, C, (H - k) / s + 1, (W - k) / s + 1),
/// as torch.nn.functional.avg_pool2d(x, k, s); stride 0 means stride = kernel (the 2x
/// downsampling of a U-Net is avg_pool2d(x, 2)).
Var avg_pool2d(const Var& x, std::size_t kernel, std::size_t stride = 0);

// ---- Patches (Dosovitskiy et al. 2021; Peebles & Xie 2023) ----

/// Non-overlapping p x p patches as tokens: (N, C, H, W) -> (N, (H/p) (W/p), C p p). Token
/// i (W/p) + j is the patch at row i, column j; its feature (c p + a) p + b is pixel (a, b) of
/// channel c, the order in which a convolution with kernel = stride = p flattens its weight,
/// so patchify followed by linear() is that convolution (DiT's patch embedding).
Var patchify(const Var& x, std::size_t patch);
/// The inverse of patchify: (N, (H/p) (W/p), C p p) -> (N, C, H, W).
Var unpatchify(const Var& tokens, std::size_t patch, std::size_t height, std::size_t width);

// ---- Normalisation ----

/// Group normalisation (Wu & He 2018), as torch.nn.functional.group_norm: x (N, C, ...) with
/// C divisible by groups is normalised over each group's (C / groups, ...) elements per sample
/// (biased variance), then scaled and shifted per channel by weight and bias (C) (either
/// undefined for none).
Var group_norm(const Var& x, std::size_t groups, const Var& weight, const Var& bias,
               float eps = 1e-5f);

// ---- Attention (Vaswani et al. 2017, sec. 3.2) ----

/// Scaled dot-product multi-head attention softmax(Q K^T / sqrt(d)) V, per head, without
/// masks: q (N, Tq, Dk), k (N, Tk, Dk), v (N, Tk, Dv) -> (N, Tq, Dv). Head h owns features
/// [h d, (h + 1) d) of q and k (d = Dk / heads) and [h dv, (h + 1) dv) of v and the output (the
/// layout of torch.nn.MultiheadAttention), so no reshape is needed around it. Both products
/// are sgemms; the softmax is fused between them (one pass per row: max, exp, sum, normalise)
/// and its probabilities kept for the backward pass.
Var attention(const Var& q, const Var& k, const Var& v, std::size_t heads);

// ---- Regularisation and conditioning ----

/// Inverted dropout (Srivastava et al. 2014): in training each element is zeroed with
/// probability p and the kept ones scaled by 1 / (1 - p), so the expectation is x; one draw
/// of rng per element in order, so a run is reproducible from its seed. Outside training (or
/// with p = 0) it returns x itself and draws nothing. p must be in [0, 1).
Var dropout(const Var& x, float p, Rng& rng, bool training);

/// Feature-wise modulation x (1 + scale) + shift (FiLM, Perez et al. 2018; adaLN, Peebles &
/// Xie 2023), scale and shift of shape (N, C) broadcast over every axis of x but the batch and
/// channel_axis: channel_axis 1 for images (N, C, H, W), -1 for tokens (N, T, C). Either
/// scale or shift may be undefined (left out).
Var modulate(const Var& x, const Var& scale, const Var& shift, int channel_axis = 1);

}  // namespace diffusion
