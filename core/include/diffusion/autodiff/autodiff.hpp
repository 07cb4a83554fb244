#pragma once
// Reverse-mode automatic differentiation over tensors.
//
// A Var is a handle to a Node: a value, a gradient, and how to pass the gradient back to the
// Node's inputs. Ops build the graph as they compute (define-by-run); Var::backward() walks it
// in reverse topological order, iteratively, visiting each node once. Inside a NoGradScope no
// graph is recorded, so sampling pays nothing for the tape.
//
// Broadcasting follows numpy: shapes are aligned from the right and size-1 (or missing)
// dimensions stretch. Gradients of broadcast inputs are summed back with sum_to().
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffusion/tensor/memory_pool.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

struct Node;

/// How a node passes its gradient back: a type-erased callable void(Node& self), like
/// std::function but storing small callables inline and larger ones in the memory pool, so
/// recording a graph makes no heap allocation once the pool is warm.
class BackwardFn {
 public:
  BackwardFn() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, BackwardFn>>>
  BackwardFn(F&& f) {  // NOLINT: implicit, so ops pass lambdas directly
    using T = std::decay_t<F>;
    constexpr bool fits = sizeof(T) <= kInline && alignof(T) <= alignof(std::max_align_t);
    target_ = new (fits ? static_cast<void*>(inline_) : pool_allocate(sizeof(T)))
        T(std::forward<F>(f));
    ops_ = &ops_for<T>;
  }
  BackwardFn(BackwardFn&& o) noexcept { take(o); }
  BackwardFn& operator=(BackwardFn&& o) noexcept {
    if (this != &o) reset(), take(o);
    return *this;
  }
  ~BackwardFn() { reset(); }
  /// Destroys the callable (and what it captured).
  void reset() noexcept {
    if (target_) ops_->destroy(target_, !is_inline());
    target_ = nullptr;
  }
  explicit operator bool() const { return target_ != nullptr; }
  void operator()(Node& n) const { ops_->call(target_, n); }

 private:
  static constexpr std::size_t kInline = 64;
  struct Ops {
    void (*call)(void*, Node&);
    void (*destroy)(void*, bool pooled);
    void (*relocate)(void* from, void* to);  // move-construct at `to`, destroy `from`
  };
  template <class T>
  static constexpr Ops ops_for = {
      [](void* t, Node& n) { (*static_cast<T*>(t))(n); },
      [](void* t, bool pooled) {
        static_cast<T*>(t)->~T();
        if (pooled) pool_deallocate(t, sizeof(T));
      },
      [](void* from, void* to) {
        new (to) T(std::move(*static_cast<T*>(from)));
        static_cast<T*>(from)->~T();
      }};
  bool is_inline() const { return target_ == static_cast<const void*>(inline_); }
  void take(BackwardFn& o) noexcept {
    if (!o.target_) return;
    ops_ = o.ops_;
    if (o.is_inline()) {
      ops_->relocate(o.inline_, inline_);
      target_ = inline_;
    } else {
      target_ = o.target_;
    }
    o.target_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char inline_[kInline];
  void* target_ = nullptr;
  const Ops* ops_ = nullptr;
};

/// One node of the graph. Users hold Vars; op implementers fill Nodes.
struct Node {
  Tensor value;
  Tensor grad;                  ///< empty (size 0, rank 0) until a gradient arrives
  bool has_grad = false;        ///< grad holds an accumulated gradient
  bool requires_grad = false;   ///< a gradient flows to this node
  const char* op = "leaf";      ///< name of the op that made it, for messages
  std::vector<std::shared_ptr<Node>, PoolAllocator<std::shared_ptr<Node>>> inputs;
  /// Reads this node's grad and adds each input's contribution with accumulate_grad().
  BackwardFn backward;
  /// Marks the nodes one backward pass has visited (that pass's number).
  std::uint64_t visit = 0;
  /// Bit i: input i needed a gradient when this node was recorded (inputs past 64: their own
  /// requires_grad). What grad_input reads, so a ConstantScope holds for the whole graph.
  std::uint64_t input_needs_grad = 0;

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  /// Releases the inputs without recursing once per node of a long chain.
  ~Node();
};

/// A new node from the memory pool.
std::shared_ptr<Node> new_node();

/// Adds g (of this node's shape, or broadcastable down to it with sum_to) to n.grad.
void accumulate_grad(Node& n, const Tensor& g);
/// Sums g over broadcast dimensions so that it has the given shape (the adjoint of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);
/// The numpy broadcast of two shapes; throws Error naming op and both shapes if incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

class Var {
 public:
  /// An empty handle (no node).
  Var() = default;
  /// A leaf holding value; requires_grad makes it a parameter-like leaf that collects gradients.
  explicit Var(Tensor value, bool requires_grad = false);
  /// Wraps an existing node (used by ops).
  explicit Var(std::shared_ptr<Node> node) : node_(std::move(node)) {}

