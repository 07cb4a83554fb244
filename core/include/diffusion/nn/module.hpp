#pragma once
// Modules own named parameters, buffers and child modules, as torch.nn.Module does, so that any
// network can be saved, loaded, copied and averaged (EMA) without knowing its architecture.
//
// Names compose into dotted paths in registration order: a child "layers" holding a child "0"
// with a parameter "weight" gives "layers.0.weight", the same key PyTorch's state_dict uses.
// save() writes one dataset per path, flat in the given group (/model/layers.0.weight), so a
// results file reads in h5py with the same keys as a PyTorch state_dict.
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <H5Cpp.h>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Parameters are shared handles: a copied Module would silently share its weights. Build a
  // second instance and use copy_parameters_from() instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Register a trainable parameter; it is marked requires_grad. Returns the same handle.
  /// Names must be non-empty, without '.' or '/', and unique among this module's parameters,
  /// buffers and children.
  Var register_parameter(const std::string& name, Var param);
  /// Register state that is saved and copied but not trained (e.g. fixed Fourier frequencies).
  Var register_buffer(const std::string& name, Tensor value);
  /// As above, keeping the given handle (its requires_grad is cleared).
  Var register_buffer(const std::string& name, Var buffer);
  /// Register a child module; its entries appear under "name.".
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }

  /// (dotted path, parameter), this module's own first, then each child's, in registration order.
  std::vector<std::pair<std::string, Var>> named_parameters() const;
  /// The parameters in named_parameters() order (the order optimisers index their state by).
  std::vector<Var> parameters() const;
  /// (dotted path, buffer), same order rules as named_parameters().
  std::vector<std::pair<std::string, Var>> named_buffers() const;
  /// Parameters then buffers: everything save() writes (PyTorch's state_dict).
  std::vector<std::pair<std::string, Var>> named_state() const;
  /// The direct children, in registration order.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

  /// The parameters that are trained (not frozen), in named_parameters() order: what an
  /// optimiser is given.
  std::vector<Var> trainable_parameters() const;
  /// Stop (or resume) training every parameter of this module and its children: a frozen
  /// parameter gets no gradient and is left out of trainable_parameters().
  void freeze(bool frozen = true);
  /// Freeze the parameters at or below a dotted path ("net.layers.0" or "net.layers.0.weight");
  /// Error if no parameter has that path.
  void freeze_path(const std::string& path);

  /// Number of scalar parameters (buffers excluded), as sum(p.numel()) in PyTorch.
  std::size_t num_parameters() const;
  /// Forget every parameter's gradient.
  void zero_grad();

  /// Training / evaluation mode, set recursively (for layers that behave differently, e.g. dropout).
  void train(bool on = true);
  /// Evaluation mode: train(false).
  void eval() { train(false); }
  /// True in training mode (the default).
  bool is_training() const { return training_; }

  /// Write every parameter and buffer as a float32 dataset named by its dotted path into g.
  void save(const H5::Group& g) const;
  /// Read every parameter and buffer back from g. Every expected name must exist with this
  /// module's shape; with strict, datasets in g that the module does not know are errors too.
  /// Everything is checked before anything is assigned: a failed load changes nothing.
  void load(const H5::Group& g, bool strict = true);
  /// Copy parameter and buffer values from a module of the same architecture (same paths and
  /// shapes, else Error naming the first difference). Gradients are not copied.
  void copy_parameters_from(const Module& other);

 private:
  void check_new_name(const std::string& name) const;
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void collect(const std::string& prefix, bool params, bool buffers,
               std::vector<std::pair<std::string, Var>>& out) const;

  std::vector<std::pair<std::string, Var>> params_;
  std::vector<std::pair<std::string, Var>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

/// An indexed list of child modules named "0", "1", ... (torch.nn.ModuleList), so a network's
/// layers get the paths "layers.0.weight", "layers.1.weight", ...
class ModuleList : public Module {
 public:
  /// Append a module as child str(size()).
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    register_module(std::to_string(size_), m);
    ++size_;
    return m;
  }
  std::size_t size() const { return size_; }

 private:
  std::size_t size_ = 0;
};

}  // namespace diffusion
