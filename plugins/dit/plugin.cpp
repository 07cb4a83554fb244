// The Diffusion Transformer (Peebles & Xie 2023): a ViT over image patches, conditioned on time
// and class through adaLN-Zero (`dit`: dit.cpp).
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("dit")
