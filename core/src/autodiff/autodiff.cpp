// The graph machinery: Var handles, gradient accumulation, iterative backward, no-grad scope.
// The ops themselves live in ops_*.cpp.
#include "diffusion/autodiff/autodiff.hpp"

#include <algorithm>
#include <atomic>

#include "diffusion/autodiff/grad_sink.hpp"

namespace diffusion {
namespace {
thread_local bool g_grad_enabled = true;
}  // namespace

bool grad_enabled() { return g_grad_enabled; }

namespace {
thread_local const ConstantScope* g_constants = nullptr;
}  // namespace

ConstantScope::ConstantScope(const std::vector<Var>& constants) : previous_(g_constants) {
  for (const Var& v : constants)
    if (v.defined()) nodes_.push_back(v.node().get());
  std::sort(nodes_.begin(), nodes_.end());
  g_constants = this;
}
ConstantScope::~ConstantScope() { g_constants = previous_; }

bool is_constant(const Node* n) {
  for (const ConstantScope* s = g_constants; s; s = s->previous_)
    if (std::binary_search(s->nodes_.begin(), s->nodes_.end(), n)) return true;
  return false;
}

NoGradScope::NoGradScope() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradScope::~NoGradScope() { g_grad_enabled = previous_; }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const std::size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::size_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const std::size_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                  " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  const Shape gs = shape_of(g);
  if (gs == shape) return g;
  if (numel(shape) == numel(gs) && shape.size() != gs.size()) {
    // Same elements, only leading 1s differ: a reshape suffices.
    Tensor r = g;
    r.reshape(shape);
    return r;
  }
  if (gs.size() < shape.size())
    throw Error("sum_to: gradient of shape " + shape_str(gs) + " cannot be reduced to " +
                shape_str(shape));
  // View g as (outer..., inner) blocks: for each output element, add every g element whose
  // index maps to it. Index arithmetic over the aligned rank keeps this one pass.
  const std::size_t rank = gs.size();
  const std::size_t offset = rank - shape.size();
  Shape target(rank, 1);
  for (std::size_t i = 0; i < shape.size(); ++i) {
    target[offset + i] = shape[i];
    if (shape[i] != 1 && shape[i] != gs[offset + i])
      throw Error("sum_to: gradient of shape " + shape_str(gs) + " cannot be reduced to " +
                  shape_str(shape));
  }
  // Strides of the target (row-major), zero on reduced dimensions.
  Shape tstride(rank, 0);
  std::size_t s = 1;
  for (std::size_t i = rank; i-- > 0;) {
    tstride[i] = target[i] == 1 ? 0 : s;
    s *= target[i];
  }
  Tensor out = zeros(shape);
  float* o = out.data();
  const float* p = g.data();
  const std::size_t inner = gs[rank - 1];
  const bool inner_kept = target[rank - 1] != 1;
  Shape idx(rank, 0);
  const std::size_t n_rows = numel(gs) / std::max<std::size_t>(inner, 1);
  for (std::size_t row = 0; row < n_rows; ++row) {
    std::size_t base = 0;
    for (std::size_t d = 0; d + 1 < rank; ++d) base += idx[d] * tstride[d];
    const float* src = p + row * inner;
    if (inner_kept) {
      for (std::size_t j = 0; j < inner; ++j) o[base + j] += src[j];
    } else {
      float acc = 0.0f;
      for (std::size_t j = 0; j < inner; ++j) acc += src[j];
      o[base] += acc;
    }
    for (std::size_t d = rank - 1; d-- > 0;) {  // increment the row multi-index
      if (++idx[d] < gs[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

void accumulate_grad(Node& n, const Tensor& g) {
  const Shape ns = shape_of(n.value);
  const GradSink::Slot slot = GradSink::slot(n);  // n's grad, or a sink's (grad_sink.hpp)
  if (!slot.has) {
    slot.grad = sum_to(g, ns);
    slot.has = true;
    return;
  }
  const auto add = [&slot](const Tensor& from) {
    float* dst = slot.grad.data();
    const float* src = from.data();
    for (std::size_t i = 0, e = slot.grad.size(); i < e; ++i) dst[i] += src[i];
  };
  if (shape_of(g) == ns) add(g);
  else add(sum_to(g, ns));
}

Node* grad_input(Node& self, std::size_t i) {
  Node* n = self.inputs[i].get();
  const bool needs = i < 64 ? (self.input_needs_grad >> i & 1u) != 0 : n && n->requires_grad;
  return n && needs ? n : nullptr;
}

void give_grad(Node& n, Tensor&& g) {
  const GradSink::Slot slot = GradSink::slot(n);
  if (!slot.has && g.shape() == n.value.shape()) {
    slot.grad = std::move(g);
    slot.has = true;
  } else {
    accumulate_grad(n, g);
  }
}

std::size_t normalize_axis(int axis, const Shape& s, const char* op) {
  const long r = static_cast<long>(s.size());
  if (axis < -r || axis >= r)
    throw Error(std::string(op) + ": axis " + std::to_string(axis) + " out of range for shape " +
                shape_str(s));
  return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
}

std::shared_ptr<Node> new_node() {
  // Node and shared_ptr control block in one pooled block.
  return std::allocate_shared<Node>(PoolAllocator<Node>());
}

Var::Var(Tensor value, bool requires_grad) : node_(new_node()) {
  node_->value = std::move(value);
  node_->requires_grad = requires_grad;
}

namespace {
Node& checked(const std::shared_ptr<Node>& n) {
  if (!n) throw Error("Var: use of an undefined Var");
  return *n;
}
}  // namespace

const Tensor& Var::value() const { return checked(node_).value; }
Tensor& Var::value() { return checked(node_).value; }

const Tensor& Var::grad() const {
  Node& n = checked(node_);
  if (!n.has_grad) {
    n.grad = zeros(shape_of(n.value));
    n.has_grad = true;
  }
  return n.grad;
}
Tensor& Var::grad() {
  const Var& self = *this;
  self.grad();
  return node_->grad;
}

bool Var::has_grad() const { return checked(node_).has_grad; }
bool Var::requires_grad() const { return checked(node_).requires_grad; }
void Var::set_requires_grad(bool r) { checked(node_).requires_grad = r; }
Shape Var::shape() const { return shape_of(value()); }
std::size_t Var::dim() const { return value().dimension(); }
std::size_t Var::size() const { return value().size(); }
const char* Var::op() const { return checked(node_).op; }

float Var::item() const {
  const Tensor& v = value();
  if (v.size() != 1) throw Error("Var::item: expected one element, got shape " + shape_str(v));
  return *v.data();
}

void Var::zero_grad() {
  Node& n = checked(node_);
  n.grad = Tensor();
  n.has_grad = false;
}

Var Var::detach() const { return Var(Tensor(value()), false); }

void Var::backward() const {
  if (size() != 1)
    throw Error(std::string("backward: implicit seed needs a one-element result, got shape ") +
                shape_str(shape()) + " from " + op());
  backward(ones(shape()));
}

void Var::backward(const Tensor& seed) const {
  Node& root = checked(node_);
  if (seed.shape() != root.value.shape())
    throw Error("backward: seed shape " + shape_str(seed) + " differs from value shape " +
                shape_str(root.value));
  if (!root.requires_grad)
    throw Error(std::string("backward: result of ") + root.op +
                " does not require grad (no parameter in its graph, or built under NoGradScope)");
  // Iterative post-order DFS gives a topological order without recursion. Nodes are marked
  // with this pass's number instead of kept in a set, and the work lists are reused across
  // passes, so a backward pass allocates nothing once warm.
  static std::atomic<std::uint64_t> passes{0};
  const std::uint64_t pass = ++passes;
  // One order per nesting level: a backward function may itself run a backward pass.
  thread_local std::vector<std::vector<Node*>> orders;
  thread_local std::size_t depth = 0;
  thread_local std::vector<std::pair<Node*, std::size_t>> stack;
  if (orders.size() <= depth) orders.resize(depth + 1);
  std::vector<Node*>& order = orders[depth];
  order.clear();
  stack.clear();
  stack.push_back({&root, 0});
  root.visit = pass;
  // An interior node's gradient belongs to one pass (leaves accumulate across passes, as
  // parameters do): a second backward through the same graph starts its interior nodes from
  // zero instead of adding the first pass's gradients again.
  if (root.backward) root.has_grad = false;
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      Node* child = node->inputs[next++].get();
      // Leaves (parameters) are not entered: they have nothing to run, and several threads
      // may run backward passes through the same parameters at once (data_parallel.hpp).
      if (child && child->requires_grad && child->backward && child->visit != pass) {
        child->visit = pass;
        child->has_grad = false;
        stack.push_back({child, 0});
      }
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  accumulate_grad(root, seed);
  // Reverse post-order: every node's consumers have run before the node itself.
  ++depth;
  struct Leave {
    std::size_t& d;
    ~Leave() { --d; }
  } leave{depth};
  for (auto it = order.rbegin(); it != order.rend(); ++it)
    if ((*it)->backward && (*it)->has_grad) (*it)->backward(**it);
}

// Freeing a node frees its inputs, which free theirs...: a plain shared_ptr release recurses
// once per node and overflows the stack on long chains (~300000 ops with an 8 MiB stack).
// Here the outermost release drains a work list instead, and nested releases (from inputs or
// from objects a backward closure holds) only append to it.
Node::~Node() {
  thread_local std::vector<std::shared_ptr<Node>>* pending = nullptr;
  if (pending) {
    for (auto& in : inputs) pending->push_back(std::move(in));
    return;
  }
  thread_local std::vector<std::shared_ptr<Node>> work;
  pending = &work;
  for (auto& in : inputs) work.push_back(std::move(in));
  while (!work.empty()) {
    std::shared_ptr<Node> last = std::move(work.back());
    work.pop_back();
    last.reset();  // may re-enter ~Node, which appends to work
  }
  pending = nullptr;
}

Var make_result(Tensor value, const char* op, const Var* inputs, std::size_t n,
                BackwardFn&& backward) {
  std::shared_ptr<Node> node = new_node();
  node->value = std::move(value);
  node->op = op;
  if (grad_enabled()) {
    bool any = false;
    std::uint64_t mask = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const bool needs = inputs[i].defined() && inputs[i].requires_grad() &&
                         !(g_constants && is_constant(inputs[i].node().get()));
      any = any || needs;
      if (needs && i < 64) mask |= std::uint64_t{1} << i;
    }
    if (any) {
      node->requires_grad = true;
      node->input_needs_grad = mask;
      node->inputs.reserve(n);
      // Positions are kept (undefined inputs stay null) so backward can index them.
      for (std::size_t i = 0; i < n; ++i)
        node->inputs.push_back(inputs[i].defined() ? inputs[i].node() : nullptr);
      node->backward = std::move(backward);
    }
  }
  return Var(std::move(node));
}

Var make_result(Tensor value, const char* op, std::initializer_list<Var> inputs,
                BackwardFn&& backward) {
  return make_result(std::move(value), op, inputs.begin(), inputs.size(), std::move(backward));
}

Var make_result(Tensor value, const char* op, const std::vector<Var>& inputs,
                BackwardFn&& backward) {
  return make_result(std::move(value), op, inputs.data(), inputs.size(), std::move(backward));
}

}  // namespace diffusion
