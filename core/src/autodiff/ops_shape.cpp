// Shape ops: reshape, permute/transpose, concat, slice, index_select. Each copies into a fresh
// row-major tensor (values are never shared between nodes); gradients move the other way.
#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "diffusion/autodiff/autodiff.hpp"
#include "autodiff/axis_view.hpp"

namespace diffusion {
namespace {

// out[i0, i1, ...] = x[perm-mapped index]: walks the output in order, reading the input with
// its strides permuted.
Tensor permuted(const Tensor& x, const std::vector<std::size_t>& perm) {
  const std::size_t rank = x.dimension();
  Shape os(rank);
  Shape xs(rank), st(rank);
  for (std::size_t i = rank, k = 1; i-- > 0;) {
    xs[i] = k;
    k *= x.shape()[i];
  }
  for (std::size_t i = 0; i < rank; ++i) {
    os[i] = x.shape()[perm[i]];
    st[i] = xs[perm[i]];
  }
  Tensor out = Tensor::from_shape(os);
  const std::size_t n = out.size();
  if (n == 0) return out;
  const float* px = x.data();
  float* po = out.data();
  if (rank == 0) {
    po[0] = px[0];
    return out;
  }
  const std::size_t inner = os[rank - 1], is = st[rank - 1];
  Shape idx(rank, 0);
  for (std::size_t row = 0, rows = n / inner; row < rows; ++row) {
    std::size_t off = 0;
    for (std::size_t d = 0; d + 1 < rank; ++d) off += idx[d] * st[d];
    float* orow = po + row * inner;
    for (std::size_t j = 0; j < inner; ++j) orow[j] = px[off + j * is];
    for (std::size_t d = rank - 1; d-- > 0;) {
      if (++idx[d] < os[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Var permute_op(const Var& a, const std::vector<std::size_t>& perm, const char* op) {
  std::vector<std::size_t> inv(perm.size());
  for (std::size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = i;
  return make_result(permuted(a.value(), perm), op, {a}, [inv](Node& self) {
    if (Node* in = grad_input(self, 0)) give_grad(*in, permuted(self.grad, inv));
  });
}

std::string list_str(const long* v, std::size_t n) {
  std::string s = "(";
  for (std::size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + ")";
}

Var reshape_to(const Var& a, const long* shape, std::size_t rank) {
  const Tensor& av = a.value();
  const auto fail = [&]() {
    return Error("reshape: cannot reshape " + shape_str(av) + " to " + list_str(shape, rank));
  };
  Shape ns(rank);
  std::size_t known = 1, infer = rank;
  for (std::size_t i = 0; i < rank; ++i) {
    if (shape[i] == -1) {
      if (infer != rank) throw fail();  // at most one -1
      infer = i;
    } else if (shape[i] < 0) {
      throw fail();
    } else {
      ns[i] = static_cast<std::size_t>(shape[i]);
      known *= ns[i];
    }
  }
  if (infer != rank) {
    if (known == 0 || av.size() % known != 0) throw fail();
    ns[infer] = av.size() / known;
  }
  if (numel(ns) != av.size()) throw fail();
  Tensor out = av;  // row-major: same elements in the same order
  out.reshape(ns);
  return make_result(std::move(out), "reshape", {a}, [](Node& self) {
    if (Node* in = grad_input(self, 0)) {
      Tensor g = self.grad;
      g.reshape(in->value.shape());
      give_grad(*in, std::move(g));
    }
  });
}

}  // namespace

Var reshape(const Var& a, const std::vector<long>& shape) {
  return reshape_to(a, shape.data(), shape.size());
}
Var reshape(const Var& a, std::initializer_list<long> shape) {
  return reshape_to(a, shape.begin(), shape.size());
}

Var permute(const Var& a, const std::vector<std::size_t>& perm) {
  const std::size_t rank = a.dim();
  std::vector<bool> seen(rank, false);
  bool ok = perm.size() == rank;
  for (std::size_t p : perm) {
    ok = ok && p < rank && !seen[p];
    if (ok) seen[p] = true;
  }
  if (!ok) {
    std::string s = "(";
    for (std::size_t i = 0; i < perm.size(); ++i) s += (i ? ", " : "") + std::to_string(perm[i]);
    throw Error("permute: " + s + ") is not a permutation of the dimensions of " +
                shape_str(a.value()));
  }
  return permute_op(a, perm, "permute");
}

Var transpose(const Var& a) {
  const std::size_t rank = a.dim();
  if (rank < 2)
    throw Error("transpose: needs at least 2 dimensions, got shape " + shape_str(a.value()));
  std::vector<std::size_t> perm(rank);
  for (std::size_t i = 0; i < rank; ++i) perm[i] = i;
  std::swap(perm[rank - 1], perm[rank - 2]);
  return permute_op(a, perm, "transpose");
}

namespace {
Var concat_parts(const Var* parts, std::size_t n_parts, int axis) {
  if (n_parts == 0) throw Error("concat: no tensors to join");
  const Shape s0 = shape_of(parts[0].value());
  const std::size_t ax = normalize_axis(axis, s0, "concat");
  Shape sizes;  // each part's extent along the axis
  Shape os = s0;
  os[ax] = 0;
  for (std::size_t i = 0; i < n_parts; ++i) {
    const Var& p = parts[i];
    const Shape s = shape_of(p.value());
    bool ok = s.size() == s0.size();
    for (std::size_t i = 0; ok && i < s.size(); ++i) ok = i == ax || s[i] == s0[i];
    if (!ok)
      throw Error("concat: shapes " + shape_str(s0) + " and " + shape_str(s) +
                  " differ outside axis " + std::to_string(axis));
    sizes.push_back(s[ax]);
    os[ax] += s[ax];
  }
  const AxisView v = axis_view(os, ax);
  Tensor out = Tensor::from_shape(os);
  float* po = out.data();
  // Every outer index holds the parts' blocks back to back.
  for (std::size_t o = 0, off = 0; o < v.outer; ++o)
    for (std::size_t i = 0; i < n_parts; ++i) {
      const std::size_t block = sizes[i] * v.inner;
      const float* src = parts[i].value().data() + o * block;
      std::copy(src, src + block, po + off);
      off += block;
    }
  return make_result(std::move(out), "concat", parts, n_parts, [sizes, v](Node& self) {
    const float* g = self.grad.data();
    std::size_t start = 0;  // this part's first element within an outer block
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::size_t block = sizes[i] * v.inner;
      if (Node* in = grad_input(self, i)) {
        Tensor gi = Tensor::from_shape(in->value.shape());
        for (std::size_t o = 0; o < v.outer; ++o) {
          const float* src = g + o * v.n * v.inner + start;
          std::copy(src, src + block, gi.data() + o * block);
        }
        give_grad(*in, std::move(gi));
      }
      start += block;
    }
  });
}
}  // namespace

Var concat(const std::vector<Var>& parts, int axis) {
  return concat_parts(parts.data(), parts.size(), axis);
}
Var concat(std::initializer_list<Var> parts, int axis) {
  return concat_parts(parts.begin(), parts.size(), axis);
}

Var slice(const Var& a, int axis, std::size_t start, std::size_t stop) {
  const Shape s = shape_of(a.value());
  const std::size_t ax = normalize_axis(axis, s, "slice");
  if (start > stop || stop > s[ax])
    throw Error("slice: range [" + std::to_string(start) + ", " + std::to_string(stop) +
                ") out of bounds for axis " + std::to_string(axis) + " of shape " + shape_str(s));
  const AxisView v = axis_view(s, ax);
  Shape os = s;
  os[ax] = stop - start;
  Tensor out = Tensor::from_shape(os);
  const std::size_t block = (stop - start) * v.inner;
  const float* px = a.value().data();
  for (std::size_t o = 0; o < v.outer; ++o) {
    const float* src = px + (o * v.n + start) * v.inner;
    std::copy(src, src + block, out.data() + o * block);
  }
  return make_result(std::move(out), "slice", {a}, [v, start, block](Node& self) {
    if (Node* in = grad_input(self, 0)) {
      Tensor gi = zeros(shape_of(in->value));
      const float* g = self.grad.data();
      for (std::size_t o = 0; o < v.outer; ++o)
        std::copy(g + o * block, g + (o + 1) * block, gi.data() + (o * v.n + start) * v.inner);
      give_grad(*in, std::move(gi));
    }
  });
}

Var index_select(const Var& a, int axis, const std::vector<std::size_t>& indices) {
  const Shape s = shape_of(a.value());
  const std::size_t ax = normalize_axis(axis, s, "index_select");
  for (std::size_t i : indices)
    if (i >= s[ax])
      throw Error("index_select: index " + std::to_string(i) + " out of range for axis " +
                  std::to_string(axis) + " of shape " + shape_str(s));
  const AxisView v = axis_view(s, ax);
  Shape os = s;
  os[ax] = indices.size();
  Tensor out = Tensor::from_shape(os);
  const float* px = a.value().data();
  float* po = out.data();
  for (std::size_t o = 0; o < v.outer; ++o)
    for (std::size_t k = 0; k < indices.size(); ++k) {
      const float* src = px + (o * v.n + indices[k]) * v.inner;
      std::copy(src, src + v.inner, po + (o * indices.size() + k) * v.inner);
    }
  return make_result(std::move(out), "index_select", {a}, [v, indices](Node& self) {
    if (Node* in = grad_input(self, 0)) {
      // Scatter-add: an index selected twice receives both gradients.
      Tensor gi = zeros(shape_of(in->value));
      const float* g = self.grad.data();
      float* pi = gi.data();
      for (std::size_t o = 0; o < v.outer; ++o)
        for (std::size_t k = 0; k < indices.size(); ++k) {
          const float* src = g + (o * indices.size() + k) * v.inner;
          float* dst = pi + (o * v.n + indices[k]) * v.inner;
          for (std::size_t j = 0; j < v.inner; ++j) dst[j] += src[j];
        }
      give_grad(*in, std::move(gi));
    }
  });
}

}  // namespace diffusion
