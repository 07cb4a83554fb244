// Module: the naming tree behind save/load/EMA. Paths are built on demand by walking the tree,
// so a module never stores its own prefix and can be nested anywhere.
#include "diffusion/nn/module.hpp"

#include <algorithm>
#include <set>

#include "diffusion/io/hdf5_io.hpp"

namespace diffusion {

void Module::check_new_name(const std::string& name) const {
  // '.' would make paths ambiguous ("a.b" vs child "a" holding "b"); '/' would make an HDF5 group.
  if (name.empty() || name.find_first_of("./") != std::string::npos)
    throw Error("Module: invalid name '" + name + "' (must be non-empty, without '.' or '/')");
  auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
  };
  if (taken(params_) || taken(buffers_) || taken(children_))
    throw Error("Module: name '" + name + "' is already registered");
}

Var Module::register_parameter(const std::string& name, Var param) {
  check_new_name(name);
  if (!param.defined()) throw Error("Module: parameter '" + name + "' is an undefined Var");
  param.set_requires_grad(true);
  params_.emplace_back(name, param);
  return param;
}

Var Module::register_buffer(const std::string& name, Tensor value) {
  return register_buffer(name, Var(std::move(value), false));
}

Var Module::register_buffer(const std::string& name, Var buffer) {
  check_new_name(name);
  if (!buffer.defined()) throw Error("Module: buffer '" + name + "' is an undefined Var");
  buffer.set_requires_grad(false);
  buffers_.emplace_back(name, buffer);
  return buffer;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name);
  if (!child) throw Error("Module: child '" + name + "' is null");
  children_.emplace_back(name, std::move(child));
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     std::vector<std::pair<std::string, Var>>& out) const {
  if (params)
    for (const auto& [name, v] : params_) out.emplace_back(prefix + name, v);
  if (buffers)
    for (const auto& [name, v] : buffers_) out.emplace_back(prefix + name, v);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, buffers, out);
}

std::vector<std::pair<std::string, Var>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Var>> out;
  collect("", true, false, out);
  return out;
}

std::vector<Var> Module::parameters() const {
  std::vector<Var> out;
  for (auto& [name, v] : named_parameters()) out.push_back(v);
  return out;
}

std::vector<std::pair<std::string, Var>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Var>> out;
  collect("", false, true, out);
  return out;
}

std::vector<std::pair<std::string, Var>> Module::named_state() const {
  auto out = named_parameters();
  auto b = named_buffers();
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

std::size_t Module::num_parameters() const {
  std::size_t n = 0;
  for (const auto& [name, v] : named_parameters()) n += v.size();
  return n;
}

void Module::zero_grad() {
  for (auto& [name, v] : named_parameters()) v.zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

std::vector<Var> Module::trainable_parameters() const {
  std::vector<Var> out;
  for (const auto& e : named_parameters())
    if (e.second.requires_grad()) out.push_back(e.second);
  return out;
}

void Module::freeze(bool frozen) {
  for (auto& e : named_parameters()) e.second.set_requires_grad(!frozen);
}

void Module::freeze_path(const std::string& path) {
  bool found = false;
  for (auto& [name, v] : named_parameters())
    if (name == path || name.rfind(path + ".", 0) == 0) {
      v.set_requires_grad(false);
      found = true;
    }
  if (!found) throw Error("Module: no parameter at or below '" + path + "'");
}

void Module::save(const H5::Group& g) const {
  for (const auto& [path, v] : named_state()) write_tensor(g, path, v.value());
}

void Module::load(const H5::Group& g, bool strict) {
  const auto state = named_state();
  if (strict) {
    std::set<std::string> known;
    for (const auto& e : state) known.insert(e.first);
    std::string unexpected;
    for (const auto& name : h5_dataset_names(g))
      if (!known.count(name)) unexpected += (unexpected.empty() ? "" : ", ") + name;
    if (!unexpected.empty())
      throw Error(h5_location(g) + ": unexpected datasets not in the module: " + unexpected);
  }
  std::vector<Tensor> values;
  values.reserve(state.size());
  for (const auto& [path, v] : state) {
    if (!h5_exists(g, path))
      throw Error(h5_location(g) + ": missing parameter '" + path + "' (expected shape " +
                  shape_str(v.shape()) + ")");
    values.push_back(read_tensor(g, path, v.shape()));  // the error names path and both shapes
  }
  // Assign in place: optimisers and EMA hold the same Var handles and must see the new values.
  for (std::size_t i = 0; i < state.size(); ++i) {
    Var v = state[i].second;
    std::copy(values[i].begin(), values[i].end(), v.value().begin());
  }
}

void Module::copy_parameters_from(const Module& other) {
  const auto mine = named_state();
  const auto theirs = other.named_state();
  for (std::size_t i = 0; i < std::max(mine.size(), theirs.size()); ++i) {
    if (i >= mine.size())
      throw Error("Module::copy_parameters_from: source has extra entry '" + theirs[i].first + "'");
    if (i >= theirs.size())
      throw Error("Module::copy_parameters_from: source lacks entry '" + mine[i].first + "'");
    if (mine[i].first != theirs[i].first)
      throw Error("Module::copy_parameters_from: entry " + std::to_string(i) + " is '" +
                  mine[i].first + "' here but '" + theirs[i].first + "' in the source");
    if (mine[i].second.shape() != theirs[i].second.shape())
      throw Error("Module::copy_parameters_from: '" + mine[i].first + "' has shape " +
                  shape_str(mine[i].second.shape()) + " here but " +
                  shape_str(theirs[i].second.shape()) + " in the source");
  }
  for (std::size_t i = 0; i < mine.size(); ++i) {
    Var dst = mine[i].second;
    const Tensor& src = theirs[i].second.value();
    std::copy(src.begin(), src.end(), dst.value().begin());
  }
}

}  // namespace diffusion
