#pragma once
// Where parameter gradients go during a backward pass.
//
// A backward pass normally adds each parameter's gradient into the parameter's own grad. To
// run several backward passes through one set of parameters at once (the shards of a batch,
// data_parallel.hpp), each thread installs its own GradSink: while it is installed, gradients
// that reach the sink's parameters collect in the sink instead, and the caller adds the sinks
// up afterwards in a fixed order.
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"

namespace diffusion {

class GradSink {
 public:
  explicit GradSink(const std::vector<Var>& params);

  std::size_t size() const { return entries_.size(); }
  /// True if a gradient for params[i] arrived since the last clear().
  bool has(std::size_t i) const { return entries_[i].has; }
  const Tensor& grad(std::size_t i) const { return entries_[i].grad; }
  /// Forgets the collected gradients.
  void clear();

  /// Installs a sink on the calling thread for this object's lifetime (scopes nest).
  class Scope {
   public:
    explicit Scope(GradSink& sink);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    GradSink* previous_;
  };

  /// For autodiff: where n's gradient collects on this thread, i.e. in the installed sink if
  /// n is one of its parameters, else n's own grad.
  struct Slot {
    Tensor& grad;
    bool& has;
  };
  static Slot slot(Node& n);

 private:
  struct Entry {
    const Node* node;
    Tensor grad;
    bool has = false;
  };
  std::vector<Entry> entries_;
};

}  // namespace diffusion
