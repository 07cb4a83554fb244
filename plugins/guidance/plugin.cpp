// Conditional generation and guided sampling:
//   - classifier-free guidance (Ho & Salimans 2022): a sampler's `guidance: {type:
//     classifier_free, w}` over a class-conditional network trained with train.label_dropout;
//   - classifier guidance (Dhariwal & Nichol 2021): the `noisy_classifier` loss trains a
//     noise-conditional classifier (an `mlp` with `output: classes`) in an experiment of its
//     own; `guidance: {type: classifier, model: classifier, scale}` reads it as a frozen named model;
//   - the metrics of class-conditional samples: `class_fraction` (the fraction of samples in the
//     requested class) and `class_w2` (exact W2 per class).
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("guidance")
