#include "diffusion/autodiff/grad_sink.hpp"

namespace diffusion {
namespace {
thread_local GradSink* t_sink = nullptr;
}  // namespace

GradSink::GradSink(const std::vector<Var>& params) {
  entries_.reserve(params.size());
  for (const Var& p : params) {
    if (!p.defined()) throw Error("GradSink: undefined parameter");
    entries_.push_back({p.node().get(), Tensor(), false});
  }
}

void GradSink::clear() {
  for (Entry& e : entries_) e.has = false;
}

GradSink::Scope::Scope(GradSink& sink) : previous_(t_sink) { t_sink = &sink; }
GradSink::Scope::~Scope() { t_sink = previous_; }

GradSink::Slot GradSink::slot(Node& n) {
  // Only leaves (no backward function) are parameters; a linear scan is fine for the tens of
  // parameter tensors of a network, and is skipped for every other node.
  if (t_sink && !n.backward)
    for (Entry& e : t_sink->entries_)
      if (e.node == &n) return {e.grad, e.has};
  return {n.grad, n.has_grad};
}

}  // namespace diffusion
