// Reading a speculative sampler's `draft:` (draft.hpp).
#include "draft.hpp"

#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin/registries.hpp>

namespace diffusion::speculative {

std::shared_ptr<const Draft> read_draft(const ConfigNode& sampler, const std::string& key, const BuildContext& ctx) {
  const auto node = sampler.find(key);
  const std::string type = node ? node->type() : "frozen_target";
  if (type == "frozen_target") {
    const bool eps = node && node->get_choice("freeze", "x0", {"x0", "eps"}) == "eps";
    return make_frozen_target_draft(eps ? Frozen::eps : Frozen::x0);
  }
  if (type == "network") {
    const std::string slot = node->get_string("model", "draft");
    if (slot.empty() || slot == "model") node->at("model").error("the draft must be a named model other than 'model'");
    const auto pre_node = node->find("preconditioning");
    auto pre = pre_node ? registries().preconditionings.create(*pre_node, ctx) : make_prediction("eps");
    return make_network_draft(slot, std::move(pre));
  }
  const ConfigNode where = node->is_map() ? node->at("type") : *node;
  where.error("unknown draft '" + type + "' (expected frozen_target or network)");
}

}  // namespace diffusion::speculative