  bool defined() const { return static_cast<bool>(node_); }
  const Tensor& value() const;
  /// Mutable value, for optimisers and loaders (not recorded in the graph).
  Tensor& value();
  /// The accumulated gradient; zeros of the value's shape if none has arrived.
  const Tensor& grad() const;
  Tensor& grad();
  bool has_grad() const;
  bool requires_grad() const;
  void set_requires_grad(bool r);
  Shape shape() const;
  std::size_t dim() const;
  std::size_t size() const;
  /// The value of a one-element Var.
  float item() const;
  const char* op() const;

  /// Backpropagate from this Var with seed dL/dthis = 1 (this must have one element).
  void backward() const;
  /// Backpropagate with an explicit seed of this Var's shape.
  void backward(const Tensor& seed) const;
  /// Forget the accumulated gradient.
  void zero_grad();
  /// A new leaf sharing no graph with this one (the value is copied).
  Var detach() const;

  const std::shared_ptr<Node>& node() const { return node_; }

 private:
  std::shared_ptr<Node> node_;
};

/// True unless a NoGradScope is active on this thread.
bool grad_enabled();

/// RAII: while alive, ops record no graph (values only).
class NoGradScope {
 public:
  NoGradScope();
  ~NoGradScope();
  NoGradScope(const NoGradScope&) = delete;
  NoGradScope& operator=(const NoGradScope&) = delete;

 private:
  bool previous_;
};

/// RAII: while alive, ops recorded on this thread treat these Vars as constants: no gradient
/// flows to them through the graph recorded meanwhile, whatever their requires_grad (a network's
/// weights, when only the gradient with respect to its input is wanted). Scopes nest.
class ConstantScope {
 public:
  explicit ConstantScope(const std::vector<Var>& constants);
  ~ConstantScope();
  ConstantScope(const ConstantScope&) = delete;
  ConstantScope& operator=(const ConstantScope&) = delete;

