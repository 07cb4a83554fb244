// The independent draft (De Bortoli et al. 2025, section 3.2): a cheaper denoiser of the same
// path, trained on its own (e.g. experiments/speculative_draft_moons.yaml) and loaded as a
// frozen named model. It is read exactly as the sampled model is: on the sampled model's path,
// through the preconditioning it was trained with. Each predict is one evaluation of it.
#include "draft.hpp"

namespace diffusion::speculative {
namespace {

/// A shared_ptr that does not own: for objects the run owns and that outlive the call.
template <class T>
std::shared_ptr<T> borrowed(T& object) {
  return std::shared_ptr<T>(&object, [](T*) {});
}

class NetworkDraft : public Draft {
 public:
  NetworkDraft(std::string slot, std::shared_ptr<const Preconditioning> pre)
      : slot_(std::move(slot)), pre_(std::move(pre)) {}
  std::string name() const override { return "network"; }
  std::vector<std::string> required_models() const override { return {slot_}; }
  bool needs_last_target_prediction() const override { return false; }
  bool evaluates_network() const override { return true; }

  void predict(const Denoiser& target, const SampleRequest& request, const Tensor& x, const Times& t,
               const Condition& c, const Prediction&, Prediction& out) const override {
    const NetworkDenoiser draft(borrowed(request.model(slot_)), borrowed(target.path()), pre_);
    draft.predict(x, t, c, out);
  }

 private:
  std::string slot_;
  std::shared_ptr<const Preconditioning> pre_;
};

}  // namespace

std::shared_ptr<const Draft> make_network_draft(std::string slot, std::shared_ptr<const Preconditioning> pre) {
  return std::make_shared<NetworkDraft>(std::move(slot), std::move(pre));
}

}  // namespace diffusion::speculative
