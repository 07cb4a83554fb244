// 2-D convolution through sgemm: the image is unfolded into a column matrix (im2col,
// Chellapilla et al. 2006), whose row (c, ki, kj) and column (oy, ox) hold the input pixel the
// kernel tap (ki, kj) of channel c sees at output (oy, ox), so that for each group
//   Y (O/G, Ho Wo) = W (O/G, C/G kh kw) cols (C/G kh kw, Ho Wo),
// and backward dW = dY cols^T, dcols = W^T dY, dX = col2im(dcols) (the adjoint of im2col).
//
// Work is cut into pieces by shape only. Small images (7 x 7) are taken several at a time, their
// columns side by side in one column matrix, so that sgemms still get a few hundred columns;
// large ones (28 x 28) a band of output rows at a time, so that the band's column matrix stays
// in cache between im2col writing it and sgemm reading it (and likewise for dcols and col2im).
// Forward runs the pieces on the core's threads; backward runs fixed chunks of images, each
// summing its own share of dW, added up in chunk order afterwards, so results do not depend on
// the thread count. The column matrix is rebuilt in backward rather than kept: it is kh kw times
// the size of the input.
#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "autodiff/strided_gemm.hpp"
#include "diffusion/autodiff/ops_image.hpp"
#include "diffusion/tensor/parallel.hpp"

