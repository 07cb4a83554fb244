// Metrics of generated images read through a trained image classifier:
//   - network `image_classifier`: a small CNN over (C, H, W) images, trained by the loss
//     `cross_entropy` on clean labelled data (experiments/digits_classifier.yaml,
//     experiments/fashion_mnist_classifier.yaml); its penultimate activations are the features;
//   - `fd` (Frechet distance of the features, Heusel et al. 2017, the FID with this classifier in
//     place of Inception), `kid` (kernel distance, Binkowski et al. 2018),
//     `classifier_accuracy` (the fraction of class-conditional samples the classifier assigns
//     to the class they were asked for), each reading the classifier from a results file
//     (`classifier: results/digits_classifier.h5`);
//   - `test_accuracy`: the held-out accuracy of the network trained by the experiment itself.
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("image_metrics")
