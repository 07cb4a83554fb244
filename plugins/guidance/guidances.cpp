// A sampler's `guidance:`: the sampled model wrapped so that every sampler draws from the
// guided model unchanged (the wrappers are the core's, model/denoiser.hpp).
//
//   guidance: {type: classifier_free, w: 2}     Ho & Salimans 2022, eq. 6:
//                                              eps = (1 + w) eps(x, c) - w eps(x, null).
//             {type: classifier_free, scale: 3} the same, in the "guidance scale" convention of
//                                              other codebases (diffusers' guidance_scale):
//                                              eps = eps_u + scale (eps_c - eps_u), scale = w + 1.
//                                              w = 0 (scale 1) is the conditional model; w = -1
//                                              (scale 0) the unconditional one (the null label).
//   guidance: {type: classifier, model: classifier, scale: 1}
//                                              Dhariwal & Nichol 2021, eq. 14: eps - scale sigma_t
//                                              grad log p(y | x_t), the classifier a named model
//                                              trained by the noisy_classifier loss on the same path.
#include <diffusion/plugin.hpp>

#include "noisy_classifier.hpp"

namespace diffusion::guidance {
namespace {

class ClassifierFree : public Guidance {
 public:
  explicit ClassifierFree(double w) : w_(w) {}
  void check(const Network& model, int num_classes) const override {
    if (!model.class_conditional() || num_classes <= 0)
      throw Error("classifier-free guidance needs a class-conditional network on labelled data "
                  "(class_conditional: true, trained with train.label_dropout > 0)");
  }
  std::shared_ptr<const Denoiser> guide(std::shared_ptr<const Denoiser> model, const Models&) const override {
    return std::make_shared<ClassifierFreeGuidance>(std::move(model), w_);
  }
  std::vector<std::pair<std::string, double>> attributes() const override {
    return {{"guidance_w", w_}, {"guidance_scale", w_ + 1}};
  }

 private:
  double w_;
};

std::shared_ptr<Guidance> make_classifier_free(const ConfigNode& c, const BuildContext&) {
  if (c.has("w") == c.has("scale"))
    c.error("give the guidance weight once: w (Ho & Salimans' eq. 6: w = 0 is the conditional model) or scale "
            "(= w + 1, other codebases' guidance scale: 1 is the conditional model)");
  const double w = c.has("w") ? c.get_double("w") : c.get_double("scale") - 1.0;
  if (!(w >= -1.0)) (c.has("w") ? c.at("w") : c.at("scale")).fail(c.has("w") ? "w >= -1" : "scale >= 0");
  return std::make_shared<ClassifierFree>(w);
}

class ClassifierGuided : public Guidance {
 public:
  ClassifierGuided(std::string slot, double scale) : slot_(std::move(slot)), scale_(scale) {}
  std::vector<std::string> required_models() const override { return {slot_}; }
  void check(const Network&, int num_classes) const override {
    if (num_classes <= 0) throw Error("classifier guidance needs a labelled data set (classes to ask for)");
  }
  std::shared_ptr<const Denoiser> guide(std::shared_ptr<const Denoiser> model, const Models& models) const override {
    const Path& path = model->path();
    return std::make_shared<ClassifierGuidance>(std::move(model),
                                                std::make_shared<NetworkClassifier>(models.shared(slot_), path), scale_);
  }
  std::vector<std::pair<std::string, double>> attributes() const override { return {{"guidance_scale", scale_}}; }
  std::vector<std::pair<std::string, std::size_t>> nfe(const Denoiser& guided) const override {
    const auto* g = dynamic_cast<const ClassifierGuidance*>(&guided);
    return {{slot_, g ? g->classifier_nfe() : 0}};
  }

 private:
  std::string slot_;
  double scale_;
};

std::shared_ptr<Guidance> make_classifier(const ConfigNode& c, const BuildContext&) {
  return std::make_shared<ClassifierGuided>(c.get_string("model", "classifier"),
                                            c.get_double("scale", 1.0, Interval::at_least(0)));
}

}  // namespace

DIFFUSION_REGISTER(guidances, "classifier_free", make_classifier_free);
DIFFUSION_REGISTER(guidances, "classifier", make_classifier);

}  // namespace diffusion::guidance
