// The image U-Net (`unet`: unet.cpp) of Ho et al. 2020 with the improvements of Nichol &
// Dhariwal 2021 (scale-shift time embedding, multi-head attention, class conditioning with a
// null label for classifier-free guidance).
#include <diffusion/plugin.hpp>

DIFFUSION_PLUGIN("unet")