 private:
  std::vector<const Node*> nodes_;  // sorted
  const ConstantScope* previous_;
  friend bool is_constant(const Node* n);
};
/// True if n is a constant of a ConstantScope active on this thread.
bool is_constant(const Node* n);

/// Helper for op implementers: input i of an op's node if a gradient must flow to it, else null.
Node* grad_input(Node& self, std::size_t i);
/// Helper for op implementers: hand a freshly computed gradient to n (moved when it is the first
/// to arrive with n's shape, else accumulated with sum_to).
void give_grad(Node& n, Tensor&& g);
/// An axis in [0, rank) from one that may count from the end; throws naming op and shape.
std::size_t normalize_axis(int axis, const Shape& s, const char* op);

/// Helper for op implementers: the result Var of an op with the given inputs. If grad is
/// enabled and any input requires grad, the node records inputs and backward.
Var make_result(Tensor value, const char* op, std::initializer_list<Var> inputs,
                BackwardFn&& backward);
Var make_result(Tensor value, const char* op, const std::vector<Var>& inputs,
                BackwardFn&& backward);
Var make_result(Tensor value, const char* op, const Var* inputs, std::size_t n_inputs,
                BackwardFn&& backward);

// ---- Elementwise arithmetic, numpy broadcasting ----
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var neg(const Var& a);
Var add(const Var& a, float b);
Var mul(const Var& a, float b);
inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator-(const Var& a) { return neg(a); }
inline Var operator+(const Var& a, float b) { return add(a, b); }
inline Var operator+(float a, const Var& b) { return add(b, a); }
inline Var operator-(const Var& a, float b) { return add(a, -b); }
inline Var operator-(float a, const Var& b) { return add(neg(b), a); }
inline Var operator*(const Var& a, float b) { return mul(a, b); }
inline Var operator*(float a, const Var& b) { return mul(b, a); }
inline Var operator/(const Var& a, float b) { return mul(a, 1.0f / b); }

/// Pointwise nonlinearities (the ops below), for layers that take one by name and for the
/// fused linear op.
enum class Activation { relu, silu, gelu, tanh, sigmoid, identity };

// ---- Linear algebra ----
/// Matrix product. 2-D: (M, K) @ (K, N) -> (M, N). Batched: (..., M, K) @ (..., K, N) with
/// equal leading dimensions -> (..., M, N). Uses BLAS sgemm.
Var matmul(const Var& a, const Var& b);
/// Fused affine map y = x W^T + b, as torch.nn.functional.linear: x (N, in), W (out, in),
/// b (out) or undefined.
Var linear(const Var& x, const Var& weight, const Var& bias);
/// act(linear(x, weight, bias)) as one op: the activation is applied to each block of rows as
/// the product finishes it (while it is in cache), and its derivative folded into backward.
Var linear(const Var& x, const Var& weight, const Var& bias, Activation act);

// ---- Reductions ----
/// Sum over the given axes (negative counts from the end); all axes if empty.
Var sum(const Var& a, std::vector<int> axes = {}, bool keepdims = false);
/// Mean over the given axes; all axes if empty.
Var mean(const Var& a, std::vector<int> axes = {}, bool keepdims = false);

// ---- Shape ----
/// Same elements, new shape; one dimension may be -1 (inferred).
Var reshape(const Var& a, const std::vector<long>& shape);
Var reshape(const Var& a, std::initializer_list<long> shape);
/// Permute dimensions: result dim i is input dim perm[i].
Var permute(const Var& a, const std::vector<std::size_t>& perm);
/// Swap the last two dimensions (2-D transpose for matrices).
Var transpose(const Var& a);
/// Join along an axis; all other dimensions must match.
Var concat(const std::vector<Var>& parts, int axis);
Var concat(std::initializer_list<Var> parts, int axis);
/// Elements [start, stop) along an axis.
Var slice(const Var& a, int axis, std::size_t start, std::size_t stop);
/// Gather entries along an axis by index (repeats allowed; gradients add up).
Var index_select(const Var& a, int axis, const std::vector<std::size_t>& indices);

// ---- Elementwise functions ----
Var exp(const Var& a);
Var log(const Var& a);
Var sqrt(const Var& a);
/// a^p for a constant exponent p.
Var pow(const Var& a, float p);
Var square(const Var& a);
Var abs(const Var& a);
Var sin(const Var& a);
Var cos(const Var& a);
Var tanh(const Var& a);
Var sigmoid(const Var& a);
Var relu(const Var& a);
/// x * sigmoid(x) (Hendrycks & Gimpel 2016; Ramachandran et al. 2017).
Var silu(const Var& a);
/// Exact GELU x * Phi(x) (erf form, as PyTorch's default).
Var gelu(const Var& a);
/// log(1 + exp(x)), computed stably.
Var softplus(const Var& a);
Var softmax(const Var& a, int axis);
Var log_softmax(const Var& a, int axis);

// ---- Normalisation ----
/// Layer normalisation over the last dimension (Ba et al. 2016), biased variance as PyTorch;
/// weight and bias of the last dimension's size, or undefined for none.
Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps = 1e-5f);

// ---- Losses (mean over all elements) ----
Var mse_loss(const Var& pred, const Var& target);
/// Pseudo-Huber sqrt(d^2 + c^2) - c, averaged (Song & Dhariwal 2023, improved consistency training).
Var pseudo_huber_loss(const Var& pred, const Var& target, float c);

// ---- Per-sample losses (N, ...) -> (N): the mean over each row, for losses that report one
// value per sample (loss.hpp) ----
Var mse_per_sample(const Var& pred, const Var& target);
Var pseudo_huber_per_sample(const Var& pred, const Var& target, float c);

}  // namespace diffusion