namespace diffusion {
namespace {

// Columns of a piece's column matrix: sgemm reaches its speed once a product has a few hundred
// columns, and a piece of 64 channels x 3 x 3 taps stays within a 1 MB L2 cache.
constexpr std::size_t kPieceColumns = 256;
// Blocks the images are cut into at least (when there are that many images), so that the
// threads have work to share; and the most chunks backward sums dW over.
constexpr std::size_t kMinBlocks = 8;
constexpr std::size_t kMaxChunks = 8;

struct ConvShape {
  std::size_t n, c, h, w;          // input (N, C, H, W)
  std::size_t o, kh, kw;           // weight (O, C / G, kh, kw)
  std::size_t stride, pad, groups;
  std::size_t ho, wo, pixels;      // output size, pixels = ho wo
  std::size_t cg, og, kg;          // per group: input and output channels, rows cg kh kw
  std::size_t block;               // images per block
  std::size_t band;                // output rows per piece (ho when block > 1)
  bool direct;                     // 1x1, stride 1, no padding: an image is its own cols
  std::size_t blocks() const { return (n + block - 1) / block; }
  std::size_t bands() const { return (ho + band - 1) / band; }  // pieces per block
  std::size_t rows() const { return groups * kg; }  // rows of the whole column matrix
};

// Images [i0, i0 + bn) and their output rows [oy0, oy1) (all of them when bn > 1): its column
// matrix has bn (oy1 - oy0) wo columns, image j's in [j span, (j + 1) span).
struct Piece {
  std::size_t i0, bn, oy0, oy1, span, columns;
};

Piece piece(const ConvShape& s, std::size_t block, std::size_t band) {
  Piece p;
  p.i0 = block * s.block, p.bn = std::min(s.block, s.n - p.i0);
  p.oy0 = band * s.band, p.oy1 = std::min(s.ho, p.oy0 + s.band);
  p.span = (p.oy1 - p.oy0) * s.wo, p.columns = p.bn * p.span;
  return p;
}

ConvShape conv_shape(const Shape& xs, const Shape& ws, const Conv2dOptions& opt) {
  const auto fail = [&](const std::string& why) {
    return Error("conv2d: input " + shape_str(xs) + ", weight " + shape_str(ws) + ", stride " +
                 std::to_string(opt.stride) + ", padding " + std::to_string(opt.padding) +
                 ", groups " + std::to_string(opt.groups) + ": " + why);
  };
  if (xs.size() != 4) throw fail("expected input (N, C, H, W)");
  if (ws.size() != 4) throw fail("expected weight (out, in / groups, kh, kw)");
  if (opt.stride == 0) throw fail("stride must be positive");
  if (opt.groups == 0 || xs[1] % opt.groups != 0 || ws[0] % opt.groups != 0)
    throw fail("groups must divide the input and output channels");
  ConvShape s{};
  s.n = xs[0], s.c = xs[1], s.h = xs[2], s.w = xs[3];
  s.o = ws[0], s.kh = ws[2], s.kw = ws[3];
  s.stride = opt.stride, s.pad = opt.padding, s.groups = opt.groups;
  s.cg = s.c / s.groups, s.og = s.o / s.groups;
  if (ws[1] != s.cg)
    throw fail("weight has " + std::to_string(ws[1]) + " input channels, expected C / groups = " +
               std::to_string(s.cg));
  if (s.c == 0 || s.o == 0 || s.kh == 0 || s.kw == 0) throw fail("empty channels or kernel");
  if (s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw)
    throw fail("kernel larger than the padded input");
  s.ho = (s.h + 2 * s.pad - s.kh) / s.stride + 1;
  s.wo = (s.w + 2 * s.pad - s.kw) / s.stride + 1;
  s.pixels = s.ho * s.wo;
  s.kg = s.cg * s.kh * s.kw;
  s.direct = s.kh == 1 && s.kw == 1 && s.stride == 1 && s.pad == 0;
  // Small images: blocks of a power of two of them, as many as fit in 2 kPieceColumns columns
  // while leaving kMinBlocks blocks.
  s.block = 1;
  while (2 * s.block * s.pixels <= 2 * kPieceColumns && s.n / (2 * s.block) >= kMinBlocks)
    s.block *= 2;
  // Large images: bands of equal height, as few as keep each within kPieceColumns.
  const std::size_t bands = (s.pixels + kPieceColumns - 1) / kPieceColumns;
  s.band = s.block > 1 ? s.ho : (s.ho + bands - 1) / bands;
  return s;
}

// Where kernel tap (ki, kj) reads the image: output rows [oy_lo, oy_hi) and columns
// [ox_lo, ox_hi) fall inside it (the others read padding), input pixel (oy s + dy, ox s + dx).
struct TapWindow {
  std::size_t oy_lo, oy_hi, ox_lo, ox_hi;
  long dy, dx;
  bool empty() const { return oy_lo >= oy_hi || ox_lo >= ox_hi; }
};

// The outputs [lo, hi) of `out` whose input o stride + d lies inside [0, size).
void inside(long d, std::size_t size, std::size_t out, std::size_t stride, std::size_t& lo,
            std::size_t& hi) {
  const long st = static_cast<long>(stride);
  const long first = d >= 0 ? 0 : (-d + st - 1) / st;
  const long end = (static_cast<long>(size) - d + st - 1) / st;  // first output past the edge
  lo = static_cast<std::size_t>(std::min<long>(first, long(out)));
  hi = static_cast<std::size_t>(std::clamp<long>(end, long(lo), long(out)));
}

TapWindow tap_window(const ConvShape& s, std::size_t ki, std::size_t kj) {
  TapWindow t{};
  t.dy = long(ki) - long(s.pad), t.dx = long(kj) - long(s.pad);
  inside(t.dy, s.h, s.ho, s.stride, t.oy_lo, t.oy_hi);
  inside(t.dx, s.w, s.wo, s.stride, t.ox_lo, t.ox_hi);
  return t;
}

// Stride 1 with the output as wide as the input (a "same" convolution, as every 3x3 layer of
// a U-Net): output row oy of a tap is input row oy + dy shifted by dx, so the tap's inside is
// one contiguous run of the input plane, offset by dy w + dx; only the columns that fall off
// the left and right edges need fixing up. One long copy instead of one per row.
bool flat_taps(const ConvShape& s) { return s.stride == 1 && s.wo == s.w; }

// Writes output rows [oy0, oy1) of the column matrix of one image x (C, H, W) into cols,
// whose rows are ld apart: row (c kh + ki) kw + kj, column (oy - oy0) wo + ox holds
// x[c, oy s + ki - p, ox s + kj - p], or 0 where that falls in the padding.
void im2col(const ConvShape& s, const float* x, std::size_t oy0, std::size_t oy1, float* cols,
            std::size_t ld) {
  const bool flat = flat_taps(s);
  const std::size_t len = (oy1 - oy0) * s.wo;
  for (std::size_t ki = 0; ki < s.kh; ++ki)
    for (std::size_t kj = 0; kj < s.kw; ++kj) {
      const TapWindow t = tap_window(s, ki, kj);
      // The band's rows that read the image.
      const std::size_t a = std::max(oy0, t.oy_lo), b = std::max(a, std::min(oy1, t.oy_hi));
      for (std::size_t c = 0; c < s.c; ++c) {
        float* row = cols + ((c * s.kh + ki) * s.kw + kj) * ld;
        const float* xc = x + c * s.h * s.w;
        if (a == b || t.ox_lo >= t.ox_hi) {
          std::fill(row, row + len, 0.0f);
          continue;
        }
        std::fill(row, row + (a - oy0) * s.wo, 0.0f);
        std::fill(row + (b - oy0) * s.wo, row + len, 0.0f);
        if (flat) {  // column j reads x[j + shift]
          const long shift = (long(oy0) + t.dy) * long(s.w) + t.dx;
          const std::size_t begin = (a - oy0) * s.wo + t.ox_lo;
          const std::size_t end = (b - 1 - oy0) * s.wo + t.ox_hi;
          std::copy(xc + (long(begin) + shift), xc + (long(end) + shift), row + begin);
          for (std::size_t oy = a; oy < b; ++oy) {  // the edge columns read padding
            float* out = row + (oy - oy0) * s.wo;
            for (std::size_t ox = 0; ox < t.ox_lo; ++ox) out[ox] = 0.0f;
            for (std::size_t ox = t.ox_hi; ox < s.wo; ++ox) out[ox] = 0.0f;
          }
          continue;
        }
        for (std::size_t oy = a; oy < b; ++oy) {
          float* out = row + (oy - oy0) * s.wo;
          const float* src = xc + (long(oy * s.stride) + t.dy) * long(s.w);
          for (std::size_t ox = 0; ox < t.ox_lo; ++ox) out[ox] = 0.0f;
          for (std::size_t ox = t.ox_lo; ox < t.ox_hi; ++ox)
            out[ox] = src[long(ox * s.stride) + t.dx];
          for (std::size_t ox = t.ox_hi; ox < s.wo; ++ox) out[ox] = 0.0f;
        }
      }
    }
}

// The adjoint of im2col over output rows [oy0, oy1): adds every entry of cols back onto the
// pixel it was read from (padding entries are dropped). dx (C, H, W) must be zeroed or hold
// earlier sums.
void col2im(const ConvShape& s, const float* cols, std::size_t ld, std::size_t oy0,
            std::size_t oy1, float* dx) {
  for (std::size_t ki = 0; ki < s.kh; ++ki)
    for (std::size_t kj = 0; kj < s.kw; ++kj) {
      const TapWindow t = tap_window(s, ki, kj);
      const std::size_t a = std::max(oy0, t.oy_lo), b = std::min(oy1, t.oy_hi);
      if (a >= b || t.ox_lo >= t.ox_hi) continue;
      const std::size_t len = t.ox_hi - t.ox_lo;
      for (std::size_t c = 0; c < s.c; ++c) {
        const float* row = cols + ((c * s.kh + ki) * s.kw + kj) * ld;
        float* dc = dx + c * s.h * s.w;
        for (std::size_t oy = a; oy < b; ++oy) {
          const float* in = row + (oy - oy0) * s.wo;
          const long base = (long(oy * s.stride) + t.dy) * long(s.w) + t.dx;
          if (s.stride == 1) {
            float* d = dc + (base + long(t.ox_lo));
            const float* src = in + t.ox_lo;
            for (std::size_t i = 0; i < len; ++i) d[i] += src[i];
          } else {
            for (std::size_t ox = t.ox_lo; ox < t.ox_hi; ++ox)
              dc[base + long(ox * s.stride)] += in[ox];
          }
        }
      }
    }
}

// The sum of n floats, kept in 16 running sums so that the loop vectorises (one running sum
// would chain every add on the previous one), added up in a fixed order at the end.
float sum_of(const float* p, std::size_t n) {
  float part[16] = {};
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (std::size_t l = 0; l < 16; ++l) part[l] += p[i + l];
  float acc = 0.0f;
  for (; i < n; ++i) acc += p[i];
  for (float v : part) acc += v;
  return acc;
}

// The column matrix of a piece of x and its leading dimension: x itself for a 1x1 convolution
// of one image, else built in store.
const float* piece_columns(const ConvShape& s, const float* x, const Piece& p, Tensor& store,
                           std::size_t& ld) {
  const std::size_t image = s.c * s.h * s.w;
  if (s.direct && p.bn == 1) {
    ld = s.pixels;
    return x + p.i0 * image + p.oy0 * s.wo;
  }
  ld = p.columns;
  if (store.size() < s.rows() * ld) store = Tensor::from_shape({s.rows() * ld});
  for (std::size_t j = 0; j < p.bn; ++j)
    im2col(s, x + (p.i0 + j) * image, p.oy0, p.oy1, store.data() + j * p.span, ld);
  return store.data();
}

}  // namespace

Var conv2d(const Var& x, const Var& weight, const Var& bias, const Conv2dOptions& options) {
  const Tensor& xv = x.value();
  const Tensor& wv = weight.value();
  const ConvShape s = conv_shape(shape_of(xv), shape_of(wv), options);
  if (bias.defined() && shape_of(bias.value()) != Shape{s.o})
    throw Error("conv2d: bias " + shape_str(bias.value()) + " does not match weight " +
                shape_str(wv) + " (expected (" + std::to_string(s.o) + ",))");
  Tensor y = Tensor::from_shape({s.n, s.o, s.ho, s.wo});
  const float* px = xv.data();
  const float* pw = wv.data();
  const float* pb = bias.defined() ? bias.value().data() : nullptr;
  float* py = y.data();
  const std::size_t P = s.pixels;
  parallel_for(s.blocks() * s.bands(), [&](std::size_t task) {
    const Piece p = piece(s, task / s.bands(), task % s.bands());
    Tensor cols_store, out_store;
    std::size_t ld;
    const float* cols = piece_columns(s, px, p, cols_store, ld);
    // One image: the product lands in y directly; several: in (O, columns), then sorted.
    float* out = py + p.i0 * s.o * P + p.oy0 * s.wo;
    std::size_t ldo = P;
    if (p.bn > 1) {
      out_store = Tensor::from_shape({s.o, p.columns});
      out = out_store.data(), ldo = p.columns;
    }
    for (std::size_t g = 0; g < s.groups; ++g)
      strided_gemm(false, false, s.og, p.columns, s.kg, 1.0f, pw + g * s.og * s.kg, s.kg,
                   cols + g * s.kg * ld, ld, 0.0f, out + g * s.og * ldo, ldo);
    for (std::size_t j = 0; j < p.bn; ++j)
      for (std::size_t oc = 0; oc < s.o; ++oc) {
        const float* src = out + oc * ldo + j * p.span;
        float* dst = py + ((p.i0 + j) * s.o + oc) * P + p.oy0 * s.wo;
        const float b = pb ? pb[oc] : 0.0f;
        for (std::size_t i = 0; i < p.span; ++i) dst[i] = src[i] + b;
      }
  });
  return make_result(std::move(y), "conv2d", {x, weight, bias}, [s](Node& self) {
    Node* nx = grad_input(self, 0);
    Node* nw = grad_input(self, 1);
    Node* nb = grad_input(self, 2);
    const float* g = self.grad.data();
    const float* px = self.inputs[0]->value.data();
    const float* pw = self.inputs[1]->value.data();
    const std::size_t P = s.pixels, image = s.c * s.h * s.w;
    const std::size_t blocks = s.blocks(), chunks = std::min(blocks, kMaxChunks);
    const std::size_t wsize = s.o * s.kg;
    Tensor gx = nx ? Tensor::from_shape({s.n, s.c, s.h, s.w}) : Tensor();
    Tensor gw_parts = nw ? Tensor::from_shape({chunks, wsize}) : Tensor();
    Tensor gb_parts = nb ? zeros({chunks, s.o}) : Tensor();
    // Chunk ch takes whole blocks, all their bands in order (bands of one image overlap in dX).
    parallel_for(chunks, [&](std::size_t ch) {
      Tensor cols_store, dy_store, dcols_store;
      bool first = true;
      for (std::size_t blk = ch * blocks / chunks; blk < (ch + 1) * blocks / chunks; ++blk)
        for (std::size_t band = 0; band < s.bands(); ++band) {
          const Piece p = piece(s, blk, band);
          // dY of the piece as (O, columns): in place for one image, else gathered.
          const float* dy = g + p.i0 * s.o * P + p.oy0 * s.wo;
          std::size_t ldy = P;
          if (p.bn > 1) {
            if (dy_store.size() < s.o * p.columns) dy_store = Tensor::from_shape({s.o * p.columns});
            for (std::size_t j = 0; j < p.bn; ++j)
              for (std::size_t oc = 0; oc < s.o; ++oc)
                std::copy_n(g + ((p.i0 + j) * s.o + oc) * P, p.span,
                            dy_store.data() + oc * p.columns + j * p.span);
            dy = dy_store.data(), ldy = p.columns;
          }
          if (nb) {  // db = sum of dY over images and pixels
            float* gb = gb_parts.data() + ch * s.o;
            for (std::size_t oc = 0; oc < s.o; ++oc) gb[oc] += sum_of(dy + oc * ldy, p.columns);
          }
          if (nw) {  // dW_g += dY_g cols_g^T
            std::size_t ld;
            const float* cols = piece_columns(s, px, p, cols_store, ld);
            float* gw = gw_parts.data() + ch * wsize;
            for (std::size_t gr = 0; gr < s.groups; ++gr)
              strided_gemm(false, true, s.og, s.kg, p.columns, 1.0f, dy + gr * s.og * ldy, ldy,
                           cols + gr * s.kg * ld, ld, first ? 0.0f : 1.0f,
                           gw + gr * s.og * s.kg, s.kg);
          }
          if (nx) {  // dcols_g = W_g^T dY_g, then dX = col2im(dcols)
            float* gxi = gx.data() + p.i0 * image;
            const bool in_place = s.direct && p.bn == 1;  // dcols is dX's band itself
            float* dcols = gxi + p.oy0 * s.wo;
            std::size_t ldc = P;
            if (!in_place) {
              if (dcols_store.size() < s.rows() * p.columns)
                dcols_store = Tensor::from_shape({s.rows() * p.columns});
              dcols = dcols_store.data(), ldc = p.columns;
            }
            for (std::size_t gr = 0; gr < s.groups; ++gr)
              strided_gemm(true, false, s.kg, p.columns, s.og, 1.0f, pw + gr * s.og * s.kg, s.kg,
                           dy + gr * s.og * ldy, ldy, 0.0f, dcols + gr * s.kg * ldc, ldc);
            if (!in_place) {
              if (p.oy0 == 0) std::fill(gxi, gxi + p.bn * image, 0.0f);
              for (std::size_t j = 0; j < p.bn; ++j)
                col2im(s, dcols + j * p.span, ldc, p.oy0, p.oy1, gxi + j * image);
            }
          }
          first = false;
        }
    });
    if (nx) give_grad(*nx, std::move(gx));
    if (nw) {  // the chunks' shares of dW, added in chunk order
      Tensor gw = zeros({s.o, s.cg, s.kh, s.kw});
      float* o = gw.data();
      const float* parts = gw_parts.data();
      if (chunks > 0) std::copy_n(parts, wsize, o);
      for (std::size_t ch = 1; ch < chunks; ++ch)
        for (std::size_t i = 0; i < wsize; ++i) o[i] += parts[ch * wsize + i];
      give_grad(*nw, std::move(gw));
    }
    if (nb) {
      Tensor gb = zeros({s.o});
      for (std::size_t ch = 0; ch < chunks; ++ch)
        for (std::size_t oc = 0; oc < s.o; ++oc) gb.data()[oc] += gb_parts.data()[ch * s.o + oc];
      give_grad(*nb, std::move(gb));
    }
  });
}

}  // namespace diffusion
