#include "diffusion/model/models.hpp"

#include "diffusion/io/text.hpp"

namespace diffusion {

void Models::add(ModelSlot slot) {
  if (slot.name.empty()) throw Error("models: a slot needs a name");
  if (!slot.network) throw Error("models: slot '" + slot.name + "' has no network");
  if (has(slot.name)) throw Error("models: slot '" + slot.name + "' exists already");
  slots_.push_back(std::move(slot));
}

bool Models::has(const std::string& name) const {
  for (const auto& s : slots_)
    if (s.name == name) return true;
  return false;
}

const ModelSlot& Models::slot(const std::string& name) const {
  for (const auto& s : slots_)
    if (s.name == name) return s;
  std::vector<std::string> names;
  for (const auto& s : slots_) names.push_back(s.name);
  throw Error("no model slot '" + name + "' (the experiment has: " + (names.empty() ? "none" : join(names, ", ")) +
              "; declare it under `models:`)");
}

Network& Models::get(const std::string& name) const { return *slot(name).network; }

std::shared_ptr<Network> Models::shared(const std::string& name) const { return slot(name).network; }

}  // namespace diffusion
